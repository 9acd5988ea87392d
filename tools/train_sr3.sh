#!/usr/bin/env bash
# CPU demo campaign for SR3 (`SR3Config.demo`, TrainConfig `sr3_demo`: ~2 CPU-hours on one thread) on the demo dataset's
# train split, validated on the val split with few-step samples, through the one training entry
# (`srflow train --family sr3 --preset sr3_demo`). Resumable: all state lives in $RUNS (default runs/,
# outside git); re-running the same command continues from the newest checkpoint.
#
#   bash tools/train_sr3.sh              # the campaign, into $RUNS/demo-4x-sr3
#   nohup bash tools/train_sr3.sh > runs/sr3.log 2>&1 &
#   bash tools/train_sr3.sh export       # newest checkpoint of $RUNS/demo-4x-sr3 -> srflow_nb/pretrained/demo_4x_sr3.safetensors,
#                                        # then tools/export_demo.py --sr3: the run's config/model_config/metrics/val files as
#                                        # demo-4x-sr3.* and the MODEL_CARD.md section (EXPORT: only the model file, elsewhere)
#   bash tools/train_sr3.sh speed        # CPU s/step of candidate configurations (SPEED_STEPS timed steps each, after 3 warm-up
#                                        # steps) -> data/results/sr3/train_speed.json (git sha, configs, load, CPU-h of each)
#   bash tools/train_sr3.sh sample_speed # bf16 vs fp32 sample accuracy and seconds per U-Net evaluation (small model, HR 256):
#                                        # data/results/sr3/sample_speed.json
#   SMOKE=1 bash tools/train_sr3.sh      # 4 steps of the tiny model, validation included, into $RUNS/smoke-sr3
#
# Environment: ITERS (override the preset's iterations), UNTIL (stop at this step, resume later), RUNS, THREADS (torch
#   threads, default 1), MODEL (default demo), BATCH (override the batch size), AMP (bf16 | none), SPEED_OUT (the speed
#   JSON), SPEED_STEPS (default 10), EXPORT.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${THREADS:-1}
RUNS=${RUNS:-runs}
STEP=${1:-train}
ARGS=(--family sr3 --preset sr3_demo)
SET=("threads=${THREADS:-1}")
[ -n "${BATCH:-}" ] && SET+=("batch_size=$BATCH")
case "${AMP:-}" in "") ;; none) SET+=("amp=null") ;; *) SET+=("amp=\"$AMP\"") ;; esac
[ -n "${UNTIL:-}" ] && ARGS+=(--until "$UNTIL")

if [ "$STEP" = speed ]; then
  # Candidates: the demo preset, the previous demo (small, HR 64) in bf16 and fp32, and narrower/shallower U-Nets.
  python - <<'PY'
import json, os, tempfile, time
from pathlib import Path
import numpy as np, torch
from srflow_nb.core import run_info
from srflow_nb.sr3 import SR3, SR3Config
from srflow_nb.sr3_train import SR3Task, sr3_demo
from srflow_nb.train import PatchCache, Trainer, load_folder
threads, timed, warm = int(os.environ.get("THREADS", 1)), int(os.environ.get("SPEED_STEPS", 10)), 3
torch.set_num_threads(threads)
D = SR3Config.demo()
CANDIDATES = [   # (name, SR3Config, TrainConfig overrides of sr3_demo)
    ("demo (preset)", D, {}),
    ("small, HR 64 (previous demo)", SR3Config.small(), dict(patch_size=64)),
    ("small, HR 64, fp32", SR3Config.small(), dict(patch_size=64, amp=None)),
    ("small, 1 block, HR 64", SR3Config.small(res_blocks=1), dict(patch_size=64)),
    ("small, 1 block, 24 channels, HR 48", SR3Config.small(res_blocks=1, channels=24), {}),
    ("demo, HR 64", D, dict(patch_size=64)),
    ("demo, 2 blocks", D.replace(res_blocks=2), {}),
]
hrs, names = load_folder("data/demo/train")
rows, preset = [], sr3_demo()
for name, mc, over in CANDIDATES:
    with tempfile.TemporaryDirectory() as d:
        cfg = sr3_demo(out_dir=d, threads=threads, log_every=1, val_every=None, ckpt_every_steps=None, ckpt_every_s=None, **over)
        torch.manual_seed(0)
        task = SR3Task(SR3(mc), cfg)
        tr = Trainer(task, cfg, PatchCache.from_hr(hrs, cfg.scale, cfg.patch_size, names=names), progress=False)
        load0 = os.getloadavg()[0]
        tr.fit(warm + timed)
        hist = [r for r in tr.history if "elapsed_s" in r]
        wall = np.diff([r["elapsed_s"] for r in hist])[warm - 1:]; cpu = np.diff([r["cpu_time_s"] for r in hist])[warm - 1:]
    s = float(np.median(cpu))
    rows.append(dict(name=name, model=mc.to_dict(), params=sum(p.numel() for p in task.model.parameters()), batch_size=cfg.batch_size,
                     patch_size=cfg.patch_size, amp=cfg.amp, timed_steps=len(cpu), cpu_s_per_step_median=s, wall_s_per_step_median=float(np.median(wall)),
                     iterations=preset.iterations, cpu_hours_for_preset_iterations=s * preset.iterations / 3600,
                     load_average_before=load0, load_average_after=os.getloadavg()[0]))
    print(json.dumps({k: rows[-1][k] for k in ("name", "params", "cpu_s_per_step_median", "wall_s_per_step_median", "cpu_hours_for_preset_iterations", "load_average_after")}), flush=True)
res = dict(run_info()); res.update(threads=threads, cpu_count=os.cpu_count(), preset=preset.to_dict(), preset_model=D.to_dict(), rows=rows)
out = Path(os.environ.get("SPEED_OUT", "data/results/sr3/train_speed.json")); out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(res, indent=1, default=str) + "\n")
print("[sr3] wrote", out)
PY
  exit 0
fi

if [ "$STEP" = export ]; then
  OUT=$RUNS/demo-4x-sr3
  DEST=srflow_nb/pretrained
  EXPORT=${EXPORT:-$DEST/demo_4x_sr3.safetensors}
  python - "$OUT" "$EXPORT" <<'PY'
import sys
from srflow_nb.checkpoints import export_model, list_checkpoints
cks = list_checkpoints(f"{sys.argv[1]}/checkpoints")
if not cks: sys.exit(f"[sr3] export: no checkpoint in {sys.argv[1]}/checkpoints")
print("[sr3] exported", cks[-1], "->", export_model(cks[-1], sys.argv[2]))
PY
  if [ "$EXPORT" = "$DEST/demo_4x_sr3.safetensors" ]; then   # the bundle: the run's files as demo-4x-sr3.* and the card
    python tools/export_demo.py --sr3 "$OUT" --out "$DEST"
  fi
  exit 0
fi

if [ "$STEP" = sample_speed ]; then
  # bf16 vs fp32 accuracy (a tiny model overfitted for 120 steps, and the untrained small model) and the time of one
  # U-Net evaluation of the small model at HR 256 (LR 64): SR3's seconds per sample are steps x that time.
  python - <<'PY'
import json, math, os, time
from pathlib import Path
import torch
from srflow_nb.core import run_info
from srflow_nb.sr3 import SR3, SR3Config, bf16_error, overfit_tiny
torch.set_num_threads(int(os.environ.get("THREADS", 1)))
res = dict(**run_info()); res["bf16_accuracy"] = {}
torch.manual_seed(0); tiny = SR3(SR3Config.tiny(loss_type="l2")); overfit_tiny(model=tiny); tiny.eval()
small = SR3(SR3Config.small()).eval()
lr = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
for name, m in (("tiny_overfit_120_steps", tiny), ("small_untrained", small)):
    res["bf16_accuracy"][name] = {str(st): bf16_error(m, lr, steps=st) for st in (20, 100)}
x = torch.randn(1, 6, 256, 256); sg = torch.full((1,), 0.5)
def per_eval(bf16, reps=3):
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        small.net(x, sg); ts = []
        for _ in range(reps):
            t = time.perf_counter(); small.net(x, sg); ts.append(time.perf_counter() - t)
    return min(ts)
res["small_unet_eval_s_hr256"] = {"fp32": per_eval(False), "bf16": per_eval(True)}
res["small_s_per_sample_hr256"] = {f"{k}_{st}_steps": v * st for k, v in res["small_unet_eval_s_hr256"].items() for st in (10, 100)}
res["load_average"] = os.getloadavg()
out = Path(os.environ.get("SPEED_OUT", "data/results/sr3/sample_speed.json")); out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(res, indent=1, default=str) + "\n")
print(json.dumps({k: res[k] for k in ("bf16_accuracy", "small_unet_eval_s_hr256", "small_s_per_sample_hr256")}, indent=1))
PY
  exit 0
fi

if [ "${SMOKE:-0}" = 1 ]; then
  OUT=$RUNS/smoke-sr3
  python -m srflow_nb.cli train --data data/demo/train --out "$OUT" --val data/demo/val "${ARGS[@]}" --model tiny \
         --iterations "${ITERS:-4}" --crop 64 --no-progress \
         --set "${SET[@]}" batch_size=2 val_every=2 'options={"warmup": 1000, "val_steps": 2}'
elif [ "$STEP" = train ]; then
  OUT=$RUNS/demo-4x-sr3
  ITER_ARGS=(); [ -n "${ITERS:-}" ] && ITER_ARGS=(--iterations "$ITERS")
  echo "[sr3] demo campaign -> $OUT ($(date -u +%H:%M:%S))"
  python -m srflow_nb.cli train --data data/demo/train --out "$OUT" --val data/demo/val --lpips "${ARGS[@]}" --model "${MODEL:-demo}" \
         --crop 128 "${ITER_ARGS[@]}" --set "${SET[@]}"     # the one training entry (train_sr3's settings: crop 128, seed 0)
else
  echo "usage: bash tools/train_sr3.sh [train|export|speed|sample_speed]" >&2; exit 2
fi
