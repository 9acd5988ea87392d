"""The training campaign of issue 24: the bundled 4x models retrained on the built training set, one stage at a time,
resumable across sessions, with a checkpoint kept at every doubling of each stage's CPU budget (for 29_repro.scaling).

    python tools/campaign.py status                    # where every stage stands (steps, CPU-hours, last validation)
    python tools/campaign.py run                       # the next unfinished stage(s), in order, until done or stopped
    python tools/campaign.py run --stage srflow        # one stage (its prerequisites must be finished)
    python tools/campaign.py bundle --stage rrdb srflow esrgan   # finished stages -> srflow_nb/pretrained (old ones kept as *-v1)
    SMOKE=1 python tools/campaign.py run --runs /tmp/c # every stage for a few steps (a check of the wiring)
    nohup python tools/campaign.py run > /work/logs/campaign.log 2>&1 &

The recipe comes from the scale study (`data/results/scale_study/quick/scale_study.csv`): the small model (L=3, K=4,
hidden 32), HR patches of 64, batch 4, and an fp32 flow (chosen on the study's seed-0 runs, where fp32 gave the lowest
held-out LPIPS at tau=0.9 at an equal CPU budget; repeated over 2-3 seeds a configuration, the seeds overlap and bf16
everywhere has the lower mean: 29_repro.scaling's recipe findings, which the stages already trained predate). The RRDB and ESRGAN stages keep the demo recipes (bf16 autocast,
batch 8, patch 96). The 4x flow stages add dequantisation noise one grey level wide (the demo recipe); `srflow_8x` adds the
paper's, 8 levels wide (App. A: standard deviation 4/sqrt(3) levels; the official 8x config's `quant: 32`). It was
restarted with it in session 14 to follow the paper; its first run (one level wide, stopped at step 26,848) is kept in
`<runs>/srflow_8x_noise1`, and the A/B behind the switch is in issue 24's session-14 note.
Stages, in order (each initialised from the one it names):

    rrdb             L1 RRDB                              -> demo-4x-rrdb
    srflow           SRFlow NLL       from rrdb           -> demo-4x
    esrgan           ESRGAN           from rrdb           -> demo-4x-esrgan (the same data as SRFlow: a fair Table 2)
    hcflow           HCFlow SR NLL                        -> demo-4x-hcflow
    hcflow_rescaling HCFlow rescaling                     -> demo-4x-hcflow-rescaling
    rrdb_8x, srflow_8x  the 8x pair (L=4)                 -> demo-8x-rrdb, demo-8x
    esrgan_8x        ESRGAN 8x        from rrdb_8x        -> demo-8x-esrgan (Table 2's 8x half has one, trained by the paper)

Every stage trains on `data/cache/trainset/train` (`srflow data build-train`) and validates on `data/demo/val` (the
held-out splits are never seen in training). State lives in `<runs>/<stage>/` (git-ignored `runs/campaign` by default):
the trainer's checkpoints, `best.pt`, logs, and `budget/cpu_<h>h.pt` copies taken when the stage's CPU clock passes
1/8, 1/4, 1/2, 1, 2, 4, ... CPU-hours (`budget/budget.jsonl` records step and CPU seconds of each). SIGTERM/SIGINT save
and stop after the current step; running the same command again continues. The machine, precision and git commit of
every checkpoint are in its `run_info`.

A session's machine is not always the next session's (a new machine starts with the repository alone), so state under
`<runs>` can vanish between sessions. `carry` copies what resumes each started stage into `data/campaign_state/<stage>/`
(committed at the end of a session): its newest checkpoint (model, optimizer, RNG, counters, logs: an exact resume),
`best.pt`, `DONE` and `budget/budget.jsonl` (the snapshot copies themselves are not carried: evaluate them with
`tools/campaign_eval.py` first). `run`, `status` and `bundle` restore a carried stage into `<runs>` when `<runs>` holds no
checkpoint of it (never with SMOKE=1); local state is never overwritten.

`bundle` exports a finished stage as its bundled model (`Stage.bundle`): the RRDB's `best.pt` (the checkpoint the SRFlow
and ESRGAN stages started from), every other stage's last checkpoint (the end of its schedule; validation has 3 crops,
too few to pick by). The file and training logs it replaces are first renamed to `<name>-v1` (`demo-4x-v1`,
`demo_4x_v1.safetensors`, `demo-4x-v1.metrics.csv`, ...), never overwritten; bundling the same checkpoint again does nothing.
"""
from __future__ import annotations
import argparse, json, os, shutil, sys, time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from srflow_nb.checkpoints import list_checkpoints, load_checkpoint, save_checkpoint  # noqa: E402
from srflow_nb.core import InputError, atomic_write  # noqa: E402
from srflow_nb.train import TrainConfig, Trainer, run_task, task_class  # noqa: E402

DATA, VAL = ROOT / "data/cache/trainset/train", ROOT / "data/demo/val"
SMOKE_DATA = ROOT / "data/demo/train"                          # SMOKE=1 trains on the demo images (no built training set needed)
SMALL_8X = dict(scale=8, L=4)                                 # the small model at 8x: one more flow level
MILESTONES_H = tuple(2.0 ** k for k in range(-3, 6))       # 1/8 ... 32 CPU-hours


@dataclass
class Stage:
    name: str
    bundle: str                                   # the bundled name the stage's best checkpoint becomes
    make: Callable[[dict], tuple]                 # overrides -> (task, cfg)
    after: tuple = ()                             # stages that must be finished first (and whose best.pt it starts from)
    gate: Callable[[list], str | None] | None = None   # val history -> None (pass) or why the next stages must wait
    notes: str = ""
    extra: dict = field(default_factory=dict)
    bundle_from: str = "last"                     # "last": the final checkpoint; "best": best.pt


def _srflow(stage: str, preset: str, model: str | dict, **fixed):
    "An SRFlow-family stage; `model` is an SRFlowConfig preset name or a dict of its fields (written beside the run)."
    def make(over: dict):
        cfg = getattr(TrainConfig, preset)(**{**fixed, **over})
        name = model
        if isinstance(model, dict):
            from srflow_nb.model import SRFlowConfig
            name = Path(cfg.out_dir) / "model_preset.json"
            name.parent.mkdir(parents=True, exist_ok=True)
            name.write_text(json.dumps(SRFlowConfig.small_4x(**model).to_dict(), sort_keys=True))
        return task_class(stage).create(cfg, str(name), lpips=True), cfg
    return make


def _esrgan(init: str, **fixed):
    "The ESRGAN stage: its generator starts from `init` (the L1 RRDB stage's best.pt), loaded by ESRGANTask itself."
    def make(over: dict):
        from srflow_nb.esrgan import ESRGANTask, esrgan_demo
        cfg = esrgan_demo(**{**fixed, **over})
        return ESRGANTask.create(cfg, init, lpips=True), cfg
    return make


def _hcflow(preset: str, **fixed):
    def make(over: dict):
        from srflow_nb.hcflow_train import HCFLOW_PRESETS, HCFlowTask
        f, model = HCFLOW_PRESETS[preset]
        cfg = f(**{**fixed, **over})
        return HCFlowTask.create(cfg, model, lpips=True), cfg
    return make


def _beats_bicubic(key: str, min_gain: float):
    def gate(val: list):
        if not val: return "no validation yet"
        best = max(val, key=lambda r: r[key])
        gain = best[key] - best["bicubic_psnr"]
        return None if gain >= min_gain else f"best {key} {best[key]:.2f} dB is only {gain:+.2f} dB above bicubic (< {min_gain} dB)"
    return gate


def stages(runs: Path) -> dict[str, Stage]:
    r = lambda name: str(runs / name)                       # noqa: E731
    best = lambda name: str(runs / name / "best.pt")        # noqa: E731
    return {s.name: s for s in [
        Stage("rrdb", "demo-4x-rrdb", _srflow("rrdb", "demo_rrdb", "small_4x", iterations=20_000, out_dir=r("rrdb")),
              gate=_beats_bicubic("rrdb_psnr", 0.5), bundle_from="best"),
        Stage("srflow", "demo-4x", _srflow("flow", "demo_flow", "small_4x", iterations=60_000, amp=None, init_from=best("rrdb"),
                                           out_dir=r("srflow")), after=("rrdb",)),
        Stage("esrgan", "demo-4x-esrgan", _esrgan(best("rrdb"), iterations=5_000, out_dir=r("esrgan")), after=("rrdb",)),
        Stage("hcflow", "demo-4x-hcflow", _hcflow("demo-4x-hcflow", iterations=24_000, best_metric="-t0.9_lpips", out_dir=r("hcflow")),
              notes="best.pt on tau=0.9 LPIPS, not tau=0 PSNR: the objective and schedule match the official code (/work/notes_hcflow.md)"),
        Stage("hcflow_rescaling", "demo-4x-hcflow-rescaling", _hcflow("demo-4x-hcflow-rescaling", iterations=12_000,
                                                                      out_dir=r("hcflow_rescaling"))),
        Stage("rrdb_8x", "demo-8x-rrdb", _srflow("rrdb", "demo_rrdb", SMALL_8X, scale=8, iterations=15_000, patch_size=128,
                                                 out_dir=r("rrdb_8x")), gate=_beats_bicubic("rrdb_psnr", 0.3)),
        Stage("srflow_8x", "demo-8x", _srflow("flow", "demo_flow", SMALL_8X, scale=8, iterations=40_000, amp=None, patch_size=128,
                                              dequant_scale=8 / 256, init_from=best("rrdb_8x"), out_dir=r("srflow_8x")), after=("rrdb_8x",),
              notes="the paper's dequantisation noise (8 grey levels wide, App. A), which the 4x flow stages predate"),
        Stage("esrgan_8x", "demo-8x-esrgan", _esrgan(best("rrdb_8x"), scale=8, patch_size=128, iterations=5_000, out_dir=r("esrgan_8x")),
              after=("rrdb_8x",), notes="Table 2's 8x ESRGAN row: the paper trained its own 8x RRDB and ESRGAN with the authors' code"),
    ]}


SMOKE = dict(iterations=4, batch_size=2, log_every=1, val_every=2, ckpt_every_steps=2, ckpt_every_s=None)


def _overrides(stage: Stage, smoke: bool) -> dict:
    o = dict(threads=1)
    if smoke:
        o.update(SMOKE)
        if stage.name in ("rrdb", "esrgan"): o["patch_size"] = 64
    return o


def _state(out: Path) -> dict | None:
    "Step, CPU-hours and the last validation of a stage's newest checkpoint (None: not started)."
    cks = list_checkpoints(out / "checkpoints") if (out / "checkpoints").is_dir() else []
    if not cks: return None
    ck = load_checkpoint(cks[-1])
    return dict(step=ck["step"], iterations=ck["config"]["iterations"], cpu_h=round(ck["cpu_time"] / 3600, 3),
                val=(ck.get("val_history") or [{}])[-1], skipped=ck["skipped"])


def liveness(out: Path) -> str:
    "'running (pid N)', 'CRASHED: <error>' (the exception that stopped it), 'stopped (pid N is gone)' (killed) or 'paused'."
    if (out / "CRASHED").exists(): return "CRASHED: " + (out / "CRASHED").read_text().strip()
    if (out / "RUNNING").exists():
        pid = json.loads((out / "RUNNING").read_text())["pid"]
        try: os.kill(pid, 0); return f"running (pid {pid})"
        except ProcessLookupError: return f"stopped (pid {pid} is gone)"
        except PermissionError: return f"running (pid {pid})"
    return "paused"


CARRIED = ROOT / "data/campaign_state"                                   # what `carry` commits for the next machine


def _copy(src: Path, dst: Path):
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dst, lambda p: shutil.copyfile(src, p))


def _same_weights(a: dict, b: dict) -> bool:
    "Two trainer checkpoints of the same step holding the same module weights (best.pt taken at the newest checkpoint's step)."
    return a["step"] == b["step"] and a["modules"].keys() == b["modules"].keys() and all(
        a["modules"][n].keys() == b["modules"][n].keys() and all(torch.equal(v, b["modules"][n][k]) for k, v in a["modules"][n].items())
        for n in a["modules"])


def carry(runs: Path, to: Path, names: list[str]) -> list[str]:
    """Copy what resumes each started stage in `names` from `runs` to `to`: the newest checkpoint as `last.pt`, `best.pt`
    (unless it holds the newest checkpoint's weights: `best_is_last`, restored from `last.pt`), `DONE`,
    `budget/budget.jsonl`, and `carried.json` (step, CPU-hours, the checkpoint's file name and machine). A finished
    stage's checkpoints go without their optimizer state (what later stages, `bundle` and `campaign_eval` read is all
    there). A stage whose carried checkpoint is already the newest is left as it is. Returns one line per stage carried."""
    said = []
    for n in names:
        out, dst = runs / n, to / n
        cks = list_checkpoints(out / "checkpoints") if (out / "checkpoints").is_dir() else []
        if not cks: continue
        ck = load_checkpoint(cks[-1])
        info = dict(stage=n, checkpoint=cks[-1].name, step=ck["step"], cpu_h=round(ck["cpu_time"] / 3600, 3), done=(out / "DONE").exists(),
                    machine=ck["run_info"]["machine"].get("cpu_kind"), git_sha=ck["run_info"].get("git_sha"),
                    best_is_last=(out / "best.pt").exists() and _same_weights(load_checkpoint(out / "best.pt"), ck))
        info["optimizer_state"] = not info["done"]
        if (dst / "carried.json").exists() and json.loads((dst / "carried.json").read_text()) == info: continue
        for f in ("last.pt", "best.pt", "DONE", "budget/budget.jsonl"):
            src = cks[-1] if f == "last.pt" else out / f
            if not src.exists() or (f == "best.pt" and info["best_is_last"]): (dst / f).unlink(missing_ok=True)
            elif info["done"] and f.endswith(".pt"):                  # finished: never resumed, so no optimizer state (a third of the size)
                dst.mkdir(parents=True, exist_ok=True); save_checkpoint(dst / f, {**load_checkpoint(src), "optimizers": {}, "scalers": {}})
            else: _copy(src, dst / f)
        atomic_write(dst / "carried.json", lambda p: Path(p).write_text(json.dumps(info, indent=1) + "\n"))
        said.append(f"[carry] {n}: step {info['step']} ({info['cpu_h']} CPU-h{', done' if info['done'] else ''}) -> {dst}")
    return said


def restore(runs: Path, src: Path, names: list[str]) -> list[str]:
    """Put each carried stage of `names` back under `runs` where `runs` holds no checkpoint of it (never over local state):
    `last.pt` under its own step's name in `checkpoints/`, and `best.pt`, `DONE`, `budget/budget.jsonl` beside it."""
    said = []
    for n in names:
        c, out = src / n, runs / n
        if not (c / "carried.json").exists() or ((out / "checkpoints").is_dir() and list_checkpoints(out / "checkpoints")): continue
        info = json.loads((c / "carried.json").read_text())
        _copy(c / "last.pt", out / "checkpoints" / info["checkpoint"])
        if info.get("best_is_last"): _copy(c / "last.pt", out / "best.pt")
        for f in ("best.pt", "DONE", "budget/budget.jsonl"):
            if (c / f).exists(): _copy(c / f, out / f)
        said.append(f"[restore] {n}: step {info['step']} ({info['cpu_h']} CPU-h) from {c}")
    return said


def _snapshot(tr: Trainer, out: Path, passed: set, milestones=MILESTONES_H):
    "Keep a copy of the newest checkpoint for every budget milestone the stage's CPU clock has passed."
    cpu_h = tr.clock.cpu() / 3600
    for m in milestones:
        tag = f"cpu_{m:g}h"
        if cpu_h < m or tag in passed: continue
        path = tr.save()
        dst = out / "budget" / f"{tag}.pt"
        _copy(path, dst)
        with open(out / "budget" / "budget.jsonl", "a") as f:
            f.write(json.dumps(dict(milestone_h=m, step=tr.step, cpu_s=round(tr.clock.cpu(), 1), file=dst.name,
                                    val=(tr.val_history or [{}])[-1])) + "\n")
        passed.add(tag)
        print(f"[{out.name}] budget {m:g} CPU-h passed at step {tr.step}: {dst}", flush=True)


def run_stage(stage: Stage, runs: Path, smoke: bool, chunk: int, milestones=MILESTONES_H) -> Trainer:
    "Train one stage through `train.run_task`, taking the budget snapshots and logging a line after every chunk of steps."
    out = runs / stage.name
    for dep in stage.after:
        if not (runs / dep / "best.pt").exists(): raise InputError(f"stage {stage.name} starts from {dep}'s best.pt, which {runs / dep} has not written yet")
    task, cfg = stage.make(_overrides(stage, smoke))
    torch.set_num_threads(cfg.threads or 1)
    budget = out / "budget" / "budget.jsonl"
    passed = {json.loads(l)["file"][:-3] for l in budget.read_text().splitlines()} if budget.exists() else set()
    def after_chunk(tr: Trainer):
        _snapshot(tr, out, passed, milestones)
        v = (tr.val_history or [{}])[-1]
        print(f"[{stage.name}] step {tr.step}/{cfg.iterations} {tr.clock.cpu() / 3600:.3f} CPU-h "
              + " ".join(f"{k}={x:.4g}" for k, x in v.items() if k != "step" and isinstance(x, (int, float))), flush=True)   # *_diverged: ints
    alive, crashed = out / "RUNNING", out / "CRASHED"
    out.mkdir(parents=True, exist_ok=True); crashed.unlink(missing_ok=True)
    alive.write_text(json.dumps(dict(pid=os.getpid(), started=time.strftime("%Y-%m-%dT%H:%M:%S"))))
    try:
        tr = run_task(task, str(SMOKE_DATA if smoke else DATA), str(VAL), val_crop=256 if not smoke else 64,
                      device="cpu", progress=False, after_chunk=after_chunk, chunk=cfg.val_every or chunk)
    except BaseException as e:                                    # `status` says so, instead of "paused"
        crashed.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {type(e).__name__}: {e}"[:2000]); raise
    finally: alive.unlink(missing_ok=True)
    if tr.step >= cfg.iterations:
        (out / "DONE").write_text(json.dumps(dict(step=tr.step, cpu_s=round(tr.clock.cpu(), 1), val=(tr.val_history or [{}])[-1])))
    return tr


LOGS = ("metrics.csv", "val.csv", "config.json", "model_config.json")   # a run's files copied beside its bundled weights
KEPT = LOGS + ("data.json",)                                             # what moves to <name>-v1 with the weights
LIMIT = 25 * 2 ** 20                                                     # larger files are bundled with fp16 conv kernels


def v1_file(fname: str) -> str:
    "The file name the bundled `fname` keeps when a campaign model replaces it: demo_4x.safetensors -> demo_4x_v1.safetensors."
    p = Path(fname)
    return f"{p.stem}_v1{p.suffix}"


def bundle(stage: Stage, runs: Path, out: Path, smoke: bool = False) -> Path:
    "Export a finished stage as `stage.bundle` in `out`, first renaming what it replaces to `<name>-v1` (never overwritten)."
    from export_demo import holds_checkpoint                     # tools/ (this script's folder)
    from srflow_nb.checkpoints import PRETRAINED, export_model
    run, name = runs / stage.name, stage.bundle
    if not (run / "DONE").exists(): raise InputError(f"stage {stage.name} is not finished ({run / 'DONE'} is missing): nothing to bundle")
    if name not in PRETRAINED: raise InputError(f"{name} is no bundled name yet: add it to its family record's `bundled` first")
    src = run / "best.pt" if stage.bundle_from == "best" else Path(list_checkpoints(run / "checkpoints")[-1])
    ck = load_checkpoint(src)
    dest = out / PRETRAINED[name]
    if holds_checkpoint(dest, ck): print(f"[bundle] {name}: {dest} already holds {src} (step {ck['step']})"); return dest
    if dest.exists():
        old = out / v1_file(dest.name)
        if old.exists(): raise InputError(f"{dest} would move to {old}, which exists: refusing to overwrite the bundled history")
        if PRETRAINED.get(f"{name}-v1") != old.name:            # the replaced model must stay loadable by name
            raise InputError(f"{dest.name} would move to {old.name}, but `{name}-v1` is not registered to it: add "
                             f"\"{name}-v1\": \"{old.name}\" to its family record's `bundled` first (then nbdev_export)")
    new = dest.with_name(dest.stem + ".new" + dest.suffix)               # exported first: a failed export leaves the bundle as it was
    export_model(ck, new)
    if new.stat().st_size > LIMIT: export_model(ck, new, half=True)
    if dest.exists():
        dest.rename(old)
        for suffix in KEPT:
            if (out / f"{name}.{suffix}").exists(): (out / f"{name}.{suffix}").rename(out / f"{name}-v1.{suffix}")
        print(f"[bundle] {name}: the previous model kept as {name}-v1 ({old.name})")
    new.rename(dest)
    for suffix in LOGS:
        if (run / suffix).exists(): shutil.copyfile(run / suffix, out / f"{name}.{suffix}")
    data = SMOKE_DATA if smoke else DATA
    images = sorted(p.name for p in data.iterdir() if p.suffix.lower() == ".png") if data.is_dir() else []
    atomic_write(out / f"{name}.data.json", lambda p: Path(p).write_text(json.dumps(dict(   # what the model card says it was trained on
        stage=stage.name, train=str(data.relative_to(ROOT)), manifest="data/trainset/manifest.json", train_images=len(images),
        val=str(VAL.relative_to(ROOT)), checkpoint=src.name, step=ck["step"]), indent=1) + "\n"))
    print(f"[bundle] {name}: {src} (step {ck['step']}, {ck.get('cpu_time', 0) / 3600:.2f} CPU-h) -> {dest} ({dest.stat().st_size / 2 ** 20:.1f} MB)")
    return dest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("run", "status", "bundle", "carry"))
    ap.add_argument("--stage", nargs="*", help="only these stages (default: every unfinished one, in order)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/campaign")
    ap.add_argument("--out", type=Path, default=ROOT / "srflow_nb/pretrained", help="bundle: where the bundled models live")
    ap.add_argument("--chunk", type=int, default=1000, help="steps between budget checks for stages without val_every")
    ap.add_argument("--milestones", type=float, nargs="*", default=MILESTONES_H, help="CPU-hours at which to keep a checkpoint copy")
    ap.add_argument("--carried", type=Path, default=CARRIED, help="carry: where to copy each stage's resume state; run/status/bundle: where to restore it from")
    a = ap.parse_args(argv)
    smoke = os.environ.get("SMOKE") == "1"
    all_stages = stages(a.runs)
    names = a.stage or list(all_stages)
    if (bad := sorted(set(names) - set(all_stages))): sys.exit(f"campaign: unknown stage(s) {bad}; known: {list(all_stages)}")
    if a.command == "carry":
        print("\n".join(carry(a.runs, a.carried, names)) or "[carry] nothing new to carry")
        return 0
    if not smoke:                                               # smoke runs are wiring checks in scratch folders
        for line in restore(a.runs, a.carried, list(all_stages)): print(line, flush=True)   # every stage: a later one needs its `after`
    if a.command == "status":
        for n in names:
            st, done = _state(a.runs / n), (a.runs / n / "DONE").exists()
            print(f"{n:17s} {'done' if done else liveness(a.runs / n) if st else 'not started':15s} {json.dumps(st) if st else ''}")
        return 0
    if a.command == "bundle":
        if not a.stage: sys.exit("campaign: bundle needs --stage (the finished stages to bundle)")
        for n in names: bundle(all_stages[n], a.runs, a.out, smoke)
        return 0
    if not smoke and not DATA.is_dir(): sys.exit(f"campaign: {DATA} is missing; build it with `srflow data build-train`")
    for n in names:
        s = all_stages[n]
        if (a.runs / n / "DONE").exists(): continue
        tr = run_stage(s, a.runs, smoke, a.chunk, tuple(a.milestones))
        if tr.stop_requested: return 0
        if s.gate and not smoke and (why := s.gate(tr.val_history)):
            sys.exit(f"campaign: stage {n} finished but does not pass its check: {why}; the stages after it wait")
    return 0


if __name__ == "__main__":
    try: sys.exit(main())
    except InputError as e: sys.exit(f"campaign: {e}")
