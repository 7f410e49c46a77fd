"""Speech routes in OpenAI's shapes: POST /v1/audio/speech (audio streamed sentence by sentence)
and POST /v1/audio/transcriptions (multipart upload).

The speech models are not loaded at startup: each loads on its first request, on the worker
thread that then runs it (one per family, so a long synthesis never blocks a transcription
and the event loop never runs a model). A model that fails to load answers 503 and is tried
again on the next request; bad input answers 400 naming the field.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from brainwork.catalog import CATALOG
from brainwork.errors import BrainworkError, ModelNotFoundError
from brainwork.server.errors import APIError, bad_request, from_value_error
from brainwork.server.generation import ClientGone, until_disconnect
from brainwork.server.limits import Admission
from brainwork.server.state import ServerState

log = logging.getLogger("brainwork.server")

DEFAULT_TTS = "piper-en-us-joe"
DEFAULT_ASR = "whisper-tiny.en"
# OpenAI's model names, served by the default model of the task so OpenAI clients work unchanged
TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
ASR_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, description=f"a text-to-speech catalog name or {', '.join(TTS_ALIASES)}")
    input: str = Field(description="the text to speak, at most 4096 characters")
    voice: str | None = Field(None, description="a voice of the model; OpenAI's voice names select its default")
    response_format: Literal["wav", "pcm", "flac", "mp3"] = Field(
        "mp3", description="pcm is raw 16-bit little-endian mono at the rate in the x-sample-rate header"
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, allow_inf_nan=False)
    stream_format: Literal["audio"] | None = Field(None, description="only 'audio': bytes as they are made")
    instructions: str | None = Field(None, description="accepted and ignored: Piper voices take no instructions")


class _Family:
    """The loaded models of one task, by name, and the single worker thread that runs them."""

    def __init__(self, kind: str, task: str, default: str, aliases: tuple[str, ...], factory: Callable[[str], Any]):
        self.kind, self.task, self.default, self.aliases, self.factory = kind, task, default, aliases, factory
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"brainwork-{kind}")
        self.models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def resolve(self, model: str | None) -> str:
        if model is None or model in self.aliases:
            return self.default
        entry = CATALOG.get(model)
        if entry is None or entry.task != self.task:
            known = [n for n, e in CATALOG.items() if e.task == self.task]
            raise APIError(
                404,
                f"model: {model!r} is not a {self.task} model here; use one of {', '.join(known + list(self.aliases))}",
                param="model",
                code="model_not_found",
            )
        return model

    def _load(self, name: str) -> Any:
        with self._lock:
            if name not in self.models:
                log.info("loading %s model %s", self.kind, name)
                self.models[name] = self.factory(name)
            return self.models[name]

    async def get(self, model: str | None) -> Any:
        name = self.resolve(model)
        if name in self.models:
            return self.models[name]
        try:
            return await self.run(lambda: self._load(name))
        except (BrainworkError, OSError, RuntimeError) as e:  # missing package, broken file: not the caller's fault
            log.error("loading %s failed: %s", name, e)
            code = 404 if isinstance(e, ModelNotFoundError) else 503
            raise APIError(
                code, f"model {name!r} could not be loaded: {e}", "server_error", "model", "model_unavailable"
            ) from e

    async def run(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn)


def _tts_factory(name: str) -> Any:
    from brainwork.pipelines.text_to_speech import TextToSpeechPipeline

    return TextToSpeechPipeline(name)


def _asr_factory(name: str) -> Any:
    from brainwork.pipelines.speech_recognition import SpeechRecognitionPipeline

    return SpeechRecognitionPipeline(name)


def build_router(state: ServerState, dependencies: list[Any]) -> APIRouter:
    from brainwork.server.protocol import ERROR_RESPONSES

    router = APIRouter(dependencies=dependencies, responses=ERROR_RESPONSES)
    tts = _Family("tts", "text-to-speech", DEFAULT_TTS, TTS_ALIASES, _tts_factory)
    asr = _Family("asr", "automatic-speech-recognition", DEFAULT_ASR, ASR_ALIASES, _asr_factory)
    speech_slots = Admission(state.config.max_concurrent, state.config.max_queue)
    transcribe_slots = Admission(state.config.max_concurrent, state.config.max_queue)

    @router.post(
        "/v1/audio/speech",
        tags=["openai"],
        summary="Text to speech; the audio streams out sentence by sentence",
        response_class=StreamingResponse,
    )
    async def speech(body: SpeechRequest) -> Response:
        from brainwork.audio.audio_io import StreamEncoder

        pipe = await tts.get(body.model)
        try:  # every check happens here, before the 200 and the first byte
            chunks = pipe.stream(body.input, voice=body.voice, speed=body.speed)
            encoder = StreamEncoder(body.response_format, pipe.sampling_rate)
        except ValueError as e:
            raise from_value_error(e) from None
        await speech_slots.acquire()
        done = released = False

        def release() -> None:
            # from the stream's end and again from the response's background task: a client gone
            # before the first byte never starts the generator, so its `finally` would never run
            nonlocal released
            if not released:
                released = True
                speech_slots.release()

        def step() -> bytes:
            """One sentence through the voice model ((n,) float32) and the encoder; runs on the tts thread."""
            nonlocal done
            chunk = next(chunks, None)
            if chunk is None:
                done = True
                return encoder.finish()
            return encoder.encode(chunk)

        async def audio() -> AsyncIterator[bytes]:
            try:
                while not done:
                    data = await tts.run(step)
                    if data:
                        yield data
            except Exception as e:  # after the 200 only the log can be told; the stream just ends
                log.error("speech synthesis failed mid-stream: %s: %s", type(e).__name__, e)
            finally:  # also when the client hangs up mid-stream
                release()

        headers = {"x-sample-rate": str(pipe.sampling_rate)}
        return StreamingResponse(
            audio(), media_type=encoder.media_type, headers=headers, background=BackgroundTask(release)
        )

    @router.post("/v1/audio/transcriptions", tags=["openai"], summary="Speech to text (multipart upload)")
    async def transcriptions(
        request: Request,
        file: Annotated[UploadFile, File(description="the audio: any format FFmpeg reads (wav, flac, mp3, ogg, webm)")],
        model: Annotated[str | None, Form()] = None,
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
        granularities_plain: Annotated[list[str] | None, Form(alias="timestamp_granularities")] = None,
    ) -> Response:
        from brainwork.audio.transcripts import TRANSCRIPT_FORMATS, render_transcript

        if response_format not in TRANSCRIPT_FORMATS:
            raise bad_request(
                f"response_format: {response_format!r} is not one of {', '.join(TRANSCRIPT_FORMATS)}", "response_format"
            )
        # the openai client sends the list as `timestamp_granularities[]`; curl users often drop the brackets
        timestamp_granularities = (timestamp_granularities or []) + (granularities_plain or [])
        grains = set(timestamp_granularities or ["segment"])
        if not grains <= {"word", "segment"}:
            raise bad_request(f"timestamp_granularities: expected 'word' and/or 'segment', got {sorted(grains)}")
        if timestamp_granularities and response_format != "verbose_json":
            raise bad_request(
                "timestamp_granularities: needs response_format 'verbose_json'", "timestamp_granularities"
            )
        pipe = await asr.get(model)
        data = await file.read()

        def work() -> Any:
            try:
                return pipe.transcribe(
                    data,
                    language=language,
                    word_timestamps="word" in grains,
                    temperature=temperature or None,  # 0: Whisper's fallback ladder, as OpenAI documents
                    initial_prompt=prompt,
                )
            except ValueError as e:
                raise from_value_error(_as_file_error(e)) from None

        async def admitted() -> Any:
            await transcribe_slots.acquire()
            try:
                return await asr.run(work)
            finally:
                transcribe_slots.release()

        try:
            result = await until_disconnect(request, admitted())
        except ClientGone:
            return Response(status_code=499)
        body, media_type = render_transcript(
            result, response_format, words="word" in grains, segments="segment" in grains
        )
        if isinstance(body, dict):
            return JSONResponse(body)
        return Response(body, media_type=media_type)

    return router


def _as_file_error(e: ValueError) -> ValueError:
    """Decoder messages name the upload 'inputs'; the form field is 'file'."""
    text = str(e)
    return ValueError("file" + text[len("inputs") :]) if text.startswith("inputs") else e
