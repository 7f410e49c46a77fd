"""Files to text: plain text, Markdown, HTML and PDF (pypdf). Anything else is refused by name."""

from __future__ import annotations

import html
import logging
import re
from html.parser import HTMLParser
from pathlib import Path

from brainwork.rag.errors import DocumentTooLargeError, UnreadableDocumentError

DEFAULT_MAX_BYTES = 32 * 2**20  # a single document over this is refused, not chunked
SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".html", ".htm", ".xhtml", ".pdf"})


def check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DocumentTooLargeError(f"{name}: {size} bytes is over the {max_bytes}-byte limit for one document")


def read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    try:
        check_size(str(path), path.stat().st_size, max_bytes)
        return path.read_bytes()
    except OSError as e:
        raise UnreadableDocumentError(f"{path}: cannot be read: {e.strerror or e}") from None


def extract_text(name: str, data: bytes) -> str:
    """The text of a file's bytes, by content first (PDF magic, HTML tags), then by suffix."""
    suffix = Path(name).suffix.lower()
    head = data[:1024].lstrip().lower()
    if data.startswith(b"%PDF") or suffix == ".pdf":
        text = _pdf_text(name, data)
    else:
        decoded = decode_text(name, data)
        if suffix in (".html", ".htm", ".xhtml") or head.startswith((b"<!doctype html", b"<html")):
            text = html_text(decoded)
        elif suffix in (".md", ".markdown"):
            text = markdown_text(decoded)
        else:
            text = decoded
    text = text.strip()
    if not text:
        raise UnreadableDocumentError(f"{name}: no text in it")
    return text


def decode_text(name: str, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise UnreadableDocumentError(f"{name}: a binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UnreadableDocumentError(f"{name}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def _pdf_text(name: str, data: bytes) -> str:
    import io

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its repairs of damaged files are not the user's problem
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as e:  # pypdf raises many kinds on broken files; all mean "cannot parse"
        raise UnreadableDocumentError(f"{name}: the PDF could not be parsed: {type(e).__name__}: {e}") from None
    # pages are paragraphs of their own; pypdf ends lines with single newlines
    return "\n\n".join(p.strip() for p in pages if p.strip())


_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "blockquote",
        "pre",
        "hr",
        "dd",
        "dt",
    ]
)


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(source: str) -> str:
    parser = _TextParser()
    parser.feed(source)
    parser.close()
    text = html.unescape("".join(parser.parts))
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)


def markdown_text(source: str) -> str:
    """Markdown with its markup thinned: link targets, images, emphasis marks and fences dropped."""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", source)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"^```.*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"^#{1,6}\s*", "", text, flags=re.MULTILINE)
    return re.sub(r"(\*\*|__|`)", "", text)
