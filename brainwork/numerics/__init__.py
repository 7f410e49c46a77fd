"""llama.cpp's CPU arithmetic, reproduced in torch, so that a GGUF model gives its greedy tokens.

`numerics="ggml"` (see `apply.to_ggml_numerics`) changes how the same weights are computed, not
what they are: activations are quantized to the Q8 block format ggml pairs with each weight type
before every matmul, keys and values are held in float16, and attention runs ggml's CPU flash
attention algorithm (float16 query, online softmax, float16 value accumulator).
"""
