"""Shared building blocks of the models: norms, rotary embeddings, attention, activations."""
