"""`brainwork say` (text to speech) and `brainwork transcribe` (speech to text).

Only argparse is imported here at parser-building time; the runtimes (ONNX Runtime, CTranslate2)
load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from brainwork.media_errors import MediaInputError

TTS_DEFAULT = "piper-en-us-joe"
ASR_DEFAULT = "whisper-tiny.en"
TRANSCRIPT_FORMATS = ("text", "json", "verbose_json", "srt", "vtt")
AUDIO_FORMATS = ("wav", "pcm", "flac", "mp3")  # as brainwork.audio.audio_io, without importing FFmpeg here


def add_parsers(sub: argparse._SubParsersAction) -> None:
    say = sub.add_parser(
        "say",
        help="speak text into an audio file",
        description="Synthesise TEXT ('-' reads stdin) with a Piper voice into an audio file, sentence by sentence. "
        f"The format comes from --format or the file's extension: {', '.join(AUDIO_FORMATS)}; "
        "'-o -' writes to stdout.",
    )
    say.add_argument("text", nargs="+", metavar="TEXT", help="the words to speak (joined by spaces), or '-'")
    say.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the audio, '-' for stdout")
    say.add_argument("-m", "--model", default=TTS_DEFAULT, help=f"Piper voice model (default: {TTS_DEFAULT})")
    say.add_argument("--voice", help="a voice (speaker) of the model (default: its own)")
    say.add_argument("--speed", type=float, default=1.0, help="0.25 to 4.0 (default: 1.0)")
    say.add_argument("--format", choices=AUDIO_FORMATS, help="audio format (default: from the file name, else wav)")

    tr = sub.add_parser(
        "transcribe",
        help="turn speech in an audio file into text",
        description="Transcribe FILE (any audio FFmpeg reads: wav, flac, mp3, ogg, m4a, ...) with Whisper.",
    )
    tr.add_argument("file", metavar="FILE", help="the audio file")
    tr.add_argument("-m", "--model", default=ASR_DEFAULT, help=f"Whisper model (default: {ASR_DEFAULT})")
    tr.add_argument("--language", help="the spoken language's code, e.g. 'en' (default: detected)")
    tr.add_argument(
        "--format", choices=TRANSCRIPT_FORMATS, default="text", help="output: text, json, verbose_json, srt, vtt"
    )
    tr.add_argument("--word-timestamps", action="store_true", help="add word timings (verbose_json)")


def cmd_say(args: argparse.Namespace) -> int:
    import numpy as np

    from brainwork.audio.audio_io import StreamEncoder, encode_audio
    from brainwork.pipelines.text_to_speech import TextToSpeechPipeline

    text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
    fmt = args.format or (Path(args.output).suffix.lstrip(".").lower() if args.output != "-" else "wav")
    if fmt not in AUDIO_FORMATS:
        raise MediaInputError(f"--format: cannot tell the format from {args.output!r}; give --format")
    tts = TextToSpeechPipeline(args.model)
    chunks = tts.stream(text, voice=args.voice, speed=args.speed)  # checks the input before any file opens
    if fmt == "wav" and args.output != "-":  # a file: exact sizes in the header
        data = encode_audio(np.concatenate(list(chunks)), tts.sampling_rate, "wav")
        Path(args.output).write_bytes(data)
        return 0
    encoder = StreamEncoder(fmt, tts.sampling_rate)
    sink = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    try:
        for chunk in chunks:
            sink.write(encoder.encode(chunk))
            sink.flush()
        sink.write(encoder.finish())
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from brainwork.audio.transcripts import render_transcript
    from brainwork.pipelines.speech_recognition import SpeechRecognitionPipeline

    asr = SpeechRecognitionPipeline(args.model)
    result = asr.transcribe(args.file, language=args.language, word_timestamps=args.word_timestamps)
    body, _ = render_transcript(result, args.format, words=args.word_timestamps, segments=True)
    print(body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, indent=2))
    return 0
