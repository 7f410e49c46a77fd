"""Weight-only quantization: GGUF blocks kept in torch's packed int4/int8 forms, `QuantLinear`."""
