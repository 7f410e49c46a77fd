"""/classify, /v1/rerank and /v1/score on a real server: the same numbers as the library
pipelines on the same weights, per-item errors, and OpenAI-shaped errors for bad requests."""

from __future__ import annotations

import httpx
import pytest

from brainwork import pipeline
from tests.server_helpers import serve
from tests.tiny_encoders import make_encoder, random_sentences


@pytest.fixture(scope="module")
def server():
    with serve() as s:  # the defaults: every task on all-minilm-l6-v2
        yield s


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    classifier = tmp_path_factory.mktemp("cls")
    make_encoder(classifier, "distilbert-cls")
    cross = tmp_path_factory.mktemp("cross")
    make_encoder(cross, "cross-encoder")
    args = ("--classifier-model", str(classifier), "--rerank-model", str(cross), "--embedding-model", "none")
    with serve(*args, "--encoder-dtype", "float32") as s:  # scores compared with the library at 1e-5
        yield s, classifier, cross


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def test_classify_sentiment_matches_the_pipeline(server) -> None:
    texts = ["I love this phone, it works great!", "Worst service ever, I want a refund."]
    reply = post(server, "/classify", {"input": texts})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and body["model"] == "all-minilm-l6-v2"
    assert body["labels"] == ["NEGATIVE", "POSITIVE"]
    ref = pipeline("sentiment-analysis", model="all-minilm-l6-v2")(texts, top_k=None)
    for item, expected in zip(body["data"], ref, strict=True):
        want = {e["label"]: e["score"] for e in expected}
        assert item["probs"] == pytest.approx([want["NEGATIVE"], want["POSITIVE"]], abs=1e-5)
        assert item["label"] == expected[0]["label"] and item["num_classes"] == 2
    assert [d["label"] for d in body["data"]] == ["POSITIVE", "NEGATIVE"]
    assert post(server, "/v1/classify", {"input": texts}).json()["data"] == body["data"]


def test_classify_with_labels_is_zero_shot(server) -> None:
    texts = ["The football team won the championship match.", "The central bank raised interest rates."]
    labels = ["sport", "economy", "cooking"]
    reply = post(server, "/classify", {"input": texts, "labels": labels})
    assert reply.status_code == 200, reply.text
    ref = pipeline("zero-shot-classification", model="all-minilm-l6-v2")(texts, labels)
    for item, expected in zip(reply.json()["data"], ref, strict=True):
        want = dict(zip(expected["labels"], expected["scores"], strict=True))
        assert item["probs"] == pytest.approx([want[label] for label in labels], abs=1e-5)
    assert [d["label"] for d in reply.json()["data"]] == ["sport", "economy"]


def test_one_bad_item_does_not_fail_the_others(server) -> None:
    reply = post(server, "/classify", {"input": ["I am so happy today", "", 42, "This is terrible"]})
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2, 3]
    assert data[0]["label"] == "POSITIVE" and data[3]["label"] == "NEGATIVE"
    assert data[1]["error"]["message"] == "input[1]: empty string"
    assert data[2]["error"]["message"] == "input[2]: expected a string, got int"
    assert data[2]["error"]["type"] == "invalid_request_error"


def test_rerank_orders_documents_and_reports_bad_ones(server) -> None:
    query = "How do I bake bread?"
    docs = ["Stock prices fell sharply.", "Knead the dough and bake it for 30 minutes.", "", "Football results."]
    reply = post(server, "/v1/rerank", {"query": query, "documents": docs, "top_n": 2})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    good = [d for d in docs if d]
    ref = pipeline("rerank")(query, good)
    assert [r["index"] for r in body["results"]] == [docs.index(r["document"]) for r in ref[:2]]
    assert body["results"][0] == {
        "index": 1,
        "relevance_score": pytest.approx(ref[0]["score"], abs=1e-5),
        "document": {"text": docs[1]},
    }
    assert body["errors"] == [{"index": 2, "error": pytest.approx(body["errors"][0]["error"])}]
    assert body["errors"][0]["error"]["message"] == "documents[2]: empty string"
    plain = post(
        server, "/v1/rerank", {"query": query, "documents": [{"text": d} for d in good], "return_documents": False}
    )
    assert all(set(r) == {"index", "relevance_score"} for r in plain.json()["results"])


def test_score_one_to_many_and_pairwise(server) -> None:
    reply = post(
        server, "/v1/score", {"text_1": "A cat sits on the mat.", "text_2": ["A cat is sitting.", "Taxes rose."]}
    )
    assert reply.status_code == 200, reply.text
    scores = [d["score"] for d in reply.json()["data"]]
    ref = pipeline("sentence-similarity")("A cat sits on the mat.", ["A cat is sitting.", "Taxes rose."])
    assert scores == pytest.approx(ref, abs=1e-5) and scores[0] > scores[1]
    pairwise = post(server, "/v1/score", {"text_1": ["a dog", "the sea"], "text_2": ["a puppy", "the ocean"]}).json()
    assert [d["object"] for d in pairwise["data"]] == ["score", "score"]


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/classify", {"input": []}, 400, "input"),
        ("/classify", {"input": "x", "labels": []}, 400, "labels"),
        ("/classify", {"input": "x", "labels": ["a", "a"]}, 400, "labels"),
        ("/classify", {"input": "x", "labels": ["a"], "hypothesis_template": "no slot"}, 400, "hypothesis_template"),
        ("/classify", {"input": "x", "model": "nope"}, 404, "model"),
        ("/classify", {"input": "x", "model": "smollm2-135m-instruct"}, 400, "model"),
        ("/classify", {}, 400, "input"),
        ("/v1/rerank", {"query": " ", "documents": ["a"]}, 400, "query"),
        ("/v1/rerank", {"query": "q", "documents": []}, 400, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n"),
        ("/v1/score", {"text_1": ["a", "b"], "text_2": ["a", "b", "c"]}, 400, "text_2"),
        ("/v1/score", {"text_1": [], "text_2": ["a"]}, 400, "text_1"),
    ],
)
def test_bad_requests_get_openai_errors(server, path, body, status, param) -> None:
    reply = post(server, path, body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["message"]


def test_routes_are_in_the_openapi_schema(server) -> None:
    paths = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    assert {"/classify", "/v1/classify", "/v1/rerank", "/v1/score"} <= set(paths)


def test_fine_tuned_classifier_and_cross_encoder(tiny) -> None:
    server, classifier, cross = tiny
    texts = random_sentences([3, 8], seed=7)
    too_long = random_sentences([90], seed=8)[0]  # the tiny model holds 64 positions
    reply = post(server, "/classify", {"input": [texts[0], too_long, texts[1]]})
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    ref = pipeline("text-classification", model=str(classifier), dtype="float32")(texts, top_k=None)
    for item, expected in zip([data[0], data[2]], ref, strict=True):
        want = {e["label"]: e["score"] for e in expected}
        assert item["probs"] == pytest.approx([want[label] for label in reply.json()["labels"]], abs=1e-5)
    assert "input[1]" in data[1]["error"]["message"] and "truncation" in data[1]["error"]["message"]
    truncated = post(server, "/classify", {"input": [too_long], "truncation": True}).json()["data"][0]
    assert "probs" in truncated
    labelled = post(server, "/classify", {"input": texts, "labels": ["w5", "w6"]})
    assert labelled.status_code == 400 and "not an NLI model" in labelled.json()["error"]["message"]

    query, docs = "w5 w9", random_sentences([4, 12, 7], seed=9)
    reranked = post(server, "/v1/rerank", {"query": query, "documents": docs}).json()["results"]
    ref_rank = pipeline("rerank", model=str(cross), dtype="float32")(query, docs)
    assert [r["index"] for r in reranked] == [r["index"] for r in ref_rank]
    assert [r["relevance_score"] for r in reranked] == pytest.approx([r["score"] for r in ref_rank], abs=1e-5)
    no_embeddings = post(server, "/v1/embeddings", {"input": "x"})
    assert no_embeddings.status_code == 404


def test_classify_takes_images_with_per_item_errors(server) -> None:
    import base64
    from pathlib import Path

    import skimage

    samples = Path(skimage.__file__).parent / "data"
    cat = base64.b64encode((samples / "chelsea.png").read_bytes()).decode()
    coffee = base64.b64encode((samples / "coffee.png").read_bytes()).decode()
    body = {
        "input": [
            {"image": cat},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + coffee}},
            {"image": base64.b64encode(b"not an image").decode()},
            {"text": "hello"},
        ],
        "top_k": 3,
    }
    reply = post(server, "/v1/classify", body)
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    ref = pipeline("image-classification")([str(samples / "chelsea.png"), str(samples / "coffee.png")], top_k=3)
    for item, expected in zip(data[:2], ref, strict=True):
        assert [t["label"] for t in item["top_k"]] == [e["label"] for e in expected]
        assert item["score"] == pytest.approx(expected[0]["score"], abs=1e-5)
    assert data[1]["label"] == "espresso"
    assert "input[2]" in data[2]["error"]["message"] and "image" in data[2]["error"]["message"]
    assert data[3]["error"]["message"].startswith("input[3]: expected {'image'")
    wrong = post(server, "/v1/classify", {"input": [{"image": cat}], "model": "all-minilm-l6-v2"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "model"


def test_v1_classify_takes_image_files_as_a_multipart_form(server) -> None:
    from pathlib import Path

    import skimage

    samples = Path(skimage.__file__).parent / "data"
    files = [
        ("file", ("coffee.png", (samples / "coffee.png").read_bytes(), "image/png")),
        ("file", ("notes.txt", b"plain text, not a picture", "text/plain")),
    ]
    reply = httpx.post(f"{server.url}/v1/classify", files=files, data={"top_k": "2"}, timeout=60)
    assert reply.status_code == 200, reply.text
    first, second = reply.json()["data"]
    assert first["label"] == "espresso" and len(first["top_k"]) == 2
    assert second["index"] == 1 and "input[1]" in second["error"]["message"]
    bad = httpx.post(f"{server.url}/v1/classify", files=files, data={"top_k": "lots"}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "top_k"
    nothing = httpx.post(f"{server.url}/v1/classify", data={"model": "x"}, files={"other": b"1"}, timeout=60)
    assert nothing.status_code == 400 and nothing.json()["error"]["param"] == "file"
    broken = httpx.post(f"{server.url}/v1/classify", content=b"{not json", timeout=60)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
