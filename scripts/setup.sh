#!/usr/bin/env bash
# Create .venv with nbstream (+ the embedded local model) and the test tools, at the exact
# versions of the committed lock (requirements/test.lock, written by scripts/lock.sh).
# Idempotent: a second run only checks. Used by scripts/demo.sh and scripts/test.sh.
#   LOCK=path/to/other.lock VENV=.venv-other bash scripts/setup.sh   # another resolution
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
LOCK=${LOCK:-requirements/test.lock}

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# llama-cpp-python has no binary wheel on PyPI: it compiles (~3 min on 2 cores). pip keeps the
# built wheel in its cache (~/.cache/pip), so later setups on the same machine take seconds.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}
export CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF"}
echo "==> installing $LOCK + nbstream into $VENV (first time: compiles llama.cpp, ~3 min)"
start=$(date +%s)
hashes=()
grep -q -- '--hash=' "$LOCK" && hashes=(--require-hashes)
"$VENV/bin/python" -m pip install -q "${hashes[@]}" -r "$LOCK"
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "==> installed in $(( $(date +%s) - start )) s"
