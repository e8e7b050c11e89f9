#!/usr/bin/env bash
# Create .venv and install advrl with its test extras. torch is pinned first to the CPU
# wheel (an unpinned torch would pull a multi-GB CUDA build); the project's own range
# (torch>=2.4) is then already satisfied and nothing else is fetched for it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
