"""Query-likelihood reranking (`rag/rerank.py`).

Its score is the model's log P(query | passage): checked at 1e-4 against one forward pass over
the whole sequence on a tiny model. On SmolLM2 it picks the passage that answers each question.
The searcher, the pipeline and `brainwork rag search --rerank` use it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from brainwork.cli import main
from brainwork.llm import LLM
from brainwork.rag.ingest import Embedder, Ingestor, Item
from brainwork.rag.rerank import QueryLikelihoodReranker
from brainwork.rag.search import Hit, Searcher
from brainwork.rag.store import SQLiteStore
from tests.test_decoder_parity import _logits_ours
from tests.tiny_models import make_checkpoint

PASSAGES = {
    "eiffel": "The Eiffel Tower in Paris was finished in 1889 for the World's Fair. It is 330 metres tall and "
    "was the tallest structure in the world for forty years.",
    "wall": "The Great Wall of China runs for thousands of kilometres across the north of China. Most of what "
    "stands today was built during the Ming dynasty.",
    "everest": "Mount Everest, on the border between Nepal and China, is the highest mountain on Earth above "
    "sea level, at 8,849 metres.",
}
QUESTIONS = {
    "eiffel": "When was the Eiffel Tower finished?",
    "wall": "Which dynasty built most of the Great Wall?",
    "everest": "What is the highest mountain on Earth?",
}


def test_scores_are_the_models_likelihood_of_the_query(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, "llama")
    llm = LLM(str(tmp_path), progress=False, max_model_len=128, kv_cache_gib=0.01)
    reranker = QueryLikelihoodReranker(llm, template="w1 {passage} w2 w3", max_passage_tokens=6)
    passages = ["w5 w6 w7 w8", "w9 w10 w11", "w5 w6 w7 w8 w12 w13 w14 w15 w16"]
    query = "w20 w21 w22"
    got = reranker.scores(query, passages)
    encode = llm.tokenizer.encode
    q = encode(" " + query, add_special_tokens=False)
    for passage, score in zip(passages, got, strict=True):
        kept = " ".join(passage.split()[:6])  # max_passage_tokens cuts the passage, not the query
        ids = encode(f"w1 {kept} w2 w3", add_special_tokens=False) + q
        ref = torch.log_softmax(_logits_ours(llm, ids, [len(ids)]), -1)  # (L, V)
        start = len(ids) - len(q)
        want = sum(ref[start + i - 1, t].item() for i, t in enumerate(q))
        assert abs(score - want) < 1e-4
    assert reranker.pair_scores([]) == []


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path) -> LLM:
    return LLM(str(smollm2_gguf), max_model_len=1024, progress=False)


def test_smollm2_finds_the_passage_that_answers(smollm2: LLM) -> None:
    reranker = QueryLikelihoodReranker(smollm2, weight=3.0)
    names = list(PASSAGES)
    for right, question in QUESTIONS.items():
        scores = reranker.scores(question, [PASSAGES[n] for n in names])
        assert names[max(range(3), key=lambda i: scores[i])] == right, (question, scores)
        # the retriever placed the right passage last; the model's order, weighted 3, moves it first
        wrong_first = [Hit(n, 0, PASSAGES[n], 1.0, None, None) for n in names if n != right]
        hits = [*wrong_first, Hit(right, 0, PASSAGES[right], 0.5, None, None)]
        reordered = reranker.rerank(question, hits)
        assert reordered[0].source == right and all(h.likelihood is not None for h in reordered)
        assert sorted(h.source for h in reordered) == sorted(names)


def test_fusion_follows_a_confident_model_and_keeps_the_retriever_order_on_a_near_tie() -> None:
    reranker = QueryLikelihoodReranker(object(), weight=0.075)
    hits = [Hit(f"d{i}", 0, f"text {i}", 1.0, None, None) for i in range(8)]
    sure = [-30.0] * 8
    sure[4] = -10.0  # the model is sure of the 5th hit (by 20 nats): it moves first
    fused = reranker.fuse(hits, sure)
    assert [h.source for h in fused] == ["d4", "d0", "d1", "d2", "d3", "d5", "d6", "d7"]
    # score: reciprocal rank + weight x posterior (softmax of the log-likelihoods, ~1 for d4)
    assert fused[0].score == pytest.approx(1 / 10 + 0.075, abs=1e-8) and fused[0].likelihood == -10.0
    assert fused[1].score == pytest.approx(1 / 6 + 0.075 * math.exp(-20) / (1 + 7 * math.exp(-20)), rel=1e-9)
    # a near tie (the model prefers later hits by 0.05 nats each): the retriever's order stands
    tie = [-20.0 + 0.05 * i for i in range(8)]
    assert [h.source for h in reranker.fuse(hits, tie)] == [h.source for h in hits]
    assert reranker.fuse([], []) == []


def test_the_searcher_reranks_its_top_depth_and_returns_k(smollm2: LLM, minilm_dir: Path, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite")
    embedder = Embedder(str(minilm_dir))
    Ingestor(store, embedder, "facts").add_texts([Item(n, t, {}) for n, t in PASSAGES.items()])
    reranker = QueryLikelihoodReranker(smollm2, depth=3)
    plain = Searcher(store, embedder, "facts")
    reranked = Searcher(store, embedder, "facts", reranker=reranker)
    question = QUESTIONS["wall"]
    got = reranked.search(question, k=2)
    assert len(got) == 2 and all(h.likelihood is not None for h in got)
    want = reranker.rerank(question, plain.search(question, k=3))[:2]  # depth 3 fetched, then cut to k
    assert [(h.source, h.likelihood) for h in got] == [(h.source, h.likelihood) for h in want]
    assert got[0].source == "wall"
    assert plain.search(question, k=2)[0].likelihood is None

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = ["rag", "search", question, "--store", str(tmp_path / "s.sqlite"), "-c", "facts", "--rerank"]
        rc = main([*args, "--rerank-depth", "3", "--k", "2", "--json"])
    rows = json.loads(out.getvalue())
    assert rc == 0 and [r["source"] for r in rows] == [h.source for h in got]
    assert all(isinstance(r["likelihood"], float) for r in rows)


def test_the_pipeline_reranks_with_its_own_model(
    smollm2: LLM, smollm2_gguf: Path, minilm_dir: Path, tmp_path: Path
) -> None:
    """rerank=MODEL: that model scores the hits and the chat model is never loaded (its name here
    names no model, so loading it would raise)."""
    from brainwork.pipelines.rag import RagPipeline

    store = SQLiteStore(tmp_path / "s.sqlite")
    embedder = Embedder(str(minilm_dir))
    kw = {"store": store, "collection": "facts", "embedder": embedder, "rerank_depth": 3}
    rag = RagPipeline("no-such-chat-model", rerank=str(smollm2_gguf), **kw)
    rag.add_texts([Item(n, t, {}) for n, t in PASSAGES.items()])
    question = QUESTIONS["wall"]
    got = rag.search(question, k=2)
    plain = Searcher(store, embedder, "facts").search(question, 3)
    want = QueryLikelihoodReranker(smollm2, depth=3).rerank(question, plain)
    assert [h.source for h in got] == [h.source for h in want[:2]] and got[0].source == "wall"
    assert [h.likelihood for h in got] == pytest.approx([h.likelihood for h in want[:2]], abs=1e-4)
    assert rag._llm is None
    with pytest.raises(ValueError, match="rerank: expected True, False or a model name"):
        RagPipeline(rerank=3, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"depth": 1}, "depth must be an integer >= 2"),
        ({"weight": -1.0}, "weight must be >= 0"),
        ({"template": "no passage here"}, "template must contain"),
    ],
)
def test_bad_settings_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QueryLikelihoodReranker(object(), **kw)
