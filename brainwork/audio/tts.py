"""Text to speech with Piper voices (VITS exported to ONNX, run by ONNX Runtime via `piper-tts`).

Piper phonemizes the whole text with espeak-ng, splits it into sentences, and runs the ONNX
model once per sentence; `Synthesizer.stream` yields each sentence's samples as soon as that
sentence is made, so a long text starts playing after its first sentence.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainwork.errors import ModelFormatError, ModelNotFoundError
from brainwork.media_errors import TextInputError, UnknownVoiceError
from brainwork.store import resolve_model

DEFAULT_TTS_MODEL = "piper-en-us-joe"
MAX_INPUT_CHARS = 4096  # OpenAI's limit for /v1/audio/speech
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range
# OpenAI's built-in voice names, accepted so OpenAI clients work unchanged: they select the
# model's default speaker (a Piper voice file is one speaker, or a few named in its config)
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")


@dataclass(frozen=True)
class VoiceFiles:
    name: str
    onnx: Path  # the VITS model
    config: Path  # Piper's JSON beside it: phoneme map, sample rate, speakers


def voice_files(model: str | os.PathLike[str] | None) -> VoiceFiles:
    """A catalog name or a path to a Piper `.onnx` file with its `.onnx.json` beside it."""
    text = str(model or DEFAULT_TTS_MODEL)
    path = Path(text).expanduser()
    if path.is_file():
        config = path.with_name(path.name + ".json")
        if not config.is_file():
            raise ModelNotFoundError(f"{path}: a Piper voice needs its config {config.name} beside it")
        return VoiceFiles(path.stem, path.resolve(), config.resolve())
    resolved = resolve_model(text)
    if resolved.format != "onnx":
        raise ModelFormatError(f"model: {resolved.name} is a {resolved.format} model, not a Piper voice")
    return VoiceFiles(resolved.name, resolved.path, resolved.path.with_name(resolved.path.name + ".json"))


def check_text(text: object, field: str = "input") -> str:
    if not isinstance(text, str):
        raise TextInputError(f"{field}: expected a string, got {type(text).__name__}")
    if not text.strip():
        raise TextInputError(f"{field}: empty text; give some words to speak")
    if len(text) > MAX_INPUT_CHARS:
        raise TextInputError(f"{field}: {len(text)} characters is over the limit of {MAX_INPUT_CHARS}")
    return text


def check_speed(speed: object) -> float:
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise TextInputError(f"speed: expected a number from {MIN_SPEED} to {MAX_SPEED}, got {speed!r}")
    return float(speed)


class Synthesizer:
    """One Piper voice model loaded into ONNX Runtime."""

    def __init__(self, model: str | os.PathLike[str] | None = None) -> None:
        from piper import PiperVoice  # imports onnxruntime: only when a voice is wanted

        files = voice_files(model)
        try:
            raw = json.loads(files.config.read_text(encoding="utf-8"))
            self.voice = PiperVoice.load(files.onnx, config_path=files.config)
        except (OSError, ValueError, KeyError) as e:
            raise ModelFormatError(f"{files.onnx}: not a loadable Piper voice ({type(e).__name__}: {e})") from e
        self.name = files.name
        self.sampling_rate: int = self.voice.config.sample_rate
        speakers = dict(self.voice.config.speaker_id_map)  # name -> id, empty for one-speaker voices
        default = str(raw.get("dataset") or files.onnx.stem)
        # every name that selects a speaker; the default speaker answers to several
        self.voices: dict[str, int | None] = {n: None for n in (default, "default", files.name, *OPENAI_VOICES)}
        self.voices.update(speakers)
        self.default_voice = default
        self._lock = threading.Lock()  # one ONNX run at a time per voice; ORT uses all cores already

    def speaker(self, voice: str | None) -> int | None:
        if voice is None:
            return None
        if voice not in self.voices:
            own = [v for v in self.voices if v not in OPENAI_VOICES]
            raise UnknownVoiceError(
                f"voice: unknown voice {voice!r}; {self.name} has {', '.join(map(repr, own))} "
                f"(OpenAI's names {', '.join(OPENAI_VOICES)} also select its default voice)"
            )
        return self.voices[voice]

    def stream(self, text: str, voice: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]:
        """Float32 samples in [-1, 1], shape (n,), one array per sentence, as each is made.

        The inputs are checked here, before the first sentence, so a caller can still answer
        with an error instead of a half-sent stream.
        """
        from piper import SynthesisConfig

        text = check_text(text)
        speed = check_speed(speed)
        config = SynthesisConfig(speaker_id=self.speaker(voice), length_scale=self.voice.config.length_scale / speed)
        # text of punctuation or invisible characters only gives no phonemes: say so now, not with
        # an empty stream (espeak is fast: this costs well under 1% of the synthesis)
        if not any(self.voice.phonemize(text)):
            raise TextInputError(f"input: nothing speakable in {text[:40]!r}")
        return self._run(text, config)

    def _run(self, text: str, config: object) -> Iterator[np.ndarray]:
        chunks = self.voice.synthesize(text, syn_config=config)  # type: ignore[arg-type]
        while True:
            with self._lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk.audio_float_array

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> np.ndarray:
        parts = list(self.stream(text, voice, speed))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
