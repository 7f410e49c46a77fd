"""Reference implementations the tests compare brainwork against (llama.cpp, transformers)."""
