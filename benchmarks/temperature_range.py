"""Usable temperature range of a bundled model: the fraction of diverged (non-finite) samples against temperature.

    python benchmarks/temperature_range.py --model demo-4x --crop 48 --seeds 8 --threads 1

For each of the 7 bundled test images (an LR crop of `--crop` pixels from the top-left of `resize.downscale(hr, scale, quantize=True)`),
`temperature_sweep` decodes the same unit latents (seeds 0..`--seeds`-1) at every temperature; a sample is
"diverged" when any of its values is NaN/Inf, and "out of range" when it is finite but has values outside
[-1, 2] (far outside an image). Writes benchmarks/results/temperature_range_<model>.json (rows per temperature,
the largest measured temperature with no diverged sample, and the run record: git sha, torch, threads).
"""
from __future__ import annotations
import argparse, json, os, sys, time, warnings
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from srflow_nb.checkpoints import load_pretrained  # noqa: E402
from srflow_nb.core import atomic_write, run_info  # noqa: E402
from srflow_nb.datasets import demo_images  # noqa: E402
from srflow_nb.images import load_image, to_tensor  # noqa: E402
from srflow_nb.resize import downscale  # noqa: E402
from srflow_nb.core import nonfinite_samples  # noqa: E402
from srflow_nb.sampling import temperature_sweep  # noqa: E402

TEMPERATURES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 2.0, 3.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo-4x")
    p.add_argument("--crop", type=int, default=48, help="LR crop side in pixels")
    p.add_argument("--seeds", type=int, default=8, help="samples per image and temperature (sample seeds 0..n-1)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_pretrained(a.model).eval()
    s, t0, info = model.config.scale, time.perf_counter(), run_info("cpu", command=" ".join(sys.argv))  # the code that runs
    bad = torch.zeros(len(TEMPERATURES)); far = torch.zeros(len(TEMPERATURES)); total = 0
    images = demo_images("test")
    for path in images:
        lr = downscale(to_tensor(load_image(path)), s, quantize=True)[..., :a.crop, :a.crop]
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # divergence is what is being counted
            sr = temperature_sweep(model, lr, list(TEMPERATURES), n=a.seeds, seed=0, device="cpu")   # (T, n, 1, C, H, W)
        nf = nonfinite_samples(sr)[:, :, 0]
        out = ((sr < -1) | (sr > 2)).flatten(-3).any(-1)[:, :, 0] & ~nf
        bad += nf.sum(1).float(); far += out.sum(1).float(); total += a.seeds
    rows = [dict(temperature=t, samples=total, diverged=int(b), diverged_fraction=float(b) / total,
                 out_of_range_fraction=float(f) / total) for t, b, f in zip(TEMPERATURES, bad, far)]
    ok = [r["temperature"] for r in rows if r["diverged"] == 0]
    first_bad = next((r["temperature"] for r in rows if r["diverged"] > 0), None)
    usable = max(t for t in ok if first_bad is None or t < first_bad) if ok else None
    first_far = next((r["temperature"] for r in rows if r["diverged"] + r["out_of_range_fraction"] > 0), None)
    clean = max((r["temperature"] for r in rows if first_far is None or r["temperature"] < first_far), default=None)
    res = dict(model=a.model, images=[p.name for p in images], lr_crop=a.crop, samples_per_image=a.seeds, rows=rows,
               max_temperature_without_divergence=usable, first_temperature_with_divergence=first_bad,
               max_temperature_all_in_range=clean, seconds=time.perf_counter() - t0, run=info)
    out = Path(a.out or Path(__file__).parent / "results" / f"temperature_range_{a.model}.json")
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(res, indent=1) + "\n"))
    print(json.dumps({k: v for k, v in res.items() if k != "run"}, indent=1))
    return res


if __name__ == "__main__":
    main()
