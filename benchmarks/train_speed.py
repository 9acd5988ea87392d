"""Training throughput of `srflow_nb.train.Trainer` on this machine (prints JSON, one record per setting).

    python benchmarks/train_speed.py                 # the default grid (several minutes on a 2-core CPU)
    python benchmarks/train_speed.py --only small    # just the small_4x rows
    python benchmarks/train_speed.py --steps 3 --json out.json
    python benchmarks/train_speed.py --ab small rrdb paper   # interleaved A/B of precision/layout/threads (robust to load)
    python benchmarks/train_speed.py --ab compile --rounds 10 --json out.json   # torch.compile of the flow's forward (fp32, bf16)
    python benchmarks/train_speed.py --against /tmp/old_train.py --json out.json   # this trainer vs another train.py, interleaved
    python benchmarks/train_speed.py --profile --json out.json   # where a flow step's time goes: convolutions, casts, Adam, rest

Rows: the paper's DF2K-4X model (SRFlowConfig.div2k_4x) at HR 256 batch 1 (the setting of the official code's
7.9 s/step measured on this machine) and HR 160 batch 1/4, and the CPU `small_4x` model at HR 64/96, batch 1/4,
each under fp32 / bf16 autocast (encoder only, or everything) / channels_last and 1 or 2 threads. A step is a full
`Trainer.train_step` (batch sampling from the in-memory patch cache, forward, backward, NaN guard, Adam), timed
after warm-up steps. The machine's load average is recorded with each row: the CPU may be shared.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

import torch

from srflow_nb.core import run_info
from srflow_nb.model import SRFlow, SRFlowConfig
import srflow_nb.train
from srflow_nb.train import PatchCache, TrainConfig, Trainer

OFFICIAL_S_PER_STEP = {"div2k_4x/hr256/b1": 7.9}   # official SRFlow code, measured on this machine (issue 4)


def bench(model_name, batch, patch, amp=None, amp_scope="encoder", channels_last=False, threads=2, frozen=False,
          steps=3, warmup=1, stage="flow"):
    torch.manual_seed(0)
    model = SRFlow(getattr(SRFlowConfig, model_name)())
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, patch * 2, patch * 2, generator=g) for _ in range(4)]
    data = PatchCache.from_hr(imgs, scale=4, patch_size=patch, downscale=lambda x, s: torch.nn.functional.avg_pool2d(x[None], s)[0])
    with tempfile.TemporaryDirectory() as d:
        n = warmup + steps
        cfg = TrainConfig(stage=stage, iterations=1000, batch_size=batch, patch_size=patch, scale=4, amp=amp,
                          amp_scope=amp_scope, channels_last=channels_last, threads=threads,
                          freeze_encoder=1.0 if frozen else 0.0, log_every=1000, ckpt_every_steps=None,
                          ckpt_every_s=None, val_every=None, out_dir=d)
        tr = Trainer(model, cfg, data, progress=False, device="cpu", resume=False)
        times = []
        for i in range(n):
            t = time.perf_counter(); r = tr.train_step(); times.append(time.perf_counter() - t)
            if not r["ok"]: raise RuntimeError(f"step skipped: {r}")
    t = sorted(times[warmup:])[len(times[warmup:]) // 2]   # median of the timed steps
    key = f"{model_name}/hr{patch}/b{batch}"
    row = dict(model=model_name, stage=stage, batch=batch, hr_patch=patch, amp=amp, amp_scope=amp_scope if amp else None,
               channels_last=channels_last, threads=threads, encoder_frozen=frozen, s_per_step=round(t, 3),
               steps_per_s=round(1 / t, 3), samples_per_s=round(batch / t, 2), loadavg_1min=os.getloadavg()[0])
    if key in OFFICIAL_S_PER_STEP: row["official_s_per_step"] = OFFICIAL_S_PER_STEP[key]; row["speedup_vs_official"] = round(OFFICIAL_S_PER_STEP[key] / t, 2)
    return row


def _compile_flow(trainer):
    "Wrap the SRFlow's `conditioning` and `nll` (what `SRFlowNLLTask.training_step` calls) in `torch.compile` (inductor)."
    m = trainer.task.model
    m.conditioning, m.nll = torch.compile(m.conditioning), torch.compile(m.nll)


def ab(model_name, batch, patch, settings: dict, rounds=4, stage="flow"):
    """Interleaved A/B timing: one Trainer per setting (same init), steps taken in turn, so that a shared CPU's
    changing load hits every setting alike. Returns {setting: median s/step}. Threads are set per step. A setting's
    `compile=True` wraps the flow in `torch.compile` (its first step, the compilation, is the warm-up round and is
    reported as `first_step_s`)."""
    trainers = {}
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, patch * 2, patch * 2, generator=g) for _ in range(4)]
    data = PatchCache.from_hr(imgs, scale=4, patch_size=patch, downscale=lambda x, s: torch.nn.functional.avg_pool2d(x[None], s)[0])
    tmp = tempfile.TemporaryDirectory()
    compiled = [n for n, kw in settings.items() if kw.get("compile")]
    for name, kw in settings.items():
        kw = {k: v for k, v in kw.items() if k != "compile"}
        torch.manual_seed(0)
        cfg = TrainConfig(stage=stage, iterations=1000, batch_size=batch, patch_size=patch, scale=4, freeze_encoder=0.0,
                          log_every=1000, ckpt_every_steps=None, ckpt_every_s=None, val_every=None, out_dir=f"{tmp.name}/{name}", **kw)
        trainers[name] = Trainer(SRFlow(getattr(SRFlowConfig, model_name)()), cfg, data, progress=False, device="cpu", resume=False)
        if name in compiled: _compile_flow(trainers[name])
    times, first = {n: [] for n in settings}, {}
    for r in range(rounds + 1):
        for n, tr in trainers.items():
            torch.set_num_threads(tr.cfg.threads or 1)
            t = time.perf_counter(); tr.train_step(); dt = time.perf_counter() - t
            if r: times[n].append(dt)   # round 0 is warm-up
            else: first[n] = round(dt, 1)
    tmp.cleanup()
    med = {n: sorted(v)[len(v) // 2] for n, v in times.items()}
    return dict(model=model_name, stage=stage, batch=batch, hr_patch=patch, rounds=rounds, s_per_step=med, first_step_s=first,
                relative_to_first={n: round(med[next(iter(med))] / v, 2) for n, v in med.items()}, loadavg_1min=os.getloadavg()[0])


CATEGORIES = {"convolution": ("conv",), "dtype casts": ("aten::copy_", "aten::_to_copy"),
              "Adam + grad norm": ("Optimizer.step", "lerp_", "addcdiv_", "aten::sqrt", "linalg_vector_norm")}


def where_time_goes(model_name="small_4x", batch=4, patch=64, settings=None, steps=5, warmup=3):
    """Where a training step's CPU time goes (torch.profiler, self CPU time of every op over `steps` steps after
    `warmup`), per setting: ms a step for convolutions (forward and backward), dtype casts (autocast's copies), Adam and
    the gradient norm (its per-parameter ops), and the rest. The profiler's own overhead inflates the small ops a little."""
    from torch.profiler import ProfilerActivity, profile
    settings = settings or {"fp32": dict(threads=1), "bf16_all": dict(threads=1, amp="bf16", amp_scope="all"),
                            "bf16_all+channels_last": dict(threads=1, amp="bf16", amp_scope="all", channels_last=True)}
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, patch * 2, patch * 2, generator=g) for _ in range(4)]
    data = PatchCache.from_hr(imgs, scale=4, patch_size=patch, downscale=lambda x, s: torch.nn.functional.avg_pool2d(x[None], s)[0])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in settings.items():
            torch.manual_seed(0); torch.set_num_threads(kw.get("threads", 1))
            cfg = TrainConfig(stage="flow", iterations=1000, batch_size=batch, patch_size=patch, scale=4, freeze_encoder=0.0, log_every=1000,
                              ckpt_every_steps=None, ckpt_every_s=None, val_every=None, out_dir=f"{tmp}/{name}", **kw)
            tr = Trainer(SRFlow(getattr(SRFlowConfig, model_name)()), cfg, data, progress=False, device="cpu", resume=False)
            for _ in range(warmup): tr.train_step()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps): tr.train_step()
            ms = {k: 0.0 for k in [*CATEGORIES, "rest"]}
            for e in prof.key_averages():
                cat = next((c for c, keys in CATEGORIES.items() if any(k in e.key for k in keys)), "rest")
                ms[cat] += e.self_cpu_time_total / 1000 / steps
            total = sum(ms.values())
            rows.append(dict(setting=name, model=model_name, batch=batch, hr_patch=patch, ms_per_step={k: round(v, 1) for k, v in ms.items()},
                             share={k: round(v / total, 3) for k, v in ms.items()}, loadavg_1min=os.getloadavg()[0]))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def against(path, rounds=8, settings=None):
    """Interleaved A/B of this package's `Trainer` against the `Trainer` of another `train.py` (e.g. the version before a
    refactor, copied out of git): same model init, same data, small_4x HR 64 batch 4, 1 thread, steps taken in turn
    (ABBA order); also checks that both give the same losses."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("other_train", path); other = importlib.util.module_from_spec(spec)
    sys.modules["other_train"] = other; spec.loader.exec_module(other)
    settings = settings or {"fp32": {}, "bf16_encoder": dict(amp="bf16"), "frozen_fp32": dict(freeze_encoder=1.0), "rrdb_fp32": dict(stage="rrdb")}
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, 128, 128, generator=g) for _ in range(4)]
    down = lambda x, s: torch.nn.functional.avg_pool2d(x[None], s)[0]
    tmp, rows = tempfile.TemporaryDirectory(), []
    torch.set_num_threads(1)
    for name, kw in settings.items():
        trainers = {}
        for label, mod in (("before", other), ("after", sys.modules["srflow_nb.train"])):
            torch.manual_seed(0)
            cfg = mod.TrainConfig(**{**dict(stage="flow", iterations=1000, batch_size=4, patch_size=64, scale=4, freeze_encoder=0.0, threads=1,
                                            log_every=1000, ckpt_every_steps=None, ckpt_every_s=None, val_every=None, out_dir=f"{tmp.name}/{name}{label}"), **kw})
            trainers[label] = mod.Trainer(SRFlow(SRFlowConfig.small_4x()), cfg, mod.PatchCache.from_hr(imgs, 4, 64, downscale=down), progress=False, device="cpu", resume=False)
        times, losses = {k: [] for k in trainers}, {k: [] for k in trainers}
        for r in range(rounds + 1):
            for label in (("before", "after") if r % 2 else ("after", "before")):   # alternate who goes first
                tr = trainers[label]
                t = time.perf_counter(); out = tr.train_step(); dt = time.perf_counter() - t
                losses[label].append(out["loss"])
                if r: times[label].append(dt)   # round 0 is warm-up
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        rows.append(dict(setting=name, s_per_step=med, after_over_before=round(med["after"] / med["before"], 3), rounds=rounds,
                         same_losses=losses["before"] == losses["after"], loadavg_1min=os.getloadavg()[0]))
        print(json.dumps(rows[-1]), flush=True)
    tmp.cleanup()
    return rows


AB = {
    "small": dict(model_name="small_4x", batch=4, patch=64, settings={
        "fp32": dict(threads=1), "bf16_encoder": dict(threads=1, amp="bf16"), "bf16_all": dict(threads=1, amp="bf16", amp_scope="all"),
        "channels_last": dict(threads=1, channels_last=True), "bf16_all+channels_last": dict(threads=1, amp="bf16", amp_scope="all", channels_last=True),
        "fp32_2threads": dict(threads=2)}),
    "rrdb": dict(model_name="small_4x", batch=8, patch=96, stage="rrdb", settings={
        "fp32": dict(threads=1), "bf16": dict(threads=1, amp="bf16")}),
    "compile": dict(model_name="small_4x", batch=4, patch=64, settings={   # the campaign's flow setting (tools/campaign.py)
        "fp32": dict(threads=1), "fp32_compiled": dict(threads=1, compile=True), "bf16_all": dict(threads=1, amp="bf16", amp_scope="all"),
        "bf16_all_compiled": dict(threads=1, amp="bf16", amp_scope="all", compile=True),
        "bf16_all+channels_last_compiled": dict(threads=1, amp="bf16", amp_scope="all", channels_last=True, compile=True)}),
    "paper": dict(model_name="div2k_4x", batch=1, patch=256, rounds=2, settings={
        "fp32": dict(threads=1), "bf16_all": dict(threads=1, amp="bf16", amp_scope="all")}),
}

GRID = {
    "small": [dict(model_name="small_4x", batch=b, patch=64, **s) for b in (1, 4) for s in (
        dict(threads=1), dict(threads=2), dict(threads=1, amp="bf16"), dict(threads=1, amp="bf16", amp_scope="all"),
        dict(threads=1, channels_last=True), dict(threads=1, frozen=True), dict(threads=1, amp="bf16", amp_scope="all", frozen=True))]
        + [dict(model_name="small_4x", batch=8, patch=96, threads=1, stage="rrdb"),
           dict(model_name="small_4x", batch=8, patch=96, threads=1, amp="bf16", stage="rrdb")],
    "paper": [dict(model_name="div2k_4x", batch=1, patch=256, threads=1, steps=1),
              dict(model_name="div2k_4x", batch=1, patch=256, threads=1, amp="bf16", amp_scope="all", steps=1),
              dict(model_name="div2k_4x", batch=1, patch=160, threads=1, steps=1),
              dict(model_name="div2k_4x", batch=4, patch=160, threads=1, amp="bf16", amp_scope="all", steps=1)],
    # the official 7.9 s/step was measured with 2 threads: the same setting, on an otherwise idle machine
    "paper_2threads": [dict(model_name="div2k_4x", batch=1, patch=256, threads=2, steps=2),
                       dict(model_name="div2k_4x", batch=1, patch=256, threads=2, amp="bf16", amp_scope="all", steps=2),
                       dict(model_name="div2k_4x", batch=1, patch=256, threads=2, amp="bf16", amp_scope="encoder", steps=2)],
    "paper_batch4": [dict(model_name="div2k_4x", batch=4, patch=256, threads=2, steps=2),
                     dict(model_name="div2k_4x", batch=4, patch=256, threads=2, amp="bf16", amp_scope="all", steps=2)],
}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(GRID), nargs="*", default=sorted(GRID))
    ap.add_argument("--steps", type=int, default=None, help="timed steps per row (default 3, 1 for the paper model)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--ab", choices=sorted(AB), nargs="*", help="interleaved A/B comparisons instead of the grid")
    ap.add_argument("--against", help="another train.py: interleaved A/B of its Trainer against this one")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds of --against (default 8) or --ab (default: the comparison's own)")
    ap.add_argument("--profile", action="store_true", help="where a flow step's time goes (fp32, bf16 everywhere, + channels_last)")
    a = ap.parse_args()
    rows = []
    if a.profile:
        rows = where_time_goes()
        if a.json: Path(a.json).write_text(json.dumps(dict(rows=rows, run_info=run_info()), indent=1))
        sys.exit(0)
    if a.against:
        rows = against(a.against, a.rounds or 8)
        if a.json: Path(a.json).write_text(json.dumps(dict(rows=rows, run_info=run_info()), indent=1))
        sys.exit(0)
    if a.ab is not None:
        for name in a.ab or sorted(AB):
            row = ab(**AB[name], **({"rounds": a.rounds} if a.rounds else {})); rows.append(row); print(json.dumps(row), flush=True)
        if a.json: Path(a.json).write_text(json.dumps(dict(rows=rows, run_info=run_info()), indent=1))
        sys.exit(0)
    for name in a.only:
        for kw in GRID[name]:
            if a.steps: kw = {**kw, "steps": a.steps}
            row = bench(**kw); rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json: Path(a.json).write_text(json.dumps(dict(rows=rows, run_info=run_info()), indent=1))   # run_info names the CPU and ISA
