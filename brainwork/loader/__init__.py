"""Weights as a stream of `(name, tensor)` from safetensors folders and GGUF files."""
