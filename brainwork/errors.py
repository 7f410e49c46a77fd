"""Typed errors: each names what is wrong so a user can fix it without reading a traceback."""

from __future__ import annotations


class BrainworkError(Exception):
    """Base class of every error brainwork raises on purpose."""


class ModelNotFoundError(BrainworkError, LookupError):
    """A model name or path that resolves to nothing here."""


class ModelPackageMissingError(BrainworkError, ImportError):
    """A catalog model whose Python package is not installed; the message gives the pip line."""


class ModelFormatError(BrainworkError, ValueError):
    """A model file that cannot be used: truncated, corrupt, or of an unsupported kind."""


class OfflineError(BrainworkError, ConnectionError):
    """A model needed a download from the hub and the hub could not be reached."""
