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
"$PY" -c "import srflow_nb, torch; print(f'[setup] srflow_nb {srflow_nb.__version__} | torch {torch.__version__} | cuda available: {torch.cuda.is_available()}')"
