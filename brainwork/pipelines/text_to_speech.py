"""`text-to-speech`: `{"audio": float32 samples, "sampling_rate": int}`, as Hugging Face returns.

`stream(...)` yields one array per sentence as it is made (for long texts and for servers).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from brainwork.audio.tts import Synthesizer


class TextToSpeechPipeline:
    def __init__(self, model: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        self.synthesizer = Synthesizer(model, **kwargs)
        self.sampling_rate = self.synthesizer.sampling_rate

    @property
    def voices(self) -> list[str]:
        return list(self.synthesizer.voices)

    def __call__(
        self, inputs: str | list[str], voice: str | None = None, speed: float = 1.0
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """One text -> one dict; a list of texts -> a list of dicts. Audio is shaped (samples,)."""
        single = isinstance(inputs, str)
        texts = [inputs] if single else inputs
        if not isinstance(texts, list | tuple) or not texts:
            raise ValueError("inputs: expected a string or a non-empty list of strings")
        out = []
        for text in texts:
            audio = np.concatenate(list(self.stream(text, voice=voice, speed=speed)))
            out.append({"audio": audio, "sampling_rate": self.sampling_rate})
        return out[0] if single else out

    def stream(self, text: str, voice: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]:
        """Samples sentence by sentence; inputs are checked before this returns."""
        return self.synthesizer.stream(text, voice=voice, speed=speed)
