"""Tokenizers on the `tokenizers` library, chat templates, incremental detokenization."""
