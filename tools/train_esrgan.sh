#!/usr/bin/env bash
# ESRGAN fine-tune of the bundled L1 RRDB `demo-4x-rrdb` on the demo train split (`srflow train --family esrgan`):
# relativistic average GAN + perceptual (AlexNet conv5, the offline substitute for VGG19) + L1, the ESRGAN weights
# and schedule; validation (PSNR, LPIPS, LR-PSNR) on the val split. Resumable: all state lives in $OUT (outside git);
# re-running the same command continues from the newest checkpoint (same ESRGAN_ITERS, or the config check refuses).
#
#   bash tools/train_esrgan.sh                                   # the CPU campaign into runs/esrgan
#   OUT=/work/runs/esrgan nohup bash tools/train_esrgan.sh > /work/runs/esrgan.log 2>&1 &    # in the background
#   SMOKE=1 bash tools/train_esrgan.sh                           # 4 steps into runs/smoke-esrgan
#   bash tools/train_esrgan.sh export                            # newest checkpoint -> $EXPORT (demo_4x_esrgan.safetensors)
#
# Environment: ESRGAN_ITERS (default 2500), OUT, THREADS (default 1), EXPORT, UNTIL (stop at this step, resume later).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${THREADS:-1}
STEP=${1:-train}
ARGS=(--family esrgan --preset esrgan_demo --val data/demo/val --model demo-4x-rrdb --lpips --no-progress)
if [ "${SMOKE:-0}" = 1 ]; then
  OUT=${OUT:-runs/smoke-esrgan}; ARGS+=(--iterations 4 --set "threads=${THREADS:-1}" batch_size=2 patch_size=64 val_every=2 ckpt_every_steps=2)
else
  OUT=${OUT:-runs/esrgan}; ARGS+=(--iterations "${ESRGAN_ITERS:-2500}" --set "threads=${THREADS:-1}" val_every=250 ckpt_every_steps=100)
fi
[ -n "${UNTIL:-}" ] && ARGS+=(--until "$UNTIL")
if [ "$STEP" = train ]; then
  echo "[esrgan] training -> $OUT ($(date -u +%H:%M:%S))"
  python -m srflow_nb.cli train --data data/demo/train --out "$OUT" "${ARGS[@]}"     # the one training entry
elif [ "$STEP" = export ]; then
  EXPORT=${EXPORT:-$OUT/demo_4x_esrgan.safetensors}
  CK=$(python -c 'import sys; from srflow_nb.checkpoints import list_checkpoints; print(list_checkpoints(sys.argv[1] + "/checkpoints")[-1])' "$OUT")
  python -m srflow_nb.cli export "$CK" --out "$EXPORT" --overwrite     # the one exporter: the generator as an RRDB file
else
  echo "usage: bash tools/train_esrgan.sh [train|export]" >&2; exit 2
fi
