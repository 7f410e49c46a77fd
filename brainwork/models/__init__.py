"""Model architectures in plain PyTorch over shared layers; see `registry.py`."""
