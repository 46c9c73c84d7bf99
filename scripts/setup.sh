#!/usr/bin/env bash
# Create .venv in the repo root and install tq-agents with everything the tests and benchmarks use.
# torch is pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${TQ_EXTRAS:-dev,bench}]"
echo "setup: .venv ready ($(.venv/bin/python -c 'import tq_agents; print("tq-agents", tq_agents.__version__)'))"
