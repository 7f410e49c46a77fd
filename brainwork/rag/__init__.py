"""Retrieval-augmented generation and recommendations on an embedded store (one SQLite file).

`store.py` keeps collections, documents, chunks and their embeddings; `ingest.py` reads files
and cuts them into token chunks; `search.py` ranks chunks (dense cosine + SQLite FTS5 BM25, fused);
`answer.py` builds a prompt that fits the chat model and maps `[n]` citations to sources;
`recommend.py` ranks catalog items for a user profile with an MMR diversity knob.
"""
