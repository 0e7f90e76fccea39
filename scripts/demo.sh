#!/usr/bin/env bash
# The main job: set up, then open the quickstart notebook in JupyterLab on the embedded
# local model (no API key, no network needed after setup).
#   bash scripts/demo.sh            # JupyterLab on http://127.0.0.1:8888 (PORT=... to change)
#   bash scripts/demo.sh --execute  # runs the quickstart headless and prints the answers
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--execute" ]; then
    exec .venv/bin/python scripts/run_notebook.py notebooks/01-quickstart.ipynb
fi
PORT=${PORT:-8888}
TOKEN=${TOKEN:-$(.venv/bin/python -c "import secrets; print(secrets.token_hex(16))")}
extra=()
if [ "$(id -u)" = 0 ]; then
    extra+=(--allow-root)  # root is the usual user in a container
fi
echo
echo "==> open http://127.0.0.1:${PORT}/lab/tree/notebooks/01-quickstart.ipynb?token=${TOKEN}"
echo "    (Ctrl-C here stops JupyterLab)"
echo
exec .venv/bin/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port="$PORT" \
    --ServerApp.port_retries=0 --IdentityProvider.token="$TOKEN" "${extra[@]}" \
    --ServerApp.root_dir="$PWD"
