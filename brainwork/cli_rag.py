"""`brainwork rag add|ask|search|ls` and `brainwork rec add|similar|recommend|ls`.

Parsers are built from argparse alone; the store, models and torch load only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from brainwork.rag.stores import STORE_HELP

_STORE_HELP = STORE_HELP


def _common(p: argparse.ArgumentParser, collection: str) -> None:
    p.add_argument("--store", metavar="PATH", help=_STORE_HELP)
    p.add_argument("-c", "--collection", default=collection, help=f"collection name (default: {collection})")


def add_parsers(sub: Any) -> None:
    rag = sub.add_parser(
        "rag",
        help="answer questions from your files, with citations",
        description="Add files to a collection in a local store, search it, and ask questions answered from it "
        "with numbered citations.",
    )
    rs = rag.add_subparsers(dest="rag_command", metavar="ACTION", required=True)
    add = rs.add_parser(
        "add",
        help="add files and folders (text, Markdown, HTML, PDF)",
        description="Read, chunk, embed and store each file; folders are walked. Unchanged files are skipped, "
        "changed ones replaced. Unreadable files are reported and skipped; the exit status is then 1.",
    )
    add.add_argument("paths", nargs="+", metavar="PATH")
    _common(add, "default")
    add.add_argument("--embedding-model", metavar="MODEL", help="embedding model (default: all-minilm-l6-v2)")
    add.add_argument("--chunk-tokens", type=int, default=200, metavar="N", help="tokens per chunk (default: 200)")
    add.add_argument("--overlap", type=int, default=40, metavar="N", help="tokens repeated between chunks (40)")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.add_argument("--no-progress", action="store_true", help="no progress bar")

    ask = rs.add_parser("ask", help="answer a question from the collection, citing sources")
    ask.add_argument("question", nargs="+", metavar="QUESTION")
    _common(ask, "default")
    ask.add_argument("-m", "--model", help="chat model (default: smollm2-135m-instruct)")
    ask.add_argument("--k", type=int, default=4, help="chunks given to the model (default: 4)")
    ask.add_argument("--max-tokens", type=int, default=160, metavar="N", help="longest answer (default: 160)")
    ask.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="COS",
        help='below this best cosine the answer is "I don\'t know" (default: 0.3)',
    )
    ask.add_argument("--json", action="store_true", help="print answer, sources and citations as JSON")

    search = rs.add_parser("search", help="the chunks that best match a query")
    search.add_argument("query", nargs="+", metavar="QUERY")
    _common(search, "default")
    search.add_argument("--k", type=int, default=5, help="how many chunks (default: 5)")
    search.add_argument("--mode", default="hybrid", choices=("hybrid", "dense", "lexical"))
    search.add_argument("--json", action="store_true", help="print the ranked chunks as JSON")
    for p in (ask, search):
        p.add_argument(
            "--rerank",
            action="store_true",
            help="reorder the top hits by how likely the chat model finds the query after each chunk (slower)",
        )
        p.add_argument("--rerank-depth", type=int, default=10, metavar="N", help="hits to reorder (default: 10)")
    search.add_argument("-m", "--model", help="chat model for --rerank (default: smollm2-135m-instruct)")
    ask.add_argument(
        "--rerank-model",
        metavar="MODEL",
        help="let this model rerank instead of the chat model (implies --rerank; e.g. smollm2-135m-instruct, "
        "fast beside a large -m)",
    )

    ls = rs.add_parser("ls", help="list collections, or one collection's documents")
    ls.add_argument("--store", metavar="PATH", help=_STORE_HELP)
    ls.add_argument("-c", "--collection", help="list this collection's documents")
    ls.add_argument("--json", action="store_true")

    rec = sub.add_parser(
        "rec",
        help="recommend items from a catalog",
        description="Keep a catalog of items (JSON lines with id, text, metadata) and recommend from it.",
    )
    cs = rec.add_subparsers(dest="rec_command", metavar="ACTION", required=True)
    radd = cs.add_parser("add", help="add items from JSON-lines files ('-' for stdin)")
    radd.add_argument("files", nargs="+", metavar="FILE")
    _common(radd, "items")
    radd.add_argument("--json", action="store_true")
    sim = cs.add_parser("similar", help="items like one item")
    sim.add_argument("item", metavar="ID")
    _common(sim, "items")
    sim.add_argument("--k", type=int, default=10)
    sim.add_argument("--diversity", type=float, default=0.0, help="MMR diversity in [0, 1] (default: 0)")
    sim.add_argument("--json", action="store_true")
    recommend = cs.add_parser("recommend", help="items for a user who liked (and disliked) some")
    recommend.add_argument("--liked", nargs="*", default=[], metavar="ID")
    recommend.add_argument("--disliked", nargs="*", default=[], metavar="ID")
    recommend.add_argument("--seen", nargs="*", default=[], metavar="ID", help="leave these out too")
    _common(recommend, "items")
    recommend.add_argument("--k", type=int, default=10)
    recommend.add_argument("--diversity", type=float, default=0.0, help="MMR diversity in [0, 1] (default: 0)")
    recommend.add_argument("--json", action="store_true")
    rls = cs.add_parser("ls", help="list the catalog's items")
    _common(rls, "items")
    rls.add_argument("--json", action="store_true")


def _store(args: argparse.Namespace) -> Any:
    from brainwork.rag.stores import open_store

    return open_store(args.store)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def cmd_rag(args: argparse.Namespace) -> int:
    return {"add": _rag_add, "ask": _rag_ask, "search": _rag_search, "ls": _rag_ls}[args.rag_command](args)


def _rag_pipeline(args: argparse.Namespace, **kw: Any) -> Any:
    from brainwork.pipelines.rag import RagPipeline

    return RagPipeline(store=_store(args), collection=args.collection, **kw)


def _rag_add(args: argparse.Namespace) -> int:
    rag = _rag_pipeline(
        args, embedding_model=args.embedding_model, chunk_tokens=args.chunk_tokens, chunk_overlap=args.overlap
    )
    report = rag.add(args.paths, progress=not args.no_progress and sys.stderr.isatty())
    if args.json:
        _print_json(report.as_dict())
    else:
        print(
            f"{len(report.added)} added, {len(report.replaced)} replaced, {len(report.unchanged)} unchanged, "
            f"{len(report.skipped)} skipped; {report.chunks} chunks written to {args.collection!r}"
        )
    for _, why in report.skipped:
        print(f"brainwork: skipped {why}", file=sys.stderr)
    return 1 if report.skipped else 0


def _rag_search(args: argparse.Namespace) -> int:
    from brainwork.rag.search import Searcher

    rag = _rag_pipeline(args, model=args.model, rerank=args.rerank, rerank_depth=args.rerank_depth)
    searcher = Searcher(rag.store, rag.embedder, args.collection, args.mode, reranker=rag.reranker)
    hits = searcher.search(" ".join(args.query), args.k)
    if args.json:
        _print_json([h.as_dict() for h in hits])
    else:
        for rank, h in enumerate(hits, 1):
            preview = " ".join(h.text.split())[:100]
            also = f"  (also in {', '.join(h.also)})" if h.also else ""
            print(f"{rank}. {h.score:.4f}  {h.source} #{h.chunk}{also}\n   {preview}")
    return 0


def _rag_ask(args: argparse.Namespace) -> int:
    from brainwork.rag.answer import DEFAULT_MIN_COSINE

    kw: dict[str, Any] = {
        "k": args.k,
        "min_cosine": DEFAULT_MIN_COSINE if args.min_score is None else args.min_score,
        "rerank": args.rerank_model or args.rerank,
        "rerank_depth": args.rerank_depth,
    }
    if args.model:
        kw["model"] = args.model
    rag = _rag_pipeline(args, **kw)
    question = " ".join(args.question)
    stream = rag.stream(question, max_tokens=args.max_tokens)
    parts = []
    for delta in stream:
        parts.append(delta)
        if not args.json:
            print(delta, end="", flush=True)
    answer = stream.answer("".join(parts))
    if args.json:
        _print_json(answer.as_dict())
        return 0
    print()
    if answer.sources:
        print("\nSources:")
        cited = {s.number for s in answer.cited}
        for s in answer.sources:
            mark = "*" if s.number in cited else " "
            print(f"{mark}[{s.number}] {s.source} #{s.chunk}")
    return 0


def _rag_ls(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.collection:
        docs = store.documents(args.collection)
        if args.json:
            _print_json([{"source": d.source, "chunks": d.chunks, "metadata": d.metadata} for d in docs])
        else:
            for d in docs:
                print(f"{d.chunks:5d}  {d.source}")
        return 0
    infos = store.collections()
    if args.json:
        _print_json([vars(c) for c in infos])
    else:
        if not infos:
            print(f"no collections in {store.path}")
        for c in infos:
            print(f"{c.name}: {c.documents} documents, {c.chunks} chunks ({c.model}, {c.dim} dims)")
    return 0


def cmd_rec(args: argparse.Namespace) -> int:
    if args.rec_command == "ls":
        return _rag_ls(args)
    from brainwork.pipelines.recommendation import RecommendationPipeline

    rec = RecommendationPipeline(store=_store(args), collection=args.collection)
    if args.rec_command == "add":
        items = list(_read_items(args.files))
        report = rec.add(items)
        if args.json:
            _print_json(report.as_dict())
        else:
            print(
                f"{len(report.added)} added, {len(report.replaced)} replaced, {len(report.unchanged)} unchanged, "
                f"{len(report.skipped)} skipped"
            )
        for _, why in report.skipped:
            print(f"brainwork: skipped {why}", file=sys.stderr)
        return 1 if report.skipped else 0
    if args.rec_command == "similar":
        results = rec.similar(args.item, args.k, args.diversity)
    else:
        results = rec.recommend(args.liked, args.disliked, args.k, args.diversity, args.seen)
    if args.json:
        _print_json([r.as_dict() for r in results])
    else:
        for r in results:
            print(f"{r.score:.4f}  {r.id}")
    return 0


def _read_items(files: list[str]) -> Any:
    for name in files:
        try:
            handle = sys.stdin if name == "-" else open(name, encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise ValueError(f"{name}: cannot be read: {e.strerror or e}") from None
        with handle:
            for n, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{name}:{n}: not a JSON object: {e}") from None
