#!/usr/bin/env bash
# The main job: set up, then open the quickstart notebook in JupyterLab on the embedded
# local model (no API key, no network needed after setup).
#   bash scripts/demo.sh            # opens JupyterLab on http://127.0.0.1:8888
#   bash scripts/demo.sh --execute  # runs the quickstart headless and prints the answers
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--execute" ]; then
    exec .venv/bin/python scripts/run_notebook.py notebooks/01-quickstart.ipynb
fi
exec .venv/bin/jupyter lab --ServerApp.ip=127.0.0.1 notebooks/01-quickstart.ipynb
