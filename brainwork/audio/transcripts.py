"""A transcript in OpenAI's response formats: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

from typing import Any

from brainwork.audio.asr import Transcript
from brainwork.media_errors import MediaInputError

TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render_transcript(
    t: Transcript, fmt: str, words: bool = False, segments: bool = True
) -> tuple[str | dict[str, Any], str]:
    """(body, media type): a dict for the JSON formats, a string for the others."""
    if fmt not in TRANSCRIPT_FORMATS:
        raise MediaInputError(f"response_format: {fmt!r} is not one of {', '.join(TRANSCRIPT_FORMATS)}")
    if fmt == "json":
        return {"text": t.text}, MEDIA_TYPES[fmt]
    if fmt == "text":
        return t.text + "\n", MEDIA_TYPES[fmt]
    if fmt == "srt":
        cues = [
            f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
            for i, s in enumerate(t.segments, 1)
        ]
        return "\n".join(cues), MEDIA_TYPES[fmt]
    if fmt == "vtt":
        cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in t.segments]
        return "WEBVTT\n\n" + "\n".join(cues), MEDIA_TYPES[fmt]
    body: dict[str, Any] = {"task": "transcribe", "language": _language_name(t.language), "duration": t.duration}
    body["text"] = t.text
    if segments:
        body["segments"] = [
            {
                "id": s.id - 1 if s.id > 0 else s.id,  # faster-whisper counts from 1, OpenAI from 0
                "seek": 0,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in t.segments
        ]
    if words:
        body["words"] = [{"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)} for w in t.words]
    return body, MEDIA_TYPES[fmt]


# OpenAI's verbose_json names the language in words ("english"); faster-whisper has codes only
_NAMES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch"}


def _language_name(code: str) -> str:
    return _NAMES.get(code, code)
