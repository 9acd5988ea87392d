#!/usr/bin/env bash
# CPU demo campaign for SR3 (`SR3Config.small`, TrainConfig `sr3_demo`) on the demo dataset's train split, validated on
# the val split with few-step samples. Resumable: all state lives in $RUNS (default runs/, outside git).
#
#   bash tools/train_sr3.sh              # the campaign (long: see `speed`), into $RUNS/demo-4x-sr3
#   bash tools/train_sr3.sh speed        # 5 warm-up + 20 timed steps of the demo preset in a scratch folder; writes
#                                        # data/results/sr3/train_speed.json (s/step, CPU-hours for the preset's iterations)
#   bash tools/train_sr3.sh sample_speed # bf16 vs fp32 sample accuracy and seconds per U-Net evaluation (small model, HR 256):
#                                        # data/results/sr3/sample_speed.json
#   SMOKE=1 bash tools/train_sr3.sh      # 4 steps of the tiny model, validation included, into $RUNS/smoke-sr3
#   nohup bash tools/train_sr3.sh > runs/sr3.log 2>&1 &
#
# Environment: ITERS (override the preset's iterations), RUNS, THREADS (torch threads, default 1), MODEL (default small),
#   BATCH (override the batch size), AMP (bf16 | none), SPEED_OUT (the speed JSON, default data/results/sr3/train_speed.json).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
RUNS=${RUNS:-runs}
STEP=${1:-train}
ARGS=(--model "${MODEL:-small}" --threads "${THREADS:-1}")
[ -n "${BATCH:-}" ] && ARGS+=(--batch_size "$BATCH")
[ -n "${AMP:-}" ] && ARGS+=(--amp "$AMP")

if [ "$STEP" = speed ]; then
  python - "${ARGS[@]}" <<'PY'
import json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
from srflow_nb.sr3 import sr3_demo
from srflow_nb.core import run_info
argv = sys.argv[1:]; kw = {argv[i][2:]: argv[i + 1] for i in range(0, len(argv), 2)}
model, threads = kw.get("model", "small"), int(kw.get("threads", 1))
batch = int(kw["batch_size"]) if "batch_size" in kw else None
warm, timed = 5, 20
from srflow_nb.sr3 import SR3Task
from srflow_nb.train import PatchCache, Trainer, load_folder
over = dict(threads=threads, log_every=1, val_every=None, ckpt_every_steps=None, ckpt_every_s=None)
if batch: over["batch_size"] = batch
if kw.get("amp"): over["amp"] = None if kw["amp"] == "none" else kw["amp"]
with tempfile.TemporaryDirectory() as d:
    cfg = sr3_demo(out_dir=d, **over)
    hrs, names = load_folder("data/demo/train")
    tr = Trainer(SR3Task.create(cfg, model), cfg, PatchCache.from_hr(hrs, cfg.scale, cfg.patch_size, names=names), progress=False)
    tr.fit(warm + timed)
    hist = [r for r in tr.history if "elapsed_s" in r]
    t = np.array([r["elapsed_s"] for r in hist]); c = np.array([r["cpu_time_s"] for r in hist])
    wall = np.diff(t[warm - 1:]); cpu = np.diff(c[warm - 1:])
cfg = tr.cfg
res = dict(**run_info()); res.update(model=model, batch_size=cfg.batch_size, patch_size=cfg.patch_size, amp=cfg.amp, threads=threads, timed_steps=len(wall),
           s_per_step_median=float(np.median(wall)), s_per_step_mean=float(wall.mean()), cpu_s_per_step_median=float(np.median(cpu)),
           preset_iterations=sr3_demo().iterations,
           cpu_hours_for_preset_iterations=float(np.median(cpu)) * sr3_demo().iterations / 3600,
           load_average=os.getloadavg(), cpu_count=os.cpu_count())
out = Path(os.environ.get("SPEED_OUT", "data/results/sr3/train_speed.json")); out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(res, indent=1, default=str) + "\n")
print(json.dumps({k: res[k] for k in ("model", "batch_size", "amp", "s_per_step_median", "cpu_s_per_step_median", "cpu_hours_for_preset_iterations", "load_average")}))
PY
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
  python -m srflow_nb.sr3 data/demo/train "$OUT" --val data/demo/val --model tiny --iterations "${ITERS:-4}" --batch_size 2 \
         --val_every 2 --val_steps 2 --val_crop 64 --threads "${THREADS:-1}" --no-progress
else
  OUT=$RUNS/demo-4x-sr3
  ITER_ARGS=(); [ -n "${ITERS:-}" ] && ITER_ARGS=(--iterations "$ITERS")
  echo "[sr3] demo campaign -> $OUT ($(date -u +%H:%M:%S))"
  python -m srflow_nb.sr3 data/demo/train "$OUT" --val data/demo/val --lpips "${ARGS[@]}" "${ITER_ARGS[@]}"
fi
