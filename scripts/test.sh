#!/usr/bin/env bash
# Set up everything and run the whole test suite. This is what CI runs (.ci/run).
#   bash scripts/test.sh                # everything, at the committed lock's exact versions
#   bash scripts/test.sh -k stop        # extra arguments go to pytest
#   bash scripts/test.sh --latest       # the same suite on today's newest releases (run before
#                                       #   every submission; when green, bash scripts/lock.sh)
#   bash scripts/test.sh --oldest       # on the lowest versions pyproject.toml allows
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
step() { echo; echo "==> $* (at $(( $(date +%s) - t0 )) s)"; }

mode=lock
case "${1:-}" in
    --latest | --oldest) mode=${1#--}; shift ;;
esac
if [ "$mode" = lock ]; then
    venv=.venv locks=requirements
else
    # A resolution of its own, in venvs of its own: the committed lock is not touched.
    venv=.venv-$mode locks=test-artifacts/locks-$mode
    step "resolving the $mode releases"
    bash scripts/lock.sh "--$mode" "$locks"
fi

# 1. System packages: Chromium for the real-browser tests (Debian's package; Playwright's own
#    browser download cannot work offline). Without it the browser tests skip with a reason.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        step "apt-get install chromium"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium missing and not root: the browser tests will skip"
    fi
fi

# 2. The main environment: nbstream + the embedded local model + test tools.
step "main environment ($venv, $locks/test.lock)"
VENV=$venv LOCK=$locks/test.lock bash scripts/setup.sh

# 3. A second environment with ipykernel 6.29: below 7.4 widget clicks need pumping while a
#    cell awaits, so the kernel tests run against both.
step "ipykernel 6.29 environment ($venv-ipykernel629, $locks/ipykernel629.lock)"
VENV=$venv-ipykernel629 LOCK=$locks/ipykernel629.lock bash scripts/setup.sh
export NBSTREAM_TEST_KERNEL_PYTHON_EXTRA="$PWD/$venv-ipykernel629/bin/python"

# 4. Binder: its requirements install into a fresh environment and the quickstart runs there.
if [ "$mode" = lock ]; then  # binder/requirements.txt holds the lock's versions
step "binder environment (.venv-binder)"
rm -rf .venv-binder
python3 -m venv .venv-binder
.venv-binder/bin/python -m pip install -q --upgrade pip
.venv-binder/bin/python -m pip install -q -r binder/requirements.txt nbclient
(PATH="$PWD/.venv-binder/bin:$PATH" bash binder/postBuild)
env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY \
    .venv-binder/bin/python scripts/run_notebook.py notebooks/01-quickstart.ipynb | tail -n 3
fi

# 4b. A release a user can install: sdist + wheel, twine check, and the *wheel* (not the
#     working tree) in a clean venv runs the quickstart on the local model; the widget's
#     bundles and styles must be inside it.
if [ "$mode" = lock ]; then
step "release: build, twine check, the wheel in a clean venv (.venv-wheel)"
mkdir -p test-artifacts
rm -rf dist .venv-wheel
$venv/bin/python -m build --sdist --wheel --outdir dist . > test-artifacts/build.log 2>&1 \
    || { tail -n 30 test-artifacts/build.log; exit 1; }
$venv/bin/twine check --strict dist/*
wheel=$(ls dist/nbstream-*.whl)
listing=$(unzip -l "$wheel")  # not piped into grep -q: with pipefail, an early exit fails unzip
for file in nbstream/static/view.js nbstream/static/view.css nbstream/static/progress.js \
            nbstream/static/progress.css nbstream/static/highlight.css nbstream/py.typed; do
    grep -q " $file\$" <<< "$listing" || { echo "missing from the wheel: $file"; exit 1; }
done
python3 -m venv .venv-wheel
.venv-wheel/bin/python -m pip install -q --upgrade pip
# the wheel's own dependencies, held at the lock's versions (binder/requirements.txt)
.venv-wheel/bin/python -m pip install -q "${wheel}[local]" nbclient ipykernel \
    -c binder/requirements.txt
(cd /tmp && "$OLDPWD/.venv-wheel/bin/python" -c \
    "import nbstream; assert 'site-packages' in nbstream.__file__, nbstream.__file__")
env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY \
    .venv-wheel/bin/python scripts/run_notebook.py notebooks/01-quickstart.ipynb | tail -n 2
fi

# 5. Lint and types.
if [ "$mode" != oldest ]; then  # the oldest linters say nothing about the product
step "ruff"
$venv/bin/ruff check src tests bench scripts
$venv/bin/ruff format --check src tests bench scripts
step "mypy --strict src/nbstream"
$venv/bin/mypy
fi

# 6. The suite: unit, providers (real SDKs over HTTP), kernel (7.4 + 6.29), terminal (pty),
#    local model and every notebook with nbval; then the real JupyterLab in Chromium, in its
#    own pytest process (Playwright's sync API keeps an event loop running in the main
#    thread for its whole session, which asyncio.run() in the other tests cannot share).
unset OPENAI_API_KEY ANTHROPIC_API_KEY NBSTREAM_MODEL  # the suite must not depend on them
run_pytest() {  # exit 5 ("no tests selected", e.g. with -k) is fine for one of the two runs
    $venv/bin/python -m pytest -p no:cacheprovider "$@" || { rc=$?; [ "$rc" = 5 ] || return "$rc"; }
}
step "pytest: unit, providers, kernels, terminal, local model"
run_pytest tests --ignore=tests/browser "$@"
step "pytest: every notebook with nbval, answers replayed from notebooks/.nbstream-cache"
# Deterministic outputs, nothing sent: a cell whose answer is not recorded fails instead of
# asking a model (record with: python scripts/build_notebooks.py).
mkdir -p test-artifacts
NBSTREAM_CACHE=replay NBSTREAM_HISTORY="$PWD/test-artifacts/notebooks-history.sqlite" \
    run_pytest notebooks --nbval "$@"
step "pytest: JupyterLab in headless Chromium"
run_pytest tests/browser "$@"

# 7. The benchmarks, quick mode: proves they run; they assert no timings.
step "benchmarks (quick)"
$venv/bin/python bench/bench_stream.py --quick --out test-artifacts/bench-quick.md
$venv/bin/python bench/bench_render.py --quick
$venv/bin/python bench/bench_batch.py --quick
$venv/bin/python bench/bench_providers.py --answers 3
$venv/bin/python bench/bench_tools.py --answers 3
$venv/bin/python bench/bench_media.py --repeat 3

step "done"
