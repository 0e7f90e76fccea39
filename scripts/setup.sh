#!/usr/bin/env bash
# Create .venv with nbstream (+ the embedded local model) and the test tools.
# Idempotent: a second run only checks. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-local,test}

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# llama-cpp-python has no binary wheel on PyPI: it compiles (~3 min on 2 cores). pip keeps the
# built wheel in its cache (~/.cache/pip), so later setups on the same machine take seconds.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}
export CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF"}
echo "==> installing nbstream[$EXTRAS] into $VENV (first time: compiles llama.cpp, ~3 min)"
start=$(date +%s)
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
echo "==> installed in $(( $(date +%s) - start )) s"
