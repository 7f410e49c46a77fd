"""The speech routes on a real `brainwork serve` process, driven by the official `openai` client
and by raw HTTP for the bad inputs; the server must answer 4xx and stay up."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import openai
import pytest

from brainwork.audio.audio_io import decode_audio, encode_audio, wav_header
from tests.server_helpers import serve
from tests.speech_sentences import SENTENCES, heard


@pytest.fixture(scope="module")
def server():
    # one request at a time and no queue, so a slot that is not freed shows up as a 429
    with serve("--embedding-model", "none", "--max-model-len", "256", "--max-concurrent", "1", "--max-queue", "0") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_startup_does_not_load_the_speech_models(server):
    # /health is 200 already (serve waited for it) and no speech model has been asked for yet
    assert "loading tts model" not in server.log_text() and "loading asr model" not in server.log_text()


def test_speech_streams_sentence_by_sentence(server):
    text = " ".join(f"This is sentence number {n}." for n in ("one", "two", "three", "four", "five", "six"))
    body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm"}
    warm = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": "Hello."}, timeout=120)
    assert warm.status_code == 200  # the voice loads on first use; time the synthesis, not the load
    arrivals: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
        rate = int(r.headers["x-sample-rate"])
        data = bytearray()
        for piece in r.iter_raw():
            data += piece
            arrivals.append((time.perf_counter() - t0, len(data)))
    assert rate == 22050 and len(data) / 2 / rate > 5  # six sentences: over five seconds of audio
    first, last = arrivals[0][0], arrivals[-1][0]
    assert len(arrivals) >= 3 and first < last * 0.6, arrivals  # audio arrived before the whole text was made
    samples = np.frombuffer(bytes(data), "<i2")
    assert np.abs(samples).max() > 10000  # real speech, near full scale (Piper normalises each sentence)


def test_speech_then_transcription_with_the_openai_client(client):
    sentence = "The library opens at nine and closes at five."
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=sentence, response_format="flac"
    ) as r:
        flac = r.read()
    audio, rate = decode_audio(flac)
    assert rate == 22050 and audio.size / rate > 1.5
    text = client.audio.transcriptions.create(model="whisper-1", file=("speech.flac", flac), language="en").text
    assert heard(sentence, text), text
    verbose = client.audio.transcriptions.create(
        model="whisper-tiny.en",
        file=("speech.flac", flac),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "english" and verbose.duration == pytest.approx(audio.size / rate, abs=0.05)
    assert len(verbose.words) == len(sentence.split()) and heard(sentence, " ".join(w.word for w in verbose.words))
    assert verbose.segments and verbose.segments[0].start == 0.0
    srt = client.audio.transcriptions.create(model="whisper-1", file=("s.flac", flac), response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ")


def test_every_output_format_decodes(server):
    for fmt in ("wav", "mp3", "flac"):
        r = httpx.post(
            f"{server.url}/v1/audio/speech", json={"input": "Good morning.", "response_format": fmt}, timeout=60
        )
        assert r.status_code == 200, r.text
        audio, rate = decode_audio(r.content)
        assert rate == 22050 and 0.4 < audio.size / rate < 3, fmt


def _error(r: httpx.Response, status: int, param: str | None) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    return err["message"]


def test_bad_speech_requests_are_4xx(server):
    url = f"{server.url}/v1/audio/speech"
    assert "empty text" in _error(httpx.post(url, json={"input": "  "}), 400, "input")
    assert "nothing speakable" in _error(httpx.post(url, json={"input": "..."}), 400, "input")
    assert "over the limit of 4096" in _error(httpx.post(url, json={"input": "a" * 5000}), 400, "input")
    assert "unknown voice 'zork'" in _error(httpx.post(url, json={"input": "hi", "voice": "zork"}), 400, "voice")
    _error(httpx.post(url, json={"input": "hi", "speed": 9}), 400, "speed")
    _error(httpx.post(url, json={"input": "hi", "response_format": "ogg"}), 400, "response_format")
    _error(httpx.post(url, json={"input": "hi", "model": "whisper-1"}), 404, "model")
    _error(httpx.post(url, json={"voice": "alloy"}), 400, "input")


def test_bad_uploads_are_4xx_and_the_server_stays_up(server, client):
    url = f"{server.url}/v1/audio/transcriptions"

    def post(data: bytes, **form: str) -> httpx.Response:
        return httpx.post(url, files={"file": ("upload.wav", data)}, data=form, timeout=60)

    assert "not a readable audio file" in _error(post(b"plain text, no audio here " * 50), 400, "file")
    assert "empty file" in _error(post(b""), 400, "file")
    assert "100 Hz is outside" in _error(post(wav_header(100, 800) + bytes(1600)), 400, "file")
    good = encode_audio(np.zeros(16000, np.float32), 16000, "wav")
    assert "English-only" in _error(post(good, language="fr"), 400, "language")
    _error(post(good, response_format="docx"), 400, "response_format")
    _error(post(good, timestamp_granularities="word"), 400, "timestamp_granularities")  # not verbose_json
    _error(post(good, model="tts-1"), 404, "model")
    _error(httpx.post(url, data={"model": "whisper-1"}), 400, "file")
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="whisper-1", file=("x.mp3", io.BytesIO(b"\xff\xfb" + bytes(300))))
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert server.process.poll() is None


def test_a_hang_up_frees_the_slot_and_a_busy_server_says_429(server):
    url = f"{server.url}/v1/audio/speech"
    # ~3,400 characters, about three minutes of speech: more than the socket buffers hold, so
    # the stream is still being made (or waits on the reader) when the second request comes
    long_text = " ".join(SENTENCES * 3)
    assert len(long_text) < 4096
    with httpx.stream("POST", url, json={"input": long_text, "response_format": "pcm"}, timeout=120) as r:
        assert r.status_code == 200
        raw = r.iter_raw()  # kept: a dropped iterator closes the connection (that is the hang-up below)
        next(raw)  # the first sentence has arrived; the rest is still being made
        busy = httpx.post(url, json={"input": "Hello."}, timeout=60)
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1", busy.text
    # the client hung up: its slot comes back (the sentence in progress finishes first)
    deadline = time.monotonic() + 60
    while (r := httpx.post(url, json={"input": "Hello."}, timeout=60)).status_code == 429:
        assert time.monotonic() < deadline, "the hung-up stream never gave its slot back"
        time.sleep(0.5)
    assert r.status_code == 200 and len(r.content) > 1000
    assert "Traceback" not in server.log_text()


def test_speech_routes_are_in_the_openapi_schema(server):
    paths = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    for route in ("/v1/audio/speech", "/v1/audio/transcriptions"):
        responses = paths[route]["post"]["responses"]
        assert {"200", "400", "404", "429"} <= set(responses) and "422" not in responses, route
    assert "multipart/form-data" in paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
