"""Speech to text with Whisper converted to CTranslate2, run by `faster-whisper`.

Audio of any length goes in as one 16 kHz mono array: Whisper reads 30-second windows, and
faster-whisper moves the window to the last timestamp it decoded, so long audio is transcribed
window by window without cutting words at fixed chunk edges.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainwork.audio.audio_io import as_mono_float, check_rate, decode_audio, resample
from brainwork.errors import ModelFormatError
from brainwork.media_errors import MediaInputError, SampleRateError
from brainwork.store import resolve_model

DEFAULT_ASR_MODEL = "whisper-tiny.en"
WHISPER_RATE = 16_000  # Whisper's log-mel front end is fixed at 16 kHz


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    id: int
    start: float  # seconds
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    tokens: list[int]
    words: list[Word] = field(default_factory=list)


@dataclass
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio
    segments: list[Segment]

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


def model_folder(model: str | os.PathLike[str] | None) -> tuple[str, Path]:
    """A catalog name, or a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)."""
    text = str(model or DEFAULT_ASR_MODEL)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelFormatError(f"{path}: not a CTranslate2 model folder (no model.bin)")
        return path.name, path.resolve()
    resolved = resolve_model(text)
    if resolved.format != "ct2":
        raise ModelFormatError(f"model: {resolved.name} is a {resolved.format} model, not a CTranslate2 Whisper")
    return resolved.name, resolved.path


def load_audio(inputs: Any, sampling_rate: int | None = None, field: str = "inputs") -> np.ndarray:
    """16 kHz mono float32 samples, shape (n,), from a path, file bytes, an array with its rate,
    or Hugging Face's dict form `{"raw" or "array": samples, "sampling_rate": rate}`."""
    if isinstance(inputs, dict):
        keys = {"raw", "array"} & inputs.keys()
        if not keys or "sampling_rate" not in inputs:
            raise MediaInputError(f"{field}: a dict needs 'raw' (or 'array') and 'sampling_rate'")
        inputs, sampling_rate = inputs[keys.pop()], inputs["sampling_rate"]
    if isinstance(inputs, str | os.PathLike | bytes | bytearray):
        audio, _ = decode_audio(inputs, WHISPER_RATE, field)
        return audio
    if isinstance(inputs, np.ndarray | list):
        if sampling_rate is None:
            raise SampleRateError(f"{field}: an array of samples needs its sampling_rate")
        rate = check_rate(sampling_rate)
        return resample(as_mono_float(inputs, field), rate, WHISPER_RATE)
    raise MediaInputError(
        f"{field}: expected a file path, file bytes, or an array with its sampling_rate, got {type(inputs).__name__}"
    )


class Transcriber:
    """One Whisper model in CTranslate2 on the CPU."""

    def __init__(
        self, model: str | os.PathLike[str] | None = None, compute_type: str = "int8", cpu_threads: int = 0
    ) -> None:
        # int8 weights, faster-whisper's advice for CPUs: the stored float16 runs as float32 on a
        # CPU, which was over 10x slower here on the same audio
        from faster_whisper import WhisperModel  # imports ctranslate2: only when transcription is wanted

        self.name, path = model_folder(model)
        try:
            self.model = WhisperModel(
                str(path), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, local_files_only=True
            )
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelFormatError(f"{path}: not a loadable Whisper model ({type(e).__name__}: {e})") from e
        self.multilingual: bool = self.model.model.is_multilingual
        self._lock = threading.Lock()  # one decode at a time: CTranslate2 already uses every thread given

    def check_language(self, language: str | None) -> str | None:
        if language is None or not language.strip():
            return None if self.multilingual else "en"
        language = language.strip().lower()
        if not self.multilingual and language != "en":
            raise MediaInputError(f"language: {self.name} is an English-only model; got {language!r}")
        if self.multilingual and language not in self.model.supported_languages:
            raise MediaInputError(f"language: {language!r} is not one of Whisper's language codes")
        return language

    def transcribe(
        self,
        audio: np.ndarray,
        language: str | None = None,
        word_timestamps: bool = False,
        beam_size: int = 5,
        temperature: float | None = None,
        initial_prompt: str | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 `audio`, shape (n,)."""
        language = self.check_language(language)
        if temperature is not None and not 0.0 <= temperature <= 1.0:
            raise MediaInputError(f"temperature: expected 0 to 1, got {temperature}")
        # None keeps Whisper's fallback ladder (0.0, 0.2, ... 1.0) when a window decodes badly
        temps: Any = temperature if temperature is not None else [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        with self._lock:
            segments, info = self.model.transcribe(
                audio,
                language=language,
                beam_size=beam_size,
                temperature=temps,
                word_timestamps=word_timestamps,
                initial_prompt=initial_prompt or None,
            )
            out = [
                Segment(
                    s.id,
                    s.start,
                    s.end,
                    s.text,
                    s.avg_logprob,
                    s.no_speech_prob,
                    s.compression_ratio,
                    s.temperature or 0.0,
                    list(s.tokens),
                    [Word(w.start, w.end, w.word, w.probability) for w in s.words or ()],
                )
                for s in segments  # a generator: decoding happens while it is read
            ]
        text = "".join(s.text for s in out).strip()
        return Transcript(text, info.language, round(len(audio) / WHISPER_RATE, 3), out)
