"""The short scale study of issue 24: at an equal CPU budget per configuration, which SRFlow configuration gives the
lowest held-out LPIPS at τ=0.9 without losing LR-PSNR?

    python tools/scale_study.py --budget-min 10                 # every configuration below, resumable
    python tools/scale_study.py --budget-min 10 --only K8_h32   # one of them
    python tools/scale_study.py --budget-min 12 --only K4_h32_fp32 --images 8 17 38   # the images axis: nested subsets

Every configuration starts from the same encoder (`demo-4x-rrdb-v1`, the RRDB bundled when the study began, kept frozen so that only the flow's
configuration differs) and a fresh flow, trains on the built training set (`srflow data build-train`) with the
`demo_flow` recipe at a constant learning rate (the budget ends long before the schedule's first milestone) until the
process has used `--budget-min` CPU-minutes of training, then is evaluated on held-out split 2 (20 crops that no
training package contains; `srflow_nb.demo.demo_dataset("heldout2")`) at τ=0 and τ=0.9, 2 samples, with the same
runner and metrics as the reproduction notebooks. One row per configuration goes to `<out>/scale_study.csv`, with
the steps, CPU seconds, the machine (CPU kind, threads, precision) and the git commit; training checkpoints live in
`runs/scale_study/<name>` (git-ignored), so an interrupted study resumes where it stopped.

`--images N ...` trains a configuration on the first N images of a fixed order instead of all of them (the number of
training images as the axis, at the same budget): the 17 `demo-*` images of the original demo set first (sorted), then
the package photographs in a permutation seeded by 0, so every subset contains the smaller ones. Runs live in
`runs/scale_study/<config>_n<N>`; the CSV's `train_images` says how many images a row trained on. `--seed S` repeats a
configuration with another initialisation and batch order (runs `<config>_s<S>`; the CSV's `seed`), for the spread
between seeds that a single-seed comparison cannot show.
"""
from __future__ import annotations
import argparse, itertools, json, sys, time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from srflow_nb.checkpoints import load_pretrained  # noqa: E402
from srflow_nb.core import atomic_write, run_info  # noqa: E402
from srflow_nb.datasets import trainset_images  # noqa: E402
from srflow_nb.model import SRFlow, SRFlowConfig  # noqa: E402
from srflow_nb.superresolvers import wrap_model  # noqa: E402
from campaign_eval import METRICS, heldout2_means  # noqa: E402  (tools/: the campaign's held-out evaluation)
from srflow_nb.train import PatchCache, TrainConfig, Trainer, load_folder  # noqa: E402

BASE = dict(patch_size=64, batch_size=4, amp="bf16", amp_scope="encoder")
ENCODER = "demo-4x-rrdb-v1"          # the frozen encoder of every run (the bundled RRDB when the study began; not the campaign's)
CONFIGS = {   # name -> (SRFlowConfig.small_4x overrides, TrainConfig overrides)
    "K4_h32": ({}, {}),                                            # today's demo-4x recipe
    "K8_h32": (dict(K=8), {}),
    "K4_h64": (dict(hidden_channels=64), {}),
    "K4_h32_p96": ({}, dict(patch_size=96)),
    "K4_h32_bf16all": ({}, dict(amp_scope="all")),
    "K4_h32_fp32": ({}, dict(amp=None)),
    "K4_h32_fp32_noise8": ({}, dict(amp=None, dequant_scale=8 / 256)),          # the paper's dequantisation noise (App. A)
    "K4_h32_bf16all_noise8": ({}, dict(amp_scope="all", dequant_scale=8 / 256)),
}


def image_order(names: list[str]) -> list[int]:
    "Indices of `names` in the images axis' order: the `demo-*` images sorted, then the others in a permutation seeded by 0."
    demo = sorted((i for i, n in enumerate(names) if Path(n).name.startswith("demo-")), key=lambda i: names[i])
    taken = set(demo)
    rest = sorted((i for i in range(len(names)) if i not in taken), key=lambda i: names[i])
    perm = torch.randperm(len(rest), generator=torch.Generator().manual_seed(0)).tolist()
    return demo + [rest[j] for j in perm]


def run_one(name: str, budget_s: float, runs: Path, hr: list, names: list, threads: int, run_name: str | None = None,
            seed: int = 0) -> dict:
    model_kw, train_kw = CONFIGS[name]
    torch.manual_seed(seed)
    model = SRFlow(SRFlowConfig.small_4x(**model_kw))
    model.encoder.load_state_dict(load_pretrained(ENCODER).state_dict())           # the same encoder for every configuration
    cfg = TrainConfig.demo_flow(**{**BASE, **train_kw, "iterations": 1_000_000, "freeze_encoder": 1.0, "val_every": None,
                                   "ckpt_every_steps": None, "ckpt_every_s": 300.0, "threads": threads, "seed": seed,
                                   "out_dir": str(runs / (run_name or name))})
    data = PatchCache.from_hr(hr, cfg.scale, cfg.patch_size, augment=cfg.augment, names=names)
    tr = Trainer(model, cfg, data, progress=False, device="cpu")
    t0 = time.time()
    while tr.clock.cpu() < budget_s: tr.train_step()
    tr.save()
    cpu_s = tr.clock.cpu()                                      # training only: the evaluation below is not part of the budget
    print(f"{name}: {tr.step} steps, {cpu_s:.0f} CPU-s ({time.time() - t0:.0f} s wall this run)", flush=True)
    m = tr.model.eval()
    mean = heldout2_means(wrap_model(m), "srflow", bicubic=False).set_index("temperature")[METRICS + ["diverged"]]   # as the campaign's snapshots
    return dict(config=name, **{f"model_{k}": v for k, v in model_kw.items()}, **{f"train_{k}": v for k, v in {**BASE, **train_kw}.items()},
                params=sum(p.numel() for p in m.parameters()), steps=tr.step, cpu_s=round(cpu_s, 1),
                **{f"t{t:g}_{k}": round(float(v), 4) for t, row in mean.iterrows() for k, v in row.items()})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-min", type=float, default=10.0, help="CPU-minutes of training per configuration")
    ap.add_argument("--only", nargs="*", choices=sorted(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, nargs="*", default=None, help="train on the first N images of `image_order` (one run per N)")
    ap.add_argument("--seed", type=int, default=0, help="initialisation and batch-order seed (runs <config>_s<seed> when not 0)")
    ap.add_argument("--out", type=Path, default=ROOT / "data/results/scale_study/quick")   # quick/: outside the notebooks' input stamp
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/scale_study")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    sha = run_info("cpu")["git_sha"]                            # the code this process runs: recorded at its start
    csv = a.out / "scale_study.csv"
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    files = trainset_images()                                   # every image of the manifest, built (else: how to build them)
    hr, names = load_folder(files[0].parent, multiple=4)
    if len(hr) != len(files): raise SystemExit(f"{files[0].parent} holds {len(hr)} images, the training-set manifest {len(files)}")
    if len(done) and "train_images" not in done: done["train_images"] = len(files)   # rows from before --images: every image
    if len(done) and "seed" not in done: done["seed"] = 0                           # rows from before --seed
    if bad := [n for n in a.images or [] if not 1 <= n <= len(files)]: raise SystemExit(f"--images {bad}: the training set has {len(files)} images")
    order = image_order(names)
    for name, n in itertools.product(a.only, a.images or [len(files)]):
        if len(done) and ((done.config == name) & (done.budget_min == a.budget_min) & (done.train_images == n) & (done.seed == a.seed)).any():
            print(f"{name} on {n} images, seed {a.seed}: done"); continue
        pick = order[:n]
        row = dict(run_one(name, a.budget_min * 60, a.runs, [hr[i] for i in pick], [names[i] for i in pick], a.threads,
                           run_name=name + ("" if n == len(files) else f"_n{n}") + (f"_s{a.seed}" if a.seed else ""), seed=a.seed),
                   budget_min=a.budget_min, train_images=n, seed=a.seed)
        info = run_info("cpu", precision=row.get("train_amp") or "fp32")
        row.update(cpu_kind=info["machine"]["cpu_kind"], cpu=info["machine"]["cpu"], threads=a.threads, git_sha=sha)
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        atomic_write(csv, lambda p: done.to_csv(p, index=False))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
