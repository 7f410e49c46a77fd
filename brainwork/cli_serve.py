"""`brainwork serve`: the OpenAI-compatible server on uvicorn."""

from __future__ import annotations

import argparse
import logging
import os

from brainwork.catalog import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the OpenAI-compatible HTTP API",
        description="Serve a chat model and an embedding model over the OpenAI API (/v1/chat/completions, "
        "/v1/completions, /v1/embeddings, /v1/models), /classify, /v1/rerank and /v1/score, plus /health, "
        "/metrics, /tokenize and /detokenize. "
        "The port opens at once; /health answers 503 until the models are loaded.",
    )
    p.add_argument("-m", "--model", default=DEFAULT_CHAT_MODEL, help=f"chat model (default: {DEFAULT_CHAT_MODEL})")
    p.add_argument(
        "--embedding-model",
        default=DEFAULT_EMBEDDING_MODEL,
        help=f"embedding model, or 'none' (default: {DEFAULT_EMBEDDING_MODEL})",
    )
    p.add_argument(
        "--classifier-model",
        metavar="NAME",
        help="model behind /classify: a fine-tuned classifier, an NLI model, a chat model (sentiment by label "
        "likelihoods) or an embedding model, or 'none' (default: the embedding model)",
    )
    p.add_argument(
        "--rerank-model",
        metavar="NAME",
        help="model behind /v1/rerank and /v1/score: a cross-encoder or an embedding model, or 'none' "
        "(default: the embedding model)",
    )
    p.add_argument(
        "--encoder-dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="what the embedding, classifier and rerank encoders compute in: auto = bfloat16 where the CPU "
        "multiplies it natively (about 2x faster, scores within ~1e-3), else float32 (default: auto)",
    )
    p.add_argument(
        "--store",
        metavar="PATH",
        help="the RAG/recommendation store behind /v1/rag/query, /v1/collections and /v1/recommendations: "
        "a SQLite file or a postgresql:// URL (default: $BRAINWORK_STORE or ~/.local/share/brainwork/store.sqlite)",
    )
    p.add_argument("--served-model-name", metavar="NAME", help="the chat model's name in the API (default: --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on the API routes; repeat for several keys "
        "(also read from BRAINWORK_API_KEY)",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument(
        "--max-concurrent", type=int, default=64, metavar="N", help="requests doing model work at once (default: 64)"
    )
    limits.add_argument(
        "--max-queue",
        type=int,
        default=256,
        metavar="N",
        help="requests waiting for a turn; beyond it the answer is 429 with Retry-After (default: 256)",
    )
    limits.add_argument(
        "--max-body-mb",
        type=float,
        default=8.0,
        metavar="MB",
        help="largest request body; bigger ones get 413 (default: 8)",
    )
    engine = p.add_argument_group("engine")
    engine.add_argument(
        "--max-model-len", type=int, metavar="N", help="context window (default: the model's, at most 8192)"
    )
    engine.add_argument(
        "--max-num-seqs", type=int, default=128, metavar="N", help="sequences in one batch (default: 128)"
    )
    engine.add_argument(
        "--kv-cache-gib", type=float, default=2.0, metavar="GIB", help="memory for the KV cache (default: 2)"
    )
    p.add_argument("--no-access-log", action="store_true", help="do not log each HTTP request")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from brainwork.server import ServerConfig, ServerState, build_app

    logging.getLogger("brainwork").setLevel(logging.INFO)  # a server says what it is doing
    if args.store:
        os.environ["BRAINWORK_STORE"] = args.store  # read by the store when the RAG routes first open it
    keys = list(args.api_key)
    if os.environ.get("BRAINWORK_API_KEY"):
        keys.append(os.environ["BRAINWORK_API_KEY"])
    for name in ("max_concurrent", "max_num_seqs", "port"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_queue < 0:
        raise ValueError("--max-queue must be >= 0")
    engine_args: dict = {"max_num_seqs": args.max_num_seqs, "kv_cache_gib": args.kv_cache_gib}
    if args.max_model_len is not None:
        engine_args["max_model_len"] = args.max_model_len
    config = ServerConfig(
        model=args.model,
        embedding_model=args.embedding_model,
        classifier_model=args.classifier_model,
        rerank_model=args.rerank_model,
        encoder_dtype=args.encoder_dtype,
        served_model_name=args.served_model_name,
        api_keys=keys,
        max_concurrent=args.max_concurrent,
        max_queue=args.max_queue,
        max_body_bytes=int(args.max_body_mb * 2**20),
        engine_args=engine_args,
    )
    state = ServerState(config)
    failed: list[str] = []

    def on_failure(message: str) -> None:
        failed.append(message)
        server.should_exit = True

    app = build_app(state, on_failure)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="info", access_log=not args.no_access_log)
    )
    logging.getLogger("brainwork.server").info(
        "serving %s%s on http://%s:%d (keys: %d)",
        state.chat_name,
        f" and {state.embed_name}" if state.embed_name else "",
        args.host,
        args.port,
        len(keys),
    )
    server.run()
    if failed:
        print(f"brainwork: error: {failed[0]}")
        return 1
    return 0
