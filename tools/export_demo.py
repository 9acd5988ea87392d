"""Export the demo campaign's best checkpoints as the bundled `demo-4x` / `demo-4x-rrdb` models, with a model card.

    python tools/export_demo.py --rrdb runs/demo-4x-rrdb/best.pt --flow runs/demo-4x/best.pt --out srflow_nb/assets/pretrained

Evaluates bicubic, the RRDB and SRFlow (temperatures 0 and 0.9, fixed seed) on the demo dataset's held-out test split
(PSNR, SSIM, LPIPS, LR-PSNR, RGB, no border crop) and writes demo_4x_rrdb.safetensors, demo_4x.safetensors (conv kernels
in fp16 when the fp32 file would exceed 25 MB), MODEL_CARD.md, and the training logs/configs next to them.
"""
import argparse, json, shutil, sys
from pathlib import Path

import numpy as np
import torch

from srflow_nb.checkpoints import PRETRAINED, load_model
from srflow_nb.core import atomic_write, run_info
from srflow_nb.data import demo_images, imresize, load_image, make_lr, to_tensor
from srflow_nb.train import export_weights, load_checkpoint

LIMIT = 25 * 2 ** 20


def _metrics(sr, hr, lr, scale):
    from srflow_nb import metrics as M
    out = dict(psnr=float(np.mean(M.psnr(sr, hr))), ssim=float(np.mean(M.ssim(sr, hr))),
               lr_psnr=float(np.mean(M.lr_psnr(sr, lr, scale))))
    try: out["lpips"] = float(np.mean(M.lpips(sr, hr)))
    except Exception as e: print(f"[export] LPIPS unavailable ({type(e).__name__}: {e})", file=sys.stderr)
    return out


def evaluate(rrdb, flow, scale=4, temperatures=(0.0, 0.9), seed=0):
    rows = {}
    def add(name, m):
        for k, v in m.items(): rows.setdefault(name, {}).setdefault(k, []).append(v)
    for p in demo_images("test"):
        hr_np = load_image(p)
        h, w = hr_np.shape[:2]
        m = 2 ** flow.config.L if flow is not None else scale
        m = max(m, scale)
        hr_np = hr_np[: h // m * m, : w // m * m]
        lr = to_tensor(make_lr(hr_np, scale)); hr = to_tensor(hr_np)
        bic = imresize(lr, scale=scale).clamp(0, 1)  # MATLAB bicubic upscaling, as the paper's bicubic baseline
        add("bicubic", _metrics(bic, hr, lr, scale))
        with torch.inference_mode():
            if rrdb is not None: add("RRDB (demo-4x-rrdb)", _metrics(rrdb.sr(lr).clamp(0, 1), hr, lr, scale))
            if flow is not None:
                for t in temperatures:
                    g = torch.Generator().manual_seed(seed)
                    add(f"SRFlow (demo-4x) t={t:g}", _metrics(flow.sample(lr, n=1, temperature=t, generator=g)[0].clamp(0, 1), hr, lr, scale))
    return {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in rows.items()}, len(demo_images("test"))


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
