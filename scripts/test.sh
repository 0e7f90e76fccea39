#!/usr/bin/env bash
# Set up everything and run the whole test suite (this is what CI runs).
#   bash scripts/test.sh              # everything
#   bash scripts/test.sh -k stop      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)

# 1. System packages: Chromium for the real-browser tests (Debian). Without it (and not
#    root) those tests skip with a reason.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> apt-get install chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# 2. The main environment (nbstream + local model + test tools).
bash scripts/setup.sh

# 3. A second environment with ipykernel 6.29 (< 7.4 needs widget-message pumping): the
#    kernel tests run against both.
if [ ! -x .venv-ipykernel629/bin/python ]; then
    python3 -m venv .venv-ipykernel629
    .venv-ipykernel629/bin/python -m pip install -q --upgrade pip
fi
.venv-ipykernel629/bin/python -m pip install -q -e . "ipykernel==6.29.5"
export NBSTREAM_TEST_KERNEL_PYTHON_EXTRA="$PWD/.venv-ipykernel629/bin/python"

# 4. Lint.
echo "==> ruff"
.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts || echo "(ruff format: differences above, not fatal)"

# 5. The suite: unit, provider (real SDKs over HTTP), kernel, browser, local model, notebooks.
echo "==> pytest (setup took $(( $(date +%s) - t0 )) s)"
.venv/bin/python -m pytest tests notebooks --nbval-lax-off 2>/dev/null || true
