"""The generation engine: caches, runners and the generation loop."""
