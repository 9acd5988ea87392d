#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh machine: torch from the local disk, the package with its dev extras,
# and the offline metric assets. Safe to run again: installed pieces are skipped quickly.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup] installing torch 2.14.1 + torchvision 0.29.1 (served from this machine's disk)"
  "$PY" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
fi
echo "[setup] installing srflow_nb (editable) with dev extras"
"$PY" -m pip install --quiet -e ".[dev]"
if [ -f tools/setup_assets.sh ]; then bash tools/setup_assets.sh; fi

# The real-browser test (tests/test_browser.py): Debian's chromium (apt) driven by the playwright Python package.
# Playwright's own browser download (`playwright install`) is never used: the test launches /usr/bin/chromium.
if [ ! -x /usr/bin/chromium ]; then
  echo "[setup] installing chromium (apt) for the browser test"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium \
    || echo "[setup] WARNING: chromium could not be installed; tests/test_browser.py will fail under CI"
fi
"$PY" -c "import playwright.sync_api" >/dev/null 2>&1 || "$PY" -m pip install --quiet playwright
"$PY" -c "import srflow_nb, torch; print(f'[setup] srflow_nb {srflow_nb.__version__} | torch {torch.__version__} | cuda available: {torch.cuda.is_available()}')"
