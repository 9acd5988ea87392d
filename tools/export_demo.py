"""Export the demo campaign's best checkpoints as the bundled `demo-4x` / `demo-4x-rrdb` models, with a model card.

    python tools/export_demo.py --rrdb runs/demo-4x-rrdb/best.pt --flow runs/demo-4x/best.pt --out srflow_nb/assets/pretrained

Evaluates bicubic, the RRDB and SRFlow (temperatures 0 and 0.9, fixed seed) on the demo dataset's held-out test split
(PSNR, SSIM, LPIPS, LR-PSNR, RGB, no border crop) and writes demo_4x_rrdb.safetensors, demo_4x.safetensors (conv kernels
in fp16 when the fp32 file would exceed 25 MB), MODEL_CARD.md, and the training logs/configs next to them.
"""
import argparse, json, shutil, sys
from pathlib import Path

import torch

from srflow_nb.checkpoints import PRETRAINED, load_model
from srflow_nb.core import atomic_write, run_info
from srflow_nb.train import export_weights, load_checkpoint

LIMIT = 25 * 2 ** 20


def evaluate(rrdb, flow, scale=4, temperatures=(0.0, 0.9), seed=0):
    "Mean PSNR/SSIM/LPIPS/LR-PSNR on the held-out test split through `srflow_nb.evaluate` (as the reproduction notebooks)."
    import pandas as pd
    from srflow_nb.demo import demo_dataset, rrdb_upsampler, srflow_sampler
    from srflow_nb.evaluate import bicubic_upsampler, evaluate as run, summarize
    metrics = ["psnr", "ssim", "lpips", "lr_psnr"]
    ds = demo_dataset("test")
    base = {"bicubic": bicubic_upsampler(scale)}
    if rrdb is not None: base["RRDB (demo-4x-rrdb)"] = rrdb_upsampler(rrdb)
    df = run(srflow_sampler(flow) if flow is not None else None, ds, scale, temperatures, 1, metrics=metrics, baselines=base,
             method="SRFlow (demo-4x)", seed=seed, device="cpu", progress=False)
    rows = {}
    for (meth, t), r in summarize(df, metrics).iterrows():
        rows[meth if pd.isna(t) else f"{meth} t={t:g}"] = {k: float(v) for k, v in r.items()}
    return rows, len(ds)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rrdb", required=True); ap.add_argument("--flow")
    ap.add_argument("--out", default="srflow_nb/assets/pretrained")
    ap.add_argument("--runs", nargs="*", default=[], help="run folders whose logs/configs are copied next to the weights")
    a = ap.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    facts, files = {}, {}
    for kind, src in (("rrdb", a.rrdb), ("flow", a.flow)):
        if not src: continue
        if not Path(src).exists(): sys.exit(f"[export] {src} does not exist: run the {kind} stage first")
        ck = load_checkpoint(src)
        name = "demo-4x-rrdb" if kind == "rrdb" else "demo-4x"
        dest = out / PRETRAINED[name]
        export_weights(ck, dest, half=False)
        if dest.stat().st_size > LIMIT: export_weights(ck, dest, half=True)
        files[name] = dest
        facts[name] = dict(step=ck["step"], cpu_hours=round(ck.get("cpu_time", 0) / 3600, 2), wall_hours=round(ck.get("wall_time", 0) / 3600, 2),
                           skipped=ck.get("skipped", 0), size_mb=round(dest.stat().st_size / 2 ** 20, 1), config=ck["config"],
                           model_config=ck.get("model_config"), val=(ck.get("val_history") or [{}])[-1])
        print(f"[export] {name}: step {ck['step']} -> {dest} ({facts[name]['size_mb']} MB)")
    rrdb = load_model(files["demo-4x-rrdb"]) if "demo-4x-rrdb" in files else None
    flow = load_model(files["demo-4x"]) if "demo-4x" in files else None
    res, n = evaluate(rrdb, flow)
    for run in a.runs:
        run = Path(run)
        for f in ("metrics.csv", "val.csv", "config.json", "model_config.json"):
            if (run / f).exists(): shutil.copy(run / f, out / f"{run.name}.{f}")
    lines = ["# Bundled demo models: `demo-4x-rrdb` and `demo-4x`", "",
             "Trained on this project's CPU with `bash tools/train_demo.sh` (srflow_nb.train) on the demo dataset's **train** split "
             "(data/demo/train, HR patches with flips/rotations, LR by MATLAB bicubic); model selection on the **val** split; "
             f"metrics below on the held-out **test** split ({n} images, RGB, no border crop, 8-bit rounding).", "",
             "| model | file | steps | CPU hours | skipped steps | size |", "|---|---|---|---|---|---|"]
    for name, f in facts.items():
        lines.append(f"| `{name}` | `{files[name].name}` | {f['step']} | {f['cpu_hours']} | {f['skipped']} | {f['size_mb']} MB |")
    lines += ["", "| method | PSNR | SSIM | LPIPS | LR-PSNR |", "|---|---|---|---|---|"]
    for k, m in res.items():
        lines.append(f"| {k} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m.get('lpips', float('nan')):.4f} | {m['lr_psnr']:.2f} |")
    if "bicubic" in res and "RRDB (demo-4x-rrdb)" in res:
        gain = res["RRDB (demo-4x-rrdb)"]["psnr"] - res["bicubic"]["psnr"]
        lines += ["", f"RRDB gain over bicubic on the held-out split: {gain:+.2f} dB PSNR (target of the training campaign: >= 1 dB)."]
    lines += ["", "Usage: `from srflow_nb.checkpoints import load_pretrained; load_pretrained('demo-4x')` (SRFlow), "
              "`load_pretrained('demo-4x-rrdb')` (RRDB baseline, `lr -> sr` via `.sr(lr)`).", "",
              "Caveat: a demo model trained for a few CPU-hours on 17 images; it exercises every code path, it is not the paper's model.", "",
              "Training configs (TrainConfig JSON):", ""]
    for name, f in facts.items(): lines += [f"- `{name}`: `{json.dumps(f['config'])}`", f"  model: `{json.dumps(f['model_config'])}`"]
    lines += ["", f"Run info: `{json.dumps(run_info())}`", ""]
    text = "\n".join(lines)
    atomic_write(out / "MODEL_CARD.md", lambda p: Path(p).write_text(text))
    atomic_write(out / "demo_eval.json", lambda p: Path(p).write_text(json.dumps(dict(test=res, facts=facts), indent=1)))
    print(text)


if __name__ == "__main__":
    main()
