"""Typed errors of the audio and image tasks; each message starts with the field that is wrong.

They subclass ValueError too, so the server's `from_value_error` turns them into a 400 whose
`param` is that field, and the CLI prints them as `brainwork: error: ...`.
"""

from __future__ import annotations

from brainwork.errors import BrainworkError


class MediaInputError(BrainworkError, ValueError):
    """Bad input to a speech or image task."""


class AudioDecodeError(MediaInputError):
    """Bytes or a file that no audio decoder can read, or that hold no samples."""


class SampleRateError(MediaInputError):
    """A sampling rate that is missing, not a positive integer, or outside what speech can use."""


class UnknownVoiceError(MediaInputError, LookupError):
    """A voice name that the loaded text-to-speech model does not have."""


class TextInputError(MediaInputError):
    """Text to speak that is empty or over the size limit."""


class UnsupportedFormatError(MediaInputError):
    """An audio output format that no installed encoder can write."""


class ImageDecodeError(MediaInputError):
    """Bytes, a file or an object that is not a readable image."""
