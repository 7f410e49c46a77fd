"""Speech real-time factor (audio seconds per compute second): brainwork's pipelines beside plain
`piper` and `faster-whisper` calls on the same model files, input and threads.

TTS: the 20 round-trip sentences as one text; plain is `PiperVoice.synthesize` over all
sentences, brainwork is `pipeline("text-to-speech")(text)`. ASR: that speech saved as one wav
file; plain is `WhisperModel(..., compute_type="int8").transcribe(path, language="en")` with its
segments read, brainwork is `pipeline("automatic-speech-recognition")(path)` (same model, same
compute type, same beam size 5). Runs alternate between the two sides and the fastest of each
counts, so load from other processes hits both alike. Prints each RTF, brainwork/plain, and
whether the two transcripts are equal.

    .venv/bin/python benchmarks/speech_rtf.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainwork import pipeline
from brainwork.audio.audio_io import encode_audio
from brainwork.store import resolve_model
from tests.speech_sentences import SENTENCES


def fastest_rtf(repeat: int, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Each side returns the seconds of audio it handled; the best audio/compute ratio counts."""
    best = dict.fromkeys(sides, 0.0)
    for _ in range(repeat):
        for name, fn in sides.items():  # alternate, so both sides see the same background load
            t = time.perf_counter()
            audio_s = fn()
            best[name] = max(best[name], audio_s / (time.perf_counter() - t))
    return best


def report(task: str, rtf: dict[str, float]) -> None:
    plain, ours = rtf["plain"], rtf["brainwork"]
    print(f"{task}: plain {plain:.2f}x real time, brainwork {ours:.2f}x, brainwork/plain {ours / plain:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per side; the fastest counts")
    args = ap.parse_args()
    text = " ".join(SENTENCES)

    from piper import PiperVoice

    onnx = resolve_model("piper-en-us-joe").path
    plain_voice = PiperVoice.load(onnx)
    tts = pipeline("text-to-speech", model="piper-en-us-joe")
    rate = tts.sampling_rate

    def plain_tts() -> float:
        return sum(c.audio_float_array.size for c in plain_voice.synthesize(text)) / rate

    def ours_tts() -> float:
        return tts(text)["audio"].size / rate

    ours_tts(), plain_tts()  # warm-up: ONNX Runtime plans its kernels on the first run
    report("text-to-speech", fastest_rtf(args.repeat, {"plain": plain_tts, "brainwork": ours_tts}))

    from faster_whisper import WhisperModel

    speech = tts(text)["audio"]
    wav = Path(tempfile.mkdtemp()) / "speech.wav"
    wav.write_bytes(encode_audio(speech, rate, "wav"))
    seconds = speech.size / rate
    plain_model = WhisperModel(str(resolve_model("whisper-tiny.en").path), device="cpu", compute_type="int8")
    asr = pipeline("automatic-speech-recognition", model="whisper-tiny.en")
    texts: dict[str, str] = {}

    def plain_asr() -> float:
        segments, _ = plain_model.transcribe(str(wav), language="en", beam_size=5)
        texts["plain"] = "".join(s.text for s in segments).strip()
        return seconds

    def ours_asr() -> float:
        texts["brainwork"] = asr(str(wav), language="en")["text"]
        return seconds

    ours_asr(), plain_asr()
    report(
        f"speech recognition ({seconds:.1f} s of audio)",
        fastest_rtf(args.repeat, {"plain": plain_asr, "brainwork": ours_asr}),
    )
    print(f"transcripts equal: {texts['plain'] == texts['brainwork']}")
    if texts["plain"] != texts["brainwork"]:
        print(f"  plain:     {texts['plain']}\n  brainwork: {texts['brainwork']}")
    print(f"audio peak {np.abs(speech).max():.3f}")


if __name__ == "__main__":
    main()
