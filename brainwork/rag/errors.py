"""Typed errors of the store, ingest, search and recommendations; each names the item at fault."""

from __future__ import annotations

from brainwork.errors import BrainworkError


class RagError(BrainworkError):
    """Base of the errors below."""


class UnknownCollectionError(RagError, LookupError):
    """A collection name that is not in the store."""


class UnknownItemError(RagError, LookupError):
    """An item (document) id that is not in the collection."""


class EmptyQueryError(RagError, ValueError):
    """A query with no text to search for."""


class UnreadableDocumentError(RagError, ValueError):
    """A file that cannot be read as text: binary, undecodable, a PDF that fails to parse, missing."""


class DocumentTooLargeError(RagError, ValueError):
    """A document over the size limit."""


class EmbeddingMismatchError(RagError, ValueError):
    """Vectors whose width or model differ from the collection's."""
