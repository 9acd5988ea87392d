#!/usr/bin/env bash
# Training campaign for the bundled checkpoints `demo-4x-rrdb` (RRDB, L1) and `demo-4x` (SRFlow small_4x) on the
# demo dataset's train split (validation on the val split, final metrics on the held-out test split).
# Resumable: all training state lives in $RUNS (default runs/, outside git); re-running continues where it stopped.
#
#   bash tools/train_demo.sh            # stage 1 (RRDB) -> check it beats bicubic by >= 1 dB -> stage 2 (flow) -> export
#   bash tools/train_demo.sh rrdb|flow|export
#   SMOKE=1 bash tools/train_demo.sh    # a few iterations of everything into runs/smoke-*, export to runs/smoke-export
#   nohup bash tools/train_demo.sh > runs/demo.log 2>&1 &     # the real campaign, in the background
#
# Environment: RRDB_ITERS, FLOW_ITERS (override the presets' iterations), RUNS, EXPORT_DIR,
#   THREADS (torch threads per process, default 1: on a busy 2-core CPU two OpenMP threads were up to 20x slower),
#   NPROC (default 1; NPROC=2 runs `torchrun --standalone --nproc_per_node 2` DDP with THREADS each, same global batch).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
RUNS=${RUNS:-runs}
STEP=${1:-all}
COMMON=(--model small_4x --data data/demo/train --val data/demo/val --set "threads=${THREADS:-1}")
NPROC=${NPROC:-1}
if [ "$NPROC" -gt 1 ]; then TRAIN=(torchrun --standalone --nproc_per_node "$NPROC" -m srflow_nb.cli train); else TRAIN=(python -m srflow_nb.cli train); fi
if [ "${SMOKE:-0}" = 1 ]; then
  RRDB_OUT=$RUNS/smoke-rrdb; FLOW_OUT=$RUNS/smoke-flow; EXPORT_DIR=${EXPORT_DIR:-$RUNS/smoke-export}
  RRDB_ITERS=${RRDB_ITERS:-4}; FLOW_ITERS=${FLOW_ITERS:-4}
  COMMON+=("log_every=1" "val_every=2" "ckpt_every_steps=2" "batch_size=2")
  MIN_GAIN=-100
else
  RRDB_OUT=$RUNS/demo-4x-rrdb; FLOW_OUT=$RUNS/demo-4x; EXPORT_DIR=${EXPORT_DIR:-srflow_nb/pretrained}
  MIN_GAIN=0.5   # on the 3 textured val images; the issue's >= 1 dB target is on the held-out test split (model card)
  COMMON=(--lpips "${COMMON[@]}")
fi
RRDB_ARGS=(); [ -n "${RRDB_ITERS:-}" ] && RRDB_ARGS=(--iterations "$RRDB_ITERS")
FLOW_ARGS=(); [ -n "${FLOW_ITERS:-}" ] && FLOW_ARGS=(--iterations "$FLOW_ITERS")

if [ "$STEP" = all ] || [ "$STEP" = rrdb ]; then
  echo "[demo] stage 1: RRDB L1 pre-training -> $RRDB_OUT ($(date -u +%H:%M:%S))"
  "${TRAIN[@]}" --preset demo_rrdb "${RRDB_ARGS[@]}" --out "$RRDB_OUT" "${COMMON[@]}"
  python - "$RRDB_OUT" "$MIN_GAIN" <<'PY'
import json, sys
from pathlib import Path
rows = [json.loads(l) for l in Path(sys.argv[1], "val.jsonl").read_text().splitlines() if l.strip()]
best = max(rows, key=lambda r: r["rrdb_psnr"])
gain = best["rrdb_psnr"] - best["bicubic_psnr"]
print(f"[demo] RRDB best on val at step {best['step']}: {best['rrdb_psnr']:.2f} dB vs bicubic {best['bicubic_psnr']:.2f} dB (gain {gain:+.2f} dB)")
if gain < float(sys.argv[2]):
    sys.exit(f"[demo] the RRDB does not beat bicubic by {sys.argv[2]} dB yet: train longer (RRDB_ITERS=...) before stage 2")
PY
fi
if [ "$STEP" = all ] || [ "$STEP" = flow ]; then
  echo "[demo] stage 2: SRFlow NLL training -> $FLOW_OUT ($(date -u +%H:%M:%S))"
  "${TRAIN[@]}" --preset demo_flow "${FLOW_ARGS[@]}" --out "$FLOW_OUT" "${COMMON[@]}" "init_from=$RRDB_OUT/best.pt"
fi
if [ "$STEP" = all ] || [ "$STEP" = export ]; then
  echo "[demo] export best checkpoints -> $EXPORT_DIR ($(date -u +%H:%M:%S))"
  python tools/export_demo.py --rrdb "$RRDB_OUT/best.pt" --flow "$FLOW_OUT/best.pt" --out "$EXPORT_DIR" --runs "$RRDB_OUT,$FLOW_OUT"
fi
