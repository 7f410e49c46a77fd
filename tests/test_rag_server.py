"""The RAG and recommendation routes on a real `brainwork serve` process (SmolLM2 + MiniLM) with
its store in a temporary SQLite file: ingest, answers whole and streamed, refusals, 4xx errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.server_helpers import Server, serve

DOCS = [
    {"id": "volcano", "text": "Mount Ferrowick last erupted in 1911, covering the village of Lannet in ash."},
    {"id": "ferry", "text": "The night ferry to Sollen leaves at 23:40 from pier 4 every day except Sunday."},
    {"id": "pump", "text": "The Kestrel pump must be primed with two litres of water before its first use."},
]
ITEMS = [
    {"id": "pasta", "text": "Spaghetti with tomato sauce and basil.", "metadata": {"kind": "food"}},
    {"id": "pizza", "text": "Pizza margherita with mozzarella and tomato.", "metadata": {"kind": "food"}},
    {"id": "laptop", "text": "A thin laptop with a fast processor.", "metadata": {"kind": "tech"}},
    {"id": "phone", "text": "A smartphone with a great camera.", "metadata": {"kind": "tech"}},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("rag") / "server.sqlite"
    with serve("--max-model-len", "1024", "--max-body-mb", "0.25", "--store", str(store)) as s:
        yield s


def _post(server: Server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=300)


def test_documents_ingest_and_no_op(server: Server) -> None:
    first = _post(server, "/v1/collections/notes/documents", {"documents": DOCS})
    assert first.status_code == 200, first.text
    assert first.json()["added"] == ["volcano", "ferry", "pump"] and first.json()["chunks"] == 3
    again = _post(server, "/v1/collections/notes/documents", {"documents": DOCS})
    assert again.json()["unchanged"] == ["volcano", "ferry", "pump"] and again.json()["chunks"] == 0
    listed = httpx.get(f"{server.url}/v1/collections", timeout=30).json()["data"]
    assert [(c["name"], c["documents"]) for c in listed] == [("notes", 3)]


def test_query_whole_cites_the_source(server: Server) -> None:
    body = _post(
        server, "/v1/rag/query", {"collection": "notes", "query": "When does the night ferry to Sollen leave?"}
    )
    assert body.status_code == 200, body.text
    answer = body.json()
    assert answer["object"] == "rag.answer" and answer["refused"] is False
    assert answer["sources"][0]["source"] == "ferry" and answer["sources"][0]["number"] == 1
    assert answer["answer"] and answer["usage"]["completion_tokens"] > 0
    for c in answer["citations"]:  # whatever the small model cites maps back to a source
        assert answer["sources"][c["number"] - 1]["source"] == c["source"]


def test_query_streams_like_chat(server: Server) -> None:
    events = []
    body = {"collection": "notes", "query": "What must the Kestrel pump be primed with?", "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/rag/query", json=body, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert parsed[0]["object"] == "rag.sources" and parsed[0]["sources"][0]["source"] == "pump"
    chunks = [p for p in parsed if p["object"] == "chat.completion.chunk"]
    text = "".join(c["delta"].get("content") or "" for p in chunks for c in p["choices"])
    assert text.strip() and any(c["finish_reason"] for p in chunks for c in p["choices"])
    assert parsed[-1]["object"] == "rag.citations" and parsed[-1]["answer"] == text.strip()


def test_query_with_rerank_reorders_by_the_chat_model(server: Server) -> None:
    """rerank: the served chat model scores log P(query | chunk) on the server's own engine; the
    sources carry the fused scores (two rankings' reciprocal ranks, so each is at most 2 / 6)."""
    body = {"collection": "notes", "query": "When does the night ferry to Sollen leave?", "k": 2}
    plain = _post(server, "/v1/rag/query", body).json()
    reranked = _post(server, "/v1/rag/query", {**body, "rerank": True, "rerank_depth": 3})
    assert reranked.status_code == 200, reranked.text
    got = reranked.json()
    assert len(got["sources"]) == 2 and got["sources"][0]["source"] == "ferry" and got["answer"]
    assert all(0 < s["score"] <= 2 / 6 for s in got["sources"])
    assert [s["score"] for s in got["sources"]] != [s["score"] for s in plain["sources"]]
    bad = _post(server, "/v1/rag/query", {**body, "rerank": True, "rerank_depth": 1})
    assert bad.status_code == 400 and "rerank_depth" in bad.text


def test_unrelated_question_is_refused_without_generation(server: Server) -> None:
    answer = _post(server, "/v1/rag/query", {"collection": "notes", "query": "Who won the 1966 football World Cup?"})
    assert answer.json()["refused"] is True and answer.json()["answer"].startswith("I don't know")
    assert answer.json()["usage"]["completion_tokens"] == 0
    with httpx.stream(
        "POST",
        f"{server.url}/v1/rag/query",
        json={"collection": "notes", "query": "Who won the 1966 football World Cup?", "stream": True},
        timeout=60,
    ) as r:
        lines = [x for x in r.iter_lines() if x.startswith("data: ")]
    assert "I don't know" in "".join(lines) and lines[-1] == "data: [DONE]"


def test_recommendations(server: Server) -> None:
    assert _post(server, "/v1/collections/shop/documents", {"documents": ITEMS}).status_code == 200
    liked = _post(server, "/v1/recommendations", {"collection": "shop", "liked": ["laptop"], "k": 1}).json()
    assert [r["id"] for r in liked["data"]] == ["phone"]
    similar = _post(server, "/v1/recommendations", {"collection": "shop", "item": "pasta", "k": 3}).json()
    assert similar["data"][0]["id"] == "pizza" and similar["data"][0]["metadata"] == {"kind": "food"}
    varied = _post(server, "/v1/recommendations", {"collection": "shop", "item": "pasta", "k": 3, "diversity": 0.9})
    assert varied.status_code == 200 and len(varied.json()["data"]) == 3


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/rag/query", {"collection": "nope", "query": "x"}, 404, "collection 'nope' does not exist"),
        ("/v1/rag/query", {"collection": "notes", "query": "  "}, 400, "query: empty"),
        ("/v1/rag/query", {"collection": "notes", "query": "x", "mode": "psychic"}, 400, "mode"),
        ("/v1/collections/notes/documents", {"documents": [{"id": "blank", "text": " "}]}, 400, "'blank'"),
        ("/v1/collections/notes/documents", {"documents": []}, 400, "documents"),
        ("/v1/collections/bad name/documents", {"documents": DOCS[:1]}, 400, "invalid name"),
        ("/v1/recommendations", {"collection": "shop", "liked": ["sushi"]}, 404, "'sushi'"),
        ("/v1/recommendations", {"collection": "nope", "liked": ["a"]}, 404, "collection 'nope'"),
        ("/v1/recommendations", {"collection": "shop"}, 400, "liked"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_item(server: Server, path: str, body: dict, status: int, words: str) -> None:
    r = _post(server, path, body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_oversize_document_is_refused_and_openapi_lists_routes(server: Server) -> None:
    big = {"documents": [{"id": "huge", "text": "word " * 100_000}]}  # 500 kB, over the 0.25 MB body limit
    r = _post(server, "/v1/collections/notes/documents", big)
    assert r.status_code == 413
    assert httpx.get(f"{server.url}/v1/collections", timeout=30).json()["data"][0]["documents"] == 3
    paths = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]
    for route in ("/v1/rag/query", "/v1/collections/{name}/documents", "/v1/recommendations", "/v1/collections"):
        assert route in paths
