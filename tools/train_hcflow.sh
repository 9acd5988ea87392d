#!/usr/bin/env bash
# HCFlow CPU campaigns on the demo train split with the shared trainer (`srflow train --family hcflow`, srflow_nb.hcflow_train):
#   demo-4x-hcflow            SR, NLL (the official HCFlow recipe on HCFlowConfig.sr_small_4x)
#   demo-4x-hcflow-plus       HCFlow+ fine-tune of an SR run (NLL x 2e-3, then L1): INIT=runs/demo-4x-hcflow/best.pt
#   demo-4x-hcflow-rescaling  rescaling (LR MSE + z^2 + HR L1 from the 8-bit LR; HCFlowConfig.rescaling_small_4x)
# Validation (PSNR, LR-PSNR) on the val split. Resumable: all state lives in $OUT (outside git); re-running the same
# command continues from the newest checkpoint.
#
#   bash tools/train_hcflow.sh                                     # SR campaign into runs/demo-4x-hcflow
#   PRESET=demo-4x-hcflow-rescaling bash tools/train_hcflow.sh     # rescaling campaign into runs/demo-4x-hcflow-rescaling
#   OUT=/work/runs/hcflow nohup bash tools/train_hcflow.sh > /work/runs/hcflow.log 2>&1 &    # in the background
#   SMOKE=1 bash tools/train_hcflow.sh                             # 4 steps of the tiny model into runs/smoke-<preset>
#   bash tools/train_hcflow.sh export                              # bundle the run: best.pt (or CKPT) -> $BUNDLE/demo_4x_hcflow*.safetensors,
#                                                                  #   its config/model_config/metrics/val files -> $BUNDLE/$PRESET.*, MODEL_CARD.md
#   EXPORT=m.safetensors bash tools/train_hcflow.sh export         # only the model file (newest checkpoint, or CKPT)
#   bash tools/train_hcflow.sh speed                               # CPU s/step over 20 steps of the demo presets ->
#                                                                  #   data/results/hcflow/train_speed.json (short; not a campaign)
# Environment: PRESET (default demo-4x-hcflow), ITERS (override the preset), OUT, THREADS (default 1), EXPORT,
# UNTIL (stop at this step, resume later), INIT (fresh runs: start from this trainer checkpoint, e.g. HCFlow+),
# BUNDLE (export: the bundle folder, default srflow_nb/pretrained), CKPT (export: this checkpoint instead of best.pt).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${THREADS:-1}
STEP=${1:-train}
PRESET=${PRESET:-demo-4x-hcflow}
ARGS=(--family hcflow --preset "$PRESET" --val data/demo/val --no-progress)
if [ "${SMOKE:-0}" = 1 ]; then
  OUT=${OUT:-runs/smoke-$PRESET}
  case "$PRESET" in *rescaling*) MODEL=rescaling_tiny_4x ;; *) MODEL=sr_tiny_4x ;; esac
  ARGS+=(--model "$MODEL" --iterations 4 --crop 64 --set "threads=${THREADS:-1}" batch_size=2 val_every=2 ckpt_every_steps=2)
else
  OUT=${OUT:-runs/$PRESET}
  ARGS+=(--set "threads=${THREADS:-1}")
  [ -n "${ITERS:-}" ] && ARGS+=(--iterations "$ITERS")
fi
[ -n "${UNTIL:-}" ] && ARGS+=(--until "$UNTIL")
[ -n "${INIT:-}" ] && ARGS+=(--init "$INIT")
if [ "$STEP" = train ]; then
  echo "[hcflow] $PRESET -> $OUT ($(date -u +%H:%M:%S))"
  python -m srflow_nb.cli train --data data/demo/train --out "$OUT" "${ARGS[@]}"     # the one training entry
elif [ "$STEP" = export ]; then
  if [ -n "${EXPORT:-}" ]; then   # the model file alone, where EXPORT says
    python - "$OUT" "$EXPORT" "${CKPT:-}" <<'PY'
import sys
from srflow_nb.checkpoints import export_model, list_checkpoints
ck = sys.argv[3] or list_checkpoints(f"{sys.argv[1]}/checkpoints")[-1]
print("[hcflow] exported", ck, "->", export_model(ck, sys.argv[2]))
PY
  else                            # the bundle: model + the run's config/model_config/metrics/val as $PRESET.*, and the card
    python tools/export_demo.py --hcflow "$OUT" --hcflow_name "$PRESET" --out "${BUNDLE:-srflow_nb/pretrained}" \
      ${CKPT:+--hcflow_checkpoint "$CKPT"}
  fi
elif [ "$STEP" = speed ]; then
  python - <<'PY'
import json, subprocess, time
from pathlib import Path
import torch
from srflow_nb.hcflow_train import HCFLOW_PRESETS, HCFlowTask
from srflow_nb.train import PatchCache, Updater, load_folder
torch.set_num_threads(1)
rows = []
for preset in ("demo-4x-hcflow", "demo-4x-hcflow-plus", "demo-4x-hcflow-rescaling"):
    make, model = HCFLOW_PRESETS[preset]
    cfg = make(out_dir="runs/speed-unused")
    task = HCFlowTask.create(cfg, model)
    task.update = Updater(task.optimizers, cfg, torch.device("cpu"), 1)
    hrs, names = load_folder("data/demo/train")
    patches, g = PatchCache.from_hr(hrs, cfg.scale, cfg.patch_size, names=names), torch.Generator().manual_seed(0)
    batches = [task.prepare_batch(*patches.sample(cfg.batch_size, g), g) for _ in range(21)]
    task.initialize(batches[0])
    times = []
    for i, b in enumerate(batches):
        t = time.process_time(); out = task.training_step(b, i)
        if out["loss"].requires_grad: task.update(out["loss"], "model")
        times.append(time.process_time() - t)
    s = sum(times[1:]) / 20   # the first step (allocations) left out
    rows.append(dict(preset=preset, model=model, params=sum(p.numel() for p in task.model.parameters()), batch_size=cfg.batch_size,
                     patch_size=cfg.patch_size, threads=1, steps_measured=20, cpu_s_per_step=round(s, 4), iterations=cfg.iterations,
                     cpu_hours_estimate=round(s * cfg.iterations / 3600, 2)))
    print(json.dumps(rows[-1]), flush=True)
sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
out = Path("data/results/hcflow/train_speed.json"); out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(dict(git_sha=sha, torch=torch.__version__, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), rows=rows), indent=1) + "\n")
print("[hcflow] wrote", out)
PY
else
  echo "usage: bash tools/train_hcflow.sh [train|export|speed]" >&2; exit 2
fi
