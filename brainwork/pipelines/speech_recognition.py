"""`automatic-speech-recognition`: `{"text": ...}` plus `"chunks"` with timestamps when asked,
in Hugging Face's shape (`return_timestamps=True` for segments, `"word"` for words)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from brainwork.audio.asr import Transcriber, Transcript, load_audio
from brainwork.media_errors import MediaInputError

_ONE_INPUT = (str, bytes, bytearray, os.PathLike, dict, np.ndarray)  # a list of these is a batch


class SpeechRecognitionPipeline:
    def __init__(self, model: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        self.transcriber = Transcriber(model, **kwargs)

    def transcribe(
        self,
        inputs: Any,
        sampling_rate: int | None = None,
        language: str | None = None,
        word_timestamps: bool = False,
        **kwargs: Any,
    ) -> Transcript:
        """The full result: text, language, duration and segments (with words when asked)."""
        audio = load_audio(inputs, sampling_rate)  # (n,) float32 at 16 kHz
        return self.transcriber.transcribe(audio, language=language, word_timestamps=word_timestamps, **kwargs)

    def __call__(
        self,
        inputs: Any,
        return_timestamps: bool | str | None = None,
        sampling_rate: int | None = None,
        language: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """`inputs`: a path, file bytes, an array (give `sampling_rate`), HF's dict form, or a list."""
        if return_timestamps not in (None, False, True, "word"):
            raise MediaInputError(f"return_timestamps: expected True, False or 'word', got {return_timestamps!r}")
        if isinstance(inputs, list) and inputs and all(isinstance(x, _ONE_INPUT) for x in inputs):
            return [self(x, return_timestamps, sampling_rate, language, **kwargs) for x in inputs]  # type: ignore[misc]
        words = return_timestamps == "word"
        result = self.transcribe(inputs, sampling_rate, language, word_timestamps=words, **kwargs)
        out: dict[str, Any] = {"text": result.text}
        if words:
            out["chunks"] = [{"text": w.word, "timestamp": (w.start, w.end)} for w in result.words]
        elif return_timestamps:
            out["chunks"] = [{"text": s.text, "timestamp": (s.start, s.end)} for s in result.segments]
        return out
