"""Held-out metrics of the campaign's checkpoints at each doubling of their CPU budget (issue 24, for 29_repro.scaling).

    python tools/campaign_eval.py                         # every budget snapshot not evaluated yet, every stage
    python tools/campaign_eval.py --stage rrdb srflow     # some stages
    python tools/campaign_eval.py --runs /work/runs/campaign --out data/results/campaign/quick

Every snapshot `<runs>/<stage>/budget/cpu_<h>h.pt` written by `tools/campaign.py` is loaded through the one loader
(`checkpoints.model_from_checkpoint`), wrapped as a super-resolver (`superresolvers.wrap_model`) and evaluated by the
same runner as the reproduction notebooks on held-out split 2 (20 crops of 256 px from packages with no training image;
`demo.demo_dataset("heldout2")`), with bicubic beside it: deterministic models once, stochastic ones at tau = 0 and 0.9
with 2 samples (seed 0, the seed rule of `core`); an HCFlow rescaling model by its round trip (`heldout2_rescaling`).
One row per (stage, snapshot, method, temperature) goes to `<out>/campaign_eval.csv`, with the snapshot's step and CPU
seconds (from `budget.jsonl`), the machine and the git commit; the bundled model the stage will replace is evaluated the
same way once (`snapshot` = its spec, step -1) as the reference: evaluate it before `campaign.py bundle` replaces it,
then relabel its rows `-v1` and point `BUNDLED` at the `-v1` name.
A finished stage (`DONE`) adds its last checkpoint (milestone NaN). Resumable: snapshots already in the CSV are skipped.
A stage trained again from scratch (its run lost with its machine) is re-evaluated with `--redo STAGE`: its old rows move
to `<out>/campaign_eval_retired.csv` (appended, with the reason), never deleted. A snapshot whose file is gone (budget
copies are not carried to a new machine: `campaign.py carry`) is reported and skipped.
"""
from __future__ import annotations
import argparse, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from srflow_nb import metrics as M  # noqa: E402
from srflow_nb.checkpoints import list_checkpoints, load_model_any, model_from_checkpoint  # noqa: E402
from srflow_nb.core import atomic_write, nonfinite_samples, run_info, saturate  # noqa: E402
from srflow_nb.hcflow_train import rescale_roundtrip  # noqa: E402
from srflow_nb.resize import downscale  # noqa: E402
from srflow_nb.demo import demo_dataset  # noqa: E402
from srflow_nb.evaluate import bicubic_upsampler, evaluate  # noqa: E402
from srflow_nb.superresolvers import knob, load_superresolver, wrap_model  # noqa: E402

METRICS = ["psnr", "lpips", "lr_psnr"]
BUNDLED = {"rrdb": "rrdb:demo-4x-rrdb-v1", "srflow": "srflow:demo-4x-v1", "esrgan": "esrgan:demo-4x-esrgan-v1",   # what each stage replaced
           "hcflow": "hcflow:demo-4x-hcflow-v1", "hcflow_rescaling": "demo-4x-hcflow-rescaling-v1"}
TEMPERATURES = [0.0, 0.9]


def snapshots(runs: Path, stages: list[str] | None) -> list[dict]:
    "Every budget snapshot of the campaign: stage, milestone (CPU-h), step, CPU seconds, file."
    out = []
    for log in sorted(runs.glob("*/budget/budget.jsonl")):
        stage = log.parent.parent.name
        if stages and stage not in stages: continue
        for line in log.read_text().splitlines():
            r = json.loads(line)
            out.append(dict(stage=stage, milestone_h=r["milestone_h"], step=r["step"], cpu_s=r["cpu_s"], file=str(log.parent / r["file"])))
        done = log.parent.parent / "DONE"
        if done.exists():                                          # a finished stage: its last checkpoint too
            d, last = json.loads(done.read_text()), list_checkpoints(log.parent.parent / "checkpoints")[-1]
            out.append(dict(stage=stage, milestone_h=float("nan"), step=d["step"], cpu_s=d["cpu_s"], file=str(last)))
    return out


def heldout2_means(sr, method: str, limit: int | None = None, bicubic: bool = True) -> pd.DataFrame:
    """Mean PSNR / LPIPS / LR-PSNR of super-resolver `sr` on held-out split 2 (its 16-px-multiple crops): one row per method
    and temperature, with `diverged`, the number of samples whose reverse pass diverged (`evaluate`'s per-sample column;
    they are scored as the saturated images they become: failures count, they are not dropped)."""
    ds = demo_dataset("heldout2", None, limit, 16)
    temps = TEMPERATURES if knob(sr) == "temperature" else ()
    df = evaluate(sr, ds, sr.scale, temps, 2 if sr.stochastic else 1, metrics=METRICS, seed=0, method=method,
                  baselines={"bicubic": bicubic_upsampler(sr.scale)} if bicubic else None, progress=False, device="cpu")
    g = df.groupby(["method", "temperature"], dropna=False)
    return g[METRICS].mean().join(g.diverged.sum()).reset_index().assign(images=len(ds))[["method", "temperature", *METRICS, "images", "diverged"]]


def heldout2_rescaling(model, method: str, limit: int | None = None) -> pd.DataFrame:
    """An HCFlow rescaling model on held-out split 2 as `srflow rescale roundtrip` runs it: its own 8-bit LR, upscaled at
    τ=0. One row: HR PSNR / LPIPS of the rebuilt image and `lr_psnr`, its LR against the bicubic LR (not SR's LR-PSNR);
    `diverged` counts crops whose rebuilt HR had NaN/Inf values (scored saturated, as `evaluate` does)."""
    ds, rows = demo_dataset("heldout2", None, limit, 16), []
    for it in ds:
        hr = it["hr"][None]
        with torch.inference_mode(): lr8, back = rescale_roundtrip(model, hr, temperature=0.0)
        bad = bool(nonfinite_samples(back).any())
        back = saturate(back).clamp(0, 1)
        rows.append(dict(psnr=float(M.psnr(back, hr)[0]), lpips=float(M.lpips(back, hr)[0]),
                         lr_psnr=float(M.psnr(lr8, downscale(hr, model.scale, quantize=True))[0]), diverged=int(bad)))
    d = pd.DataFrame(rows)
    return pd.DataFrame([dict(method=method, temperature=0.0, **d[METRICS].mean(), images=len(ds), diverged=int(d.diverged.sum()))])


def evaluate_snapshot(s: dict, limit: int | None = None) -> pd.DataFrame:
    model = load_model_any(s["file"].split(":")[-1], "cpu") if s.get("bundled") else model_from_checkpoint(s["file"])   # bundled: [family:]name
    if getattr(getattr(model, "config", None), "kind", "sr") == "rescaling": mean = heldout2_rescaling(model.eval(), s["stage"], limit)
    else:
        sr = load_superresolver(s["file"], "cpu") if s.get("bundled") else wrap_model(model)
        sr.name = s["stage"]
        mean = heldout2_means(sr, s["stage"], limit)
    return mean.assign(**{k: s[k] for k in ("stage", "milestone_h", "step", "cpu_s")}, cpu_h=round(s["cpu_s"] / 3600, 4),
                       snapshot=s["file"] if s.get("bundled") else Path(s["file"]).name)


def retire(done: pd.DataFrame, stages: list[str], why: str, retired: Path) -> pd.DataFrame:
    "Move the rows of `stages` from `done` to the CSV `retired` (appended, with `why`); returns the rows kept."
    old = done.stage.isin(stages) if len(done) else pd.Series([], dtype=bool)
    if old.any():
        before = pd.read_csv(retired) if retired.exists() else pd.DataFrame()
        both = pd.concat([before, done[old].assign(retired_why=why)], ignore_index=True)
        atomic_write(retired, lambda p: both.to_csv(p, index=False))
        print(f"[campaign_eval] {int(old.sum())} rows of {sorted(set(done.stage[old]))} moved to {retired}", flush=True)
    return done[~old].reset_index(drop=True) if len(done) else done


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/campaign")
    ap.add_argument("--stage", nargs="*")
    ap.add_argument("--out", type=Path, default=ROOT / "data/results/campaign/quick")   # quick/: outside the notebooks' input stamp
    ap.add_argument("--limit", type=int, default=None, help="first N held-out crops only (a check of the wiring)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--redo", nargs="*", default=[], help="stages trained again: their old rows move to campaign_eval_retired.csv")
    ap.add_argument("--why", default="", help="--redo: why the old rows were retired (kept beside them)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    info = run_info("cpu")
    csv = a.out / "campaign_eval.csv"
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    if a.redo:
        if not a.why: sys.exit("campaign_eval: --redo needs --why (kept beside the retired rows)")
        done = retire(done, a.redo, a.why, a.out / "campaign_eval_retired.csv")
        atomic_write(csv, lambda p: done.to_csv(p, index=False))
    snaps = snapshots(a.runs, a.stage)
    for stage in sorted({s["stage"] for s in snaps} & set(BUNDLED)):     # the bundled model each stage will replace: the reference row
        snaps.insert(0, dict(stage=stage, milestone_h=float("nan"), step=-1, cpu_s=float("nan"), file=BUNDLED[stage], bundled=True))
    for s in snaps:
        if len(done) and ((done.stage == s["stage"]) & (done.snapshot == Path(s["file"]).name)).any(): continue
        if not s.get("bundled") and not Path(s["file"]).exists():
            print(f"[campaign_eval] {s['stage']}: {s['file']} is gone (not carried to this machine): skipped", flush=True); continue
        rows = evaluate_snapshot(s, a.limit).assign(cpu_kind=info["machine"]["cpu_kind"], git_sha=info["git_sha"], threads=a.threads)
        done = pd.concat([done, rows], ignore_index=True)
        atomic_write(csv, lambda p: done.to_csv(p, index=False))
        print(rows.drop(columns=["git_sha"]).to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
