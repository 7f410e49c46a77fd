"""Audio in and out: decoding any container FFmpeg reads, resampling, and encoding wav/pcm/flac/mp3.

Audio inside brainwork is a mono float32 array in [-1, 1], shape (samples,), with its rate in Hz.
FFmpeg comes from PyAV's wheel (faster-whisper decodes with it too), so nothing is needed on
the system. Encoders work chunk by chunk so speech can stream out as each sentence is made.
"""

from __future__ import annotations

import io
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from brainwork.media_errors import AudioDecodeError, MediaInputError, SampleRateError, UnsupportedFormatError

MIN_RATE = 4_000  # below telephone band: no speech model can use it
MAX_RATE = 384_000  # the highest rate audio interfaces record at
MAX_DECODED_SECONDS = 4 * 3600  # refuse to decode more than this (a zip-bomb-like file)

# response_format -> media type; "pcm" is raw signed 16-bit little-endian mono, as OpenAI sends it
MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
}
AUDIO_FORMATS = tuple(MEDIA_TYPES)


def check_rate(rate: Any, field: str = "sampling_rate") -> int:
    """`rate` as an int in [MIN_RATE, MAX_RATE]; a SampleRateError naming `field` otherwise."""
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise SampleRateError(f"{field}: expected an integer number of samples per second, got {rate!r}")
    if not MIN_RATE <= int(rate) <= MAX_RATE:
        raise SampleRateError(f"{field}: {int(rate)} Hz is outside the usable range {MIN_RATE}..{MAX_RATE} Hz")
    return int(rate)


def as_mono_float(array: Any, field: str = "inputs") -> np.ndarray:
    """A 1-D float32 array from mono or multi-channel samples (int16 scaled to [-1, 1])."""
    a = np.asarray(array)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif not np.issubdtype(a.dtype, np.floating):
        raise AudioDecodeError(f"{field}: samples must be float or int16, got dtype {a.dtype}")
    if a.ndim == 2:  # (channels, samples) or (samples, channels): average the shorter axis
        a = a.mean(axis=0 if a.shape[0] <= a.shape[1] else 1)
    if a.ndim != 1:
        raise AudioDecodeError(f"{field}: expected samples shaped (n,) or (channels, n), got shape {a.shape}")
    if a.size == 0:
        raise AudioDecodeError(f"{field}: no samples")
    if not np.all(np.isfinite(a)):
        raise AudioDecodeError(f"{field}: samples contain NaN or infinity")
    return np.ascontiguousarray(a, dtype=np.float32)


def decode_audio(
    source: bytes | bytearray | str | os.PathLike[str], rate: int | None = None, field: str = "file"
) -> tuple[np.ndarray, int]:
    """Decode a file or its bytes to mono float32, resampled to `rate` (default: the file's own).

    Returns (samples, rate). Anything FFmpeg cannot read as audio raises AudioDecodeError.
    """
    if isinstance(source, bytes | bytearray):
        if not source:
            raise AudioDecodeError(f"{field}: empty file")
        opened: Any = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise AudioDecodeError(f"{field}: no such file: {path}")
        opened = str(path)
    chunks: list[np.ndarray] = []
    try:
        with av.open(opened, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{field}: the file has no audio stream")
            stream = container.streams.audio[0]
            src_rate = check_rate(stream.codec_context.sample_rate, f"{field}: sample rate")
            out_rate = src_rate if rate is None else check_rate(rate, "rate")
            # 16-bit mono out of swresample, as faster-whisper's own decoder does: a file gives
            # Whisper the very samples it would get from plain faster-whisper
            resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)
            total, limit = 0, MAX_DECODED_SECONDS * out_rate
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))  # (1, n) packed int16 -> (n,)
                    total += chunks[-1].size
                if total > limit:
                    raise AudioDecodeError(f"{field}: longer than {MAX_DECODED_SECONDS // 3600} hours")
            for out in resampler.resample(None):  # flush the resampler's tail
                chunks.append(out.to_ndarray().reshape(-1))
    except MediaInputError:  # ours, already naming the field (a ValueError too)
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as e:
        raise AudioDecodeError(f"{field}: not a readable audio file ({type(e).__name__}: {e})") from None
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if audio.size == 0:
        raise AudioDecodeError(f"{field}: the audio stream holds no samples")
    return audio.astype(np.float32) / 32768.0, out_rate


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample mono float32 `audio` from `rate` to `target` Hz with FFmpeg's swresample."""
    rate, target = check_rate(rate), check_rate(target, "target rate")
    if rate == target:
        return audio
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    parts = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")


def wav_header(rate: int, n_samples: int | None) -> bytes:
    """44-byte RIFF header for 16-bit mono; `None` samples (a stream) writes 0xFFFFFFFF sizes,
    which players and OpenAI's streamed wav use for 'until the end'."""
    data = 0xFFFFFFFF if n_samples is None else 2 * n_samples
    riff = 0xFFFFFFFF if n_samples is None else 36 + data
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVE"
        + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


class StreamEncoder:
    """Encode audio chunk by chunk: `encode(chunk)` returns the bytes ready now, `finish()` the rest.

    wav: a streaming header then 16-bit samples; pcm: 16-bit samples only; flac and mp3: FFmpeg's
    encoders with no container (a FLAC stream is its 'fLaC' marker, STREAMINFO, then frames; an
    MP3 stream is its frames), so every byte can go out as soon as it is made.
    """

    def __init__(self, fmt: str, rate: int) -> None:
        if fmt not in MEDIA_TYPES:
            raise UnsupportedFormatError(
                f"response_format: {fmt!r} is not supported; choose one of {', '.join(AUDIO_FORMATS)}"
            )
        self.fmt, self.rate = fmt, check_rate(rate)
        self.media_type = MEDIA_TYPES[fmt]
        self._started = False
        self._pts = 0
        self._codec: Any = None
        if fmt in ("flac", "mp3"):
            name = "flac" if fmt == "flac" else "libmp3lame"
            try:
                codec = av.CodecContext.create(name, "w")
            except (av.FFmpegError, ValueError):  # an FFmpeg build without this encoder
                raise UnsupportedFormatError(
                    f"response_format: {fmt!r} needs FFmpeg's {name} encoder, which this install lacks; use wav or pcm"
                ) from None
            codec.sample_rate, codec.layout = self.rate, "mono"
            codec.format = "s16" if fmt == "flac" else "fltp"
            codec.time_base = Fraction(1, self.rate)
            codec.open()
            self._codec = codec

    def _head(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        if self.fmt == "wav":
            return wav_header(self.rate, None)
        if self.fmt == "flac":
            streaminfo = bytes(self._codec.extradata)[-34:]  # last-block flag 0x80, type 0, length 34
            return b"fLaC" + bytes([0x80, 0, 0, 34]) + streaminfo
        return b""

    def encode(self, chunk: np.ndarray) -> bytes:
        head = self._head()
        if self._codec is None:
            return head + to_int16(chunk).tobytes()
        samples = to_int16(chunk) if self.fmt == "flac" else chunk.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format=self._codec.format.name, layout="mono")
        frame.sample_rate, frame.pts = self.rate, self._pts
        self._pts += samples.size
        return head + b"".join(bytes(p) for p in self._codec.encode(frame))

    def finish(self) -> bytes:
        head = self._head()
        if self._codec is None:
            return head
        return head + b"".join(bytes(p) for p in self._codec.encode(None))


def encode_audio(audio: np.ndarray, rate: int, fmt: str = "wav") -> bytes:
    """A whole file in `fmt`; wav gets exact sizes in its header (a file, not a stream)."""
    if fmt == "wav":
        return wav_header(check_rate(rate), audio.size) + to_int16(audio).tobytes()
    enc = StreamEncoder(fmt, rate)
    return enc.encode(audio) + enc.finish()
