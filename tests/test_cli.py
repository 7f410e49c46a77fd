"""The `brainwork` command line, run for real as a subprocess (as a user would run it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from brainwork.catalog import CATALOG

COMMANDS = ["run", "chat", "embed", "models", "pull"]


def cli(*args: str, stdin: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brainwork.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command: str | None) -> None:
    r = cli(*([command] if command else []), "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: brainwork {command or ''}".rstrip())
    assert r.stderr == ""


def test_no_command_prints_help_and_exits_2() -> None:
    r = cli()
    assert r.returncode == 2
    assert "usage: brainwork" in r.stderr and "run" in r.stderr


def test_models_json_lists_the_catalog() -> None:
    r = cli("models", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == set(CATALOG)
    for row in rows.values():
        if row["installed"]:
            assert row["architecture"] and row["parameters"] > 0, row
            assert row["size_bytes"] > 0 and row["path"]
        else:
            assert row["status"].startswith("not installed: pip install"), row
    smol = rows["smollm2-135m-instruct"]
    if smol["installed"]:
        assert smol["architecture"] == "llama" and 130e6 < smol["parameters"] < 140e6
        assert smol["quantization"] == "Q4_1"


def test_models_table() -> None:
    r = cli("models", timeout=60)
    assert r.returncode == 0, r.stderr
    header, *lines = r.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "TASK", "ARCH"]
    assert len(lines) == len(CATALOG)


def test_run_completes_text() -> None:
    r = cli("run", "--max-tokens", "8", "--temperature", "0", "The capital of France is")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "Traceback" not in r.stderr


def test_run_task_sentiment_json() -> None:
    r = cli("run", "--task", "sentiment-analysis", "--json", "I love learning AI!")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result[0]["label"] == "POSITIVE" and result[0]["score"] > 0.5


def test_embed_json_is_a_384_vector() -> None:
    r = cli("embed", "--json", "hello")
    assert r.returncode == 0, r.stderr
    vectors = json.loads(r.stdout)
    assert len(vectors) == 1 and len(vectors[0]) == 384
    assert all(isinstance(x, float) for x in vectors[0])


def test_embed_reads_stdin_lines() -> None:
    r = cli("embed", "-", stdin="a cat\n\na dog\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(len(json.loads(line)) == 384 for line in lines)


def test_chat_from_a_pipe() -> None:
    r = cli("chat", "--max-tokens", "16", "--temperature", "0", stdin="Hi\n/exit\nnever read\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()  # the reply
    assert ">>>" not in r.stdout  # no prompt when stdin is not a terminal


def test_unknown_model_is_a_clean_error() -> None:
    r = cli("run", "--model", "no-such-model", "hello")
    assert r.returncode == 1
    assert r.stderr.startswith("brainwork: error: ")
    assert all(name in r.stderr for name in CATALOG)
    assert "Traceback" not in r.stderr


def test_unknown_task_is_a_clean_error() -> None:
    r = cli("run", "--task", "no-such-task", "hello")
    assert r.returncode == 1
    assert "unknown task" in r.stderr and "sentiment-analysis" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_sampling_flag_is_a_clean_error() -> None:
    r = cli("run", "--max-tokens", "0", "hello")
    assert r.returncode == 1
    assert "max_tokens" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("quantization", ["auto", "none"])  # the file's blocks; float32 (oneDNN-blocked weights)
def test_bench_measures_brainwork_alone(quantization: str) -> None:
    """`brainwork bench` with no peers: one worker process, every figure of the table measured
    (positive), the generation rate beside the end-to-end aggregate at each stream count."""
    proc = cli(
        "bench", "-m", "smollm2-135m-instruct", "--peers", "--streams", "2", "--tokens", "6",
        "--prefill", "32", "--prompt", "16", "--repeat", "1", "--json", "--quantization", quantization,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = json.loads(proc.stdout)["brainwork"]
    for key in ("prefill_tok_s", "decode_tok_s", "agg2_tok_s", "gen2_tok_s", "ttft_s", "peak_bytes", "bandwidth"):
        assert ours[key] > 0, key
    # the bound's bandwidth: the best of a reading before and one after the (only) worker
    assert len(ours["bandwidth_readings"]) == 2 and ours["bandwidth"] == max(ours["bandwidth_readings"])
    # the decode phase alone runs faster than the whole run with its prompts
    assert ours["gen2_tok_s"] > ours["agg2_tok_s"] * 5 / 6
    if quantization == "none":  # every float32 matrix once: 134,479,872 of SmolLM2's weights (all but the norms)
        assert ours["weight_bytes"] == 4 * 134_479_872
