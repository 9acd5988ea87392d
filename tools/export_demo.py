"""Export the demo campaign's best checkpoints as the bundled `demo-4x` / `demo-4x-rrdb` models, with a model card.

    python tools/export_demo.py --rrdb runs/demo-4x-rrdb/best.pt --flow runs/demo-4x/best.pt --out srflow_nb/pretrained
    python tools/export_demo.py --card_only      # re-write MODEL_CARD.md from demo_eval.json and the *.val.csv logs

    python tools/export_demo.py --hcflow runs/demo-4x-hcflow   # bundle an HCFlow run (what `tools/train_hcflow.sh export` does)
    python tools/export_demo.py --sr3 runs/demo-4x-sr3         # after the SR3 model is exported: its run files + card (`tools/train_sr3.sh export`)

The card's `demo-4x-esrgan` section (bundled by `tools/train_esrgan.sh export` + its run's config/metrics/val files copied as
demo-4x-esrgan.*) is written from those files and the Table 2 analog's table2.csv (`esrgan_card`); the HCFlow sections
(`hcflow_card`) from the bundled HCFlow weights' metadata and their run files copied as demo-4x-hcflow[-rescaling].*; the
`demo-4x-sr3` section (`sr3_card`) likewise, plus the SR3 comparison's held-out results (nbs/28_repro.sr3) when present.

Evaluates bicubic, the RRDB and SRFlow (temperatures 0 and 0.9, fixed seed) on the demo dataset's held-out test split
(PSNR, SSIM, LPIPS, LR-PSNR, RGB, no border crop) and writes demo_4x_rrdb.safetensors, demo_4x.safetensors (conv kernels
in fp16 when the fp32 file would exceed 25 MB), demo_eval.json, the training logs/configs next to them, and MODEL_CARD.md,
whose every number is read from demo_eval.json and the validation logs (which checkpoint is bundled, and whether it is
the best one on validation, is stated from the val CSV).
"""
import json, shutil, sys
from pathlib import Path

import pandas as pd
import torch
from fastcore.script import call_parse

from srflow_nb.checkpoints import PRETRAINED, export_model, list_checkpoints, load_model
from srflow_nb.core import atomic_write, run_info
from srflow_nb.checkpoints import load_checkpoint
from srflow_nb.train import TrainConfig

LIMIT = 25 * 2 ** 20


def evaluate(rrdb, flow, scale=4, temperatures=(0.0, 0.9), seed=0):
    "Mean PSNR/SSIM/LPIPS/LR-PSNR on the held-out test split through `srflow_nb.evaluate` (as the reproduction notebooks)."
    import pandas as pd
    from srflow_nb.demo import demo_dataset, rrdb_upsampler
    from srflow_nb.evaluate import bicubic_upsampler, evaluate as run, summarize
    from srflow_nb.superresolvers import SRFlowSR
    metrics = ["psnr", "ssim", "lpips", "lr_psnr"]
    ds = demo_dataset("test")
    base = {"bicubic": bicubic_upsampler(scale)}
    if rrdb is not None: base["RRDB (demo-4x-rrdb)"] = rrdb_upsampler(rrdb)
    df = run(SRFlowSR(flow) if flow is not None else None, ds, scale, temperatures, 1, metrics=metrics, baselines=base,
             method="SRFlow (demo-4x)", seed=seed, device="cpu", progress=False)
    rows = {}
    for (meth, t), r in summarize(df, metrics).iterrows():
        rows[meth if pd.isna(t) else f"{meth} t={t:g}"] = {k: float(v) for k, v in r.items()}
    return rows, len(ds)


def holds_checkpoint(path: Path, ck: dict) -> bool:
    """Whether the exported model file `path` was written from checkpoint `ck` (same step and CPU time in its metadata).
    Compared by metadata, not bytes: safetensors writes the metadata in no fixed order, so two exports differ byte-wise."""
    from safetensors import safe_open
    if not Path(path).exists(): return False
    with safe_open(str(path), "pt") as f: meta = f.metadata() or {}
    return meta.get("step") == str(ck["step"]) and meta.get("cpu_time_s") == f"{ck.get('cpu_time', 0.0):.0f}"


NOTES = "## Notes written at training time"   # hand-written history kept verbatim below the generated card
BEST_METRIC = {"demo-4x-rrdb": "rrdb_psnr", "demo-4x": "t0_psnr"}


def selection(name: str, val_csv: Path, step: int, metric: str) -> str:
    "One sentence, from the validation log: the bundled step's `metric` ('-m': lower is better, the trainer's `best_metric` form) and whether it is the best validated step."
    val, lower = pd.read_csv(val_csv), metric.startswith("-")
    metric = metric.lstrip("-")
    if step not in set(val["step"]): return f"`{name}`: the bundled step {step} has no validation row in `{val_csv.name}`."
    here, best = float(val.loc[val["step"] == step, metric].iloc[0]), val.loc[val[metric].idxmin() if lower else val[metric].idxmax()]
    where = "the last validated step" if step == int(val["step"].max()) else "not the last validated step"
    if (float(best[metric]) >= here) if lower else (float(best[metric]) <= here):
        return f"`{name}`: bundled step {step} ({where}) is the best of {len(val)} validations on the val split ({metric} {here:.3f})."
    return (f"`{name}`: bundled step {step} ({where}) is **not** the best on the val split: {metric} {here:.3f} there, "
            f"{float(best[metric]):.3f} at step {int(best['step'])} ({len(val)} validations; `{val_csv.name}`).")


def trained_on(out: Path, name: str, n_train: int, script: str) -> dict:
    """Where the bundled `name` was trained: its `<name>.data.json` (written by `tools/campaign.py bundle`: the built
    training set) or, without one, the demo dataset's train split (`n_train` images) by `script`."""
    f = out / f"{name}.data.json"
    if not f.exists():
        return dict(n=n_train, how=f"`{script}`", where="the demo dataset's **train** split", folder="data/demo/train", campaign=False)
    d = json.loads(f.read_text())
    return dict(n=d["train_images"], how=f"`python tools/campaign.py run` (issue 24's campaign, stage `{d['stage']}`)",
                where="the built **training set**", folder=f"{d['train']}, listed in {d['manifest']}", campaign=True)


def card(out: Path, res: dict, facts: dict, n_test: int, n_train: int) -> str:
    "MODEL_CARD.md text: every number from `res`/`facts` (demo_eval.json) and the val CSVs in `out`."
    t = trained_on(out, "demo-4x", n_train, "bash tools/train_demo.sh")
    n_train = t["n"]
    lines = ["# Bundled demo models: `demo-4x-rrdb` and `demo-4x`", "",
             f"Trained on this project's CPU with {t['how']} (srflow_nb.train) on {t['where']} "
             f"({n_train} images in {t['folder']}, HR patches with flips/rotations, LR by MATLAB bicubic), validated every "
             f"{facts[next(iter(facts))]['config']['val_every']} steps on the **val** split; metrics below on the held-out **test** split "
             f"({n_test} images, RGB, no border crop, 8-bit rounding).", "",
             "| model | file | steps | CPU hours | skipped steps | size |", "|---|---|---|---|---|---|"]
    for name, f in facts.items():
        lines.append(f"| `{name}` | `{PRETRAINED[name]}` | {f['step']} | {f['cpu_hours']} | {f['skipped']} | {f['size_mb']} MB |")
    lines += ["", "Which checkpoint is bundled (from the validation logs):", ""]
    for name, f in facts.items():
        if (out / f"{name}.val.csv").exists(): lines.append("- " + selection(name, out / f"{name}.val.csv", f["step"], BEST_METRIC[name]))
    lines += ["", "| method | PSNR | SSIM | LPIPS | LR-PSNR |", "|---|---|---|---|---|"]
    for k, m in res.items():
        lines.append(f"| {k} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m.get('lpips', float('nan')):.4f} | {m['lr_psnr']:.2f} |")
    if "bicubic" in res and "RRDB (demo-4x-rrdb)" in res:
        gain = res["RRDB (demo-4x-rrdb)"]["psnr"] - res["bicubic"]["psnr"]
        lines += ["", f"RRDB gain over bicubic on the held-out split: {gain:+.2f} dB PSNR (target of the training campaign: >= 1 dB)."]
    lines += ["", "Usage: `from srflow_nb.checkpoints import load_pretrained; load_pretrained('demo-4x')` (SRFlow), "
              "`load_pretrained('demo-4x-rrdb')` (RRDB baseline, `lr -> sr` via `.sr(lr)`).", "",
              f"Caveat: a demo model trained for a few CPU-hours on {n_train} images; it exercises every code path, it is not the paper's model.", "",
              "Training configs (TrainConfig JSON, current field names):", ""]
    for name, f in facts.items():
        lines += [f"- `{name}`: `{json.dumps(TrainConfig.from_dict(f['config']).to_dict())}`", f"  model: `{json.dumps(f['model_config'])}`"]
    return "\n".join(lines) + "\n"


ESRGAN = "demo-4x-esrgan"
TABLE2_CSV = Path("data/results/20_repro.table2/quick/table2.csv")   # held-out results of the Table 2 analog (nbs/20_repro.table2)
RECIPE = ("iterations", "batch_size", "patch_size", "learning_rate", "milestones", "amp")


def esrgan_card(out: Path, n_train: int, table2_csv: Path = TABLE2_CSV) -> str:
    "The `demo-4x-esrgan` section of MODEL_CARD.md: every number from its files in `out` (config, model_config, metrics, val), "
    "`esrgan.esrgan_paper`/`ESRGAN_OPTIONS`/`official_rrdb_shapes` (the paper's recipe) and `table2_csv`; '' when the model is not bundled."
    from srflow_nb.esrgan import ESRGAN_OPTIONS, esrgan_paper
    files = {k: out / f"{ESRGAN}.{k}" for k in ("config.json", "model_config.json", "metrics.csv", "val.csv")}
    weights = out / PRETRAINED[ESRGAN]
    if not weights.exists() or not all(f.exists() for f in files.values()): return ""
    cfg, mc = json.loads(files["config.json"].read_text()), json.loads(files["model_config.json"].read_text())
    last, val = pd.read_csv(files["metrics.csv"]).iloc[-1], pd.read_csv(files["val.csv"])
    paper, opts = esrgan_paper().to_dict(), {**ESRGAN_OPTIONS, **cfg["options"]}
    popts = {**ESRGAN_OPTIONS, **paper["options"]}
    t = trained_on(out, ESRGAN, n_train, "bash tools/train_esrgan.sh")
    how = f"with {t['how']} (the shared trainer, two optimizers) on the same **train** split ({t['n']} images)" if not t["campaign"] else \
        f"with {t['how']} (the shared trainer, two optimizers) on the same built training set as `demo-4x` ({t['n']} images)"
    lines = [f"## `{ESRGAN}`: the ESRGAN baseline", "",
             f"The ESRGAN generator (`srflow_nb.esrgan`), fine-tuned from `demo-4x-rrdb` {how}: relativistic average GAN + perceptual + L1 "
             f"(weights {opts['gan_weight']:g} / {opts['perceptual_weight']:g} / {opts['pixel_weight']:g}), validated every "
             f"{cfg['val_every']} steps on the **val** split.", "",
             "| model | file | steps | CPU hours | skipped steps | size |", "|---|---|---|---|---|---|",
             f"| `{ESRGAN}` | `{weights.name}` | {int(last.step)} | {last.cpu_time_s / 3600:.2f} | {int(pd.read_csv(files['metrics.csv']).skipped.sum())} "
             f"| {weights.stat().st_size / 2 ** 20:.1f} MB |", "",
             "Deviations from the ESRGAN paper's recipe (`srflow_nb.esrgan.esrgan_paper`) and generator (official RRDBNet):", "",
             "| setting | ESRGAN paper | here |", "|---|---|---|"]
    for k in RECIPE:
        if paper[k] != cfg[k]: lines.append(f"| {k} | {paper[k] or 'fp32'} | {cfg[k] or 'fp32'} |" if k == "amp" else f"| {k} | {paper[k]} | {cfg[k]} |")
    for k in ("feature_net", "disc_features"):
        if popts[k] != opts[k]: lines.append(f"| {k} | {popts[k]} | {opts[k]} |")
    for k, v in dict(nf=64, nb=23, gc=32).items():    # official RRDBNet (RRDB_ESRGAN_x4.pth): `esrgan.official_rrdb_shapes` defaults
        if mc.get(k) != v: lines.append(f"| generator {k} | {v} | {mc.get(k)} |")
    lines += ["", "The perceptual term uses AlexNet conv5 features (the LPIPS backbone, whose weights the project ships) because VGG19 "
              "weights cannot be downloaded here; LPIPS measures with the same AlexNet, so the LPIPS of this model is flattered by its "
              "loss: read its LPIPS beside PSNR/LR-PSNR and the no-reference metrics. The VGG19 path (`feature_net='vgg19'`, "
              "`vgg19_weights=...`) is the paper's recipe for users who have the weights.", ""]
    v = val.set_index("step")
    lines.append(f"Validation (`{files['val.csv'].name}`, {len(val)} validations): bundled step {int(last.step)}; "
                 f"LPIPS {v.esrgan_lpips.iloc[0]:.4f} at step {int(v.index[0])} -> {v.esrgan_lpips.iloc[-1]:.4f} at step {int(v.index[-1])} "
                 f"(best {v.esrgan_lpips.min():.4f} at step {int(v.esrgan_lpips.idxmin())}), PSNR {v.esrgan_psnr.iloc[-1]:.2f} dB, "
                 f"LR-PSNR {v.esrgan_lr_psnr.iloc[-1]:.2f} dB at the last one (bicubic {v.bicubic_psnr.iloc[-1]:.2f} dB / {v.bicubic_lpips.iloc[-1]:.4f}).")
    if Path(table2_csv).exists():
        t2 = pd.read_csv(table2_csv, index_col=0)
        if "ESRGAN" in t2.index:
            lines += ["", f"Held-out **test** split (`{table2_csv}`, written by `nbs/20_repro.table2.ipynb`):", "",
                      "| method | PSNR | SSIM | LPIPS | LR-PSNR |", "|---|---|---|---|---|"]
            for m in [r for r in ("RRDB", "ESRGAN", "SRFlow τ=0.9") if r in t2.index]:
                r = t2.loc[m]; lines.append(f"| {m} | {r.psnr:.2f} | {r.ssim:.4f} | {r.lpips:.4f} | {r.lr_psnr:.2f} |")
    lines += ["", f"Usage: `load_pretrained('{ESRGAN}')` (an `RRDBEncoder`, `.sr(lr)`), `load_superresolver('esrgan')`; "
              "`esrgan.interpolation_curve` between it and `demo-4x-rrdb` gives the network-interpolation curve.", "",
              f"Training config: `{json.dumps(cfg)}`", f"  model: `{json.dumps(mc)}`"]
    return "\n".join(lines) + "\n"


HCFLOW = {"demo-4x-hcflow": "sr", "demo-4x-hcflow-rescaling": "rescaling"}   # bundled HCFlow name -> model kind
HCFLOW_FILES = ("config.json", "model_config.json", "metrics.csv", "val.csv")


def bundle_hcflow(run: Path, out: Path, name: str | None = None, checkpoint: Path | None = None) -> Path:
    "Export an HCFlow run (`checkpoint`, default its best.pt, else the newest) as the bundled `name` and copy its files as `name`.*."
    from srflow_nb.hcflow_train import load_hcflow
    run, out = Path(run), Path(out)
    ck = Path(checkpoint) if checkpoint else run / "best.pt" if (run / "best.pt").exists() else (list_checkpoints(run / "checkpoints") or [None])[-1]
    if ck is None or not ck.exists(): sys.exit(f"[hcflow] no checkpoint in {run} (best.pt or checkpoints/step_*.pt): train first")
    missing = [f for f in HCFLOW_FILES if not (run / f).exists()]
    if missing: sys.exit(f"[hcflow] {run} lacks {', '.join(missing)}: validate at least once before bundling (the card reads them)")
    kind = json.loads((run / "model_config.json").read_text())["kind"]
    name = name or next(n for n, k in HCFLOW.items() if k == kind)
    if HCFLOW.get(name) != kind: sys.exit(f"[hcflow] {run} holds an HCFlow {kind} model; {name!r} is not the bundled {kind} name ({sorted(HCFLOW)})")
    out.mkdir(parents=True, exist_ok=True)
    dest = export_model(ck, out / PRETRAINED[name])
    load_hcflow(dest)                                                  # the bundled file loads
    for f in HCFLOW_FILES: shutil.copy(run / f, out / f"{name}.{f}")
    print(f"[hcflow] {name}: {ck} -> {dest} ({dest.stat().st_size / 2 ** 20:.1f} MB) and {name}.{{{','.join(HCFLOW_FILES)}}}")
    return dest


def _hcflow_section(out: Path, name: str, n_train: int) -> str:
    from safetensors import safe_open
    from srflow_nb.hcflow import HCFlowConfig
    from srflow_nb.hcflow_train import HCFLOW_OPTIONS, hcflow_paper_rescaling, hcflow_paper_sr, load_hcflow
    files, weights = {k: out / f"{name}.{k}" for k in HCFLOW_FILES}, out / PRETRAINED[name]
    if not weights.exists() or not all(f.exists() for f in files.values()): return ""
    rescaling = HCFLOW[name] == "rescaling"
    with safe_open(str(weights), "pt") as f: meta = f.metadata()
    cfg, mc = json.loads(files["config.json"].read_text()), json.loads(files["model_config.json"].read_text())
    metrics, val = pd.read_csv(files["metrics.csv"]), pd.read_csv(files["val.csv"])
    step, last = int(meta["step"]), metrics.iloc[-1]
    paper = (hcflow_paper_rescaling if rescaling else hcflow_paper_sr)().to_dict()
    pmodel = (HCFlowConfig.rescaling_div2k_4x if rescaling else HCFlowConfig.sr_div2k_4x)().to_dict()
    opts, popts = {**HCFLOW_OPTIONS, **cfg.get("options", {})}, {**HCFLOW_OPTIONS, **paper["options"]}
    params = sum(p.numel() for p in load_hcflow(weights).parameters())
    what = ("rescaling: LR MSE + z^2 + HR L1 from the 8-bit flow LR" if rescaling else
            "NLL" + (" then L1 (HCFlow+)" if opts["pixel_weight_hr"] else ""))
    t = trained_on(out, name, n_train, "bash tools/train_hcflow.sh")
    lines = [f"## `{name}`: HCFlow {'rescaling' if rescaling else 'super-resolution'}", "",
             f"HCFlow (`srflow_nb.hcflow`, exact to the official code on its fixtures) trained from scratch with "
             f"{t['how']} (preset `{name}`, the shared trainer; {what}) on {t['where']} ({t['n']} images in {t['folder']}, "
             f"{cfg['patch_size']}-px HR patches, batch {cfg['batch_size']}, LR by MATLAB bicubic, stored 8-bit), validated every "
             f"{cfg['val_every']} steps on the **val** split.", "",
             "| model | file | parameters | bundled step | CPU hours to it | run steps | run CPU hours | skipped steps | size |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| `{name}` | `{weights.name}` | {params:,} | {step} | {float(meta['cpu_time_s']) / 3600:.2f} | {int(last.step)} | {last.cpu_time_s / 3600:.2f} "
             f"| {int(metrics.skipped.max())} | {weights.stat().st_size / 2 ** 20:.1f} MB |", "",
             "- " + selection(name, files["val.csv"], step, cfg.get("best_metric") or "t0_psnr"), "",
             f"Deviations from the official recipe (`hcflow_train.{'hcflow_paper_rescaling' if rescaling else 'hcflow_paper_sr'}`) and "
             f"configuration (`HCFlowConfig.{'rescaling_div2k_4x' if rescaling else 'sr_div2k_4x'}`):", "",
             "| setting | official | here |", "|---|---|---|",
             f"| training data | DF2K (DIV2K + Flickr2K) | {'the built training set' if t['campaign'] else 'the demo train split'} ({t['n']} images) |"]
    lines += deviation_rows(paper, cfg, popts, opts, pmodel, mc)
    lines += ["", "Also (documented in `nbs/07a_hcflow_train.ipynb`, Training): a non-finite loss skips the whole update (the trainer's NaN guard)"
              + ("" if rescaling else "; patches are augmented with 90-degree rotations too (the official SR configs flip only); "
                 "HCFlow++ (VGG perceptual + GAN losses) is not provided") + ".", ""]
    v = val.set_index("step")
    if rescaling:
        lines.append(f"Validation (`{files['val.csv'].name}`, {len(val)} validations; HR rebuilt at temperature 0 from the 8-bit flow LR): "
                     f"HR PSNR {v.t0_psnr.iloc[0]:.2f} dB at step {int(v.index[0])} -> {v.t0_psnr.iloc[-1]:.2f} dB at step {int(v.index[-1])} "
                     f"(best {v.t0_psnr.max():.2f} dB at step {int(v.t0_psnr.idxmax())}; bicubic up from the bicubic LR {v.bicubic_psnr.iloc[-1]:.2f} dB); "
                     f"the flow LR against the bicubic LR {v.lr_psnr_vs_bicubic.iloc[-1]:.2f} dB at the last one.")
        use = (f"Usage: `srflow rescale roundtrip IMAGES -o OUT` (default checkpoint `{name}`), or `hcflow_train.load_rescaling_model()` and "
               "`hcflow_train.rescale_roundtrip(model, hr)` -> (8-bit LR, HR); `model.downscale(hr)`, `model.upscale(lr, temperature=0)`.")
    else:
        lines.append(f"Validation (`{files['val.csv'].name}`, {len(val)} validations): PSNR at temperature 0 {v.t0_psnr.iloc[0]:.2f} dB at step "
                     f"{int(v.index[0])} -> {v.t0_psnr.iloc[-1]:.2f} dB at step {int(v.index[-1])} (best {v.t0_psnr.max():.2f} dB at step "
                     f"{int(v.t0_psnr.idxmax())}); at the last one: temperature 0.9 {v['t0.9_psnr'].iloc[-1]:.2f} dB, LR-PSNR "
                     f"{v.t0_lr_psnr.iloc[-1]:.2f} dB (t=0) / {v['t0.9_lr_psnr'].iloc[-1]:.2f} dB (t=0.9), bicubic {v.bicubic_psnr.iloc[-1]:.2f} dB.")
        use = (f"Usage: `load_pretrained('{name}')` (an `HCFlow`: `.sample(lr, n, temperature)`), `load_superresolver('hcflow')` "
               "(the default checkpoint of the `hcflow` family).")
    lines += ["", use, "", f"Training config: `{json.dumps(cfg)}`", f"  model: `{json.dumps(mc)}`"]
    return "\n".join(lines) + "\n"


def deviation_rows(paper: dict, cfg: dict, popts: dict, opts: dict, pmodel: dict, mc: dict) -> list[str]:
    "Rows `| setting | paper | here |` of a card's deviation table: training recipe, its options, then model fields (JSON-compared)."
    rows = [f"| {k} | {paper[k] or 'fp32'} | {cfg[k] or 'fp32'} |" if k == "amp" else f"| {k} | {paper[k]} | {cfg[k]} |"
            for k in RECIPE if paper[k] != cfg[k]]
    rows += [f"| option {k} | {v} | {opts[k]} |" for k, v in popts.items() if opts[k] != v]
    return rows + [f"| model {k} | {json.dumps(v)} | {json.dumps(mc[k])} |" for k, v in pmodel.items() if k in mc and json.dumps(mc[k]) != json.dumps(v)]


def hcflow_card(out: Path, n_train: int) -> str:
    "The HCFlow sections of MODEL_CARD.md (`demo-4x-hcflow`, `demo-4x-hcflow-rescaling`): every number from the bundled weights' "
    "metadata and their files in `out` (config, model_config, metrics, val), deviations from `hcflow_paper_*`; '' for an unbundled one."
    return "\n".join(s for s in (_hcflow_section(Path(out), n, n_train) for n in HCFLOW) if s)


SR3 = "demo-4x-sr3"
SR3_FILES = HCFLOW_FILES
SR3_RESULTS = Path("data/results/28_repro.sr3/quick")   # held-out results of the SR3 comparison (nbs/28_repro.sr3)


def bundle_sr3_files(run: Path, out: Path) -> Path:
    "Check the bundled `demo-4x-sr3` model (exported by `tools/train_sr3.sh export`) loads, and copy its run's files as demo-4x-sr3.*."
    from srflow_nb.sr3_train import load_sr3
    run, out = Path(run), Path(out)
    weights = out / PRETRAINED[SR3]
    if not weights.exists(): sys.exit(f"[sr3] {weights} does not exist: export the model first (bash tools/train_sr3.sh export)")
    missing = [f for f in SR3_FILES if not (run / f).exists()]
    if missing: sys.exit(f"[sr3] {run} lacks {', '.join(missing)}: validate at least once before bundling (the card reads them)")
    load_sr3(weights)                                                  # the bundled file loads
    for f in SR3_FILES: shutil.copy(run / f, out / f"{SR3}.{f}")
    print(f"[sr3] {SR3}: {weights} ({weights.stat().st_size / 2 ** 20:.1f} MB) and {SR3}.{{{','.join(SR3_FILES)}}} from {run}")
    return weights


def _f(v, spec: str) -> str: return "-" if pd.isna(v) else format(v, spec)


def _sr3_held_out(results: Path) -> list[str]:
    "Card lines from the SR3 comparison's quick results (table.csv, cost.csv), when they were made with the bundled model."
    run_json = results / "run.json"
    if not all((results / f).exists() for f in ("table.csv", "cost.csv", "run.json")) or json.loads(run_json.read_text()).get("sr3") != SR3: return []
    run, t, c = json.loads(run_json.read_text()), pd.read_csv(results / "table.csv", index_col=0), pd.read_csv(results / "cost.csv")
    s3, fl = c[c.method == "sr3"].set_index("steps"), c[c.method == "srflow"].set_index("temperature")
    rows = [r for r in t.index if r in ("Bicubic", "SRFlow τ=0.9") or r.startswith("SR3")]
    lines = ["", f"Held-out **test** split (`{results}/table.csv`, written by `nbs/28_repro.sr3.ipynb`: {len(run['images'])} images, "
             f"{run['n_samples']} samples each; the crop size is in its `run.json`):", "", "| method | PSNR | SSIM | LPIPS | LR-PSNR | diversity |", "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {t.loc[m, 'psnr']:.2f} | {t.loc[m, 'ssim']:.4f} | {t.loc[m, 'lpips']:.4f} | {t.loc[m, 'lr_psnr']:.2f} | {_f(t.loc[m, 'diversity'], '.3g')} |" for m in rows]
    if 0.9 in fl.index:
        lines += ["", f"Time per sample in the same run (`cost.csv`, {run['device']}): SR3 {s3.cpu_s_per_sample.iloc[-1]:.3g} CPU-s at "
                  f"{int(s3.index[-1])} steps, {s3.cpu_s_per_sample.iloc[0]:.3g} at {int(s3.index[0])}; SRFlow τ=0.9 {fl.loc[0.9, 'cpu_s_per_sample']:.3g} CPU-s."]
    return lines


def sr3_card(out: Path, n_train: int, results: Path = SR3_RESULTS) -> str:
    "The `demo-4x-sr3` section of MODEL_CARD.md: every number from the bundled weights' metadata, their run files in `out` and the "
    "SR3 comparison's results; deviations from `sr3_paper` / `SR3Config.paper_sr_64_256`; '' when SR3 is not bundled."
    from safetensors import safe_open
    from srflow_nb.sr3 import SR3Config
    from srflow_nb.sr3_train import load_sr3, sr3_options, sr3_paper
    out = Path(out)
    files, weights = {k: out / f"{SR3}.{k}" for k in SR3_FILES}, out / PRETRAINED[SR3]
    if not weights.exists() or not all(f.exists() for f in files.values()): return ""
    with safe_open(str(weights), "pt") as f: meta = f.metadata()
    cfg, mc = json.loads(files["config.json"].read_text()), json.loads(files["model_config.json"].read_text())
    metrics, val = pd.read_csv(files["metrics.csv"]), pd.read_csv(files["val.csv"])
    step, last, model = int(meta["step"]), metrics.iloc[-1], load_sr3(weights)
    paper, pmodel = sr3_paper().to_dict(), SR3Config.paper_sr_64_256().to_dict()
    opts, popts = sr3_options(TrainConfig.from_dict(cfg)), sr3_options(sr3_paper())
    lines = [f"## `{SR3}`: SR3 diffusion super-resolution", "",
             f"SR3 (`srflow_nb.sr3`: U-Net denoiser conditioned on the bicubic-upsampled LR, ancestral sampling) trained from scratch with "
             f"`bash tools/train_sr3.sh` (`sr3_train.sr3_demo`, the shared trainer; {model.config.loss_type.upper()} on the noise) on the **train** split "
             f"({n_train} images, {cfg['patch_size']}-px HR patches, batch {cfg['batch_size']}, LR by MATLAB bicubic, stored 8-bit), validated "
             f"every {cfg['val_every']} steps on the **val** split with {opts['val_steps']}-step samples.", "",
             "| model | file | parameters | bundled step | CPU hours to it | run steps | run CPU hours | skipped steps | inference steps | size |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| `{SR3}` | `{weights.name}` | {sum(p.numel() for p in model.parameters()):,} | {step} | {float(meta['cpu_time_s']) / 3600:.2f} "
             f"| {int(last.step)} | {last.cpu_time_s / 3600:.2f} | {int(metrics.skipped.max()) if 'skipped' in metrics else 0} "
             f"| {len(model.sample_gammas)} | {weights.stat().st_size / 2 ** 20:.1f} MB |", "",
             "- " + selection(SR3, files["val.csv"], step, "sr3_psnr"), "",
             "Deviations from the paper's recipe (`sr3_train.sr3_paper`) and natural-image configuration (`SR3Config.paper_sr_64_256`):", "",
             "| setting | paper | here |", "|---|---|---|", "| training data | ImageNet (the paper's 64->256 natural images) | the demo train split |"]
    lines += deviation_rows(paper, cfg, popts, opts, pmodel, mc)
    v = val.set_index("step")
    lp = f", LPIPS {v.sr3_lpips.iloc[-1]:.4f} (bicubic {v.bicubic_lpips.iloc[-1]:.4f})" if "sr3_lpips" in v else ""
    lines += ["", f"Validation (`{files['val.csv'].name}`, {len(val)} validations, {opts['val_steps']}-step samples): PSNR {v.sr3_psnr.iloc[0]:.2f} dB at step "
              f"{int(v.index[0])} -> {v.sr3_psnr.iloc[-1]:.2f} dB at step {int(v.index[-1])} (best {v.sr3_psnr.max():.2f} dB at step {int(v.sr3_psnr.idxmax())}); "
              f"at the last one LR-PSNR {v.sr3_lr_psnr.iloc[-1]:.2f} dB{lp}, bicubic {v.bicubic_psnr.iloc[-1]:.2f} dB."]
    lines += _sr3_held_out(Path(results))
    lines += ["", f"Usage: `load_pretrained('{SR3}')` (an `SR3`: `.sample(lr, n, steps)`), `load_superresolver('sr3')`, "
              "`srflow sample --model sr3 --steps N`.", "", f"Training config: `{json.dumps(cfg)}`", f"  model: `{json.dumps(mc)}`"]
    return "\n".join(lines) + "\n"


EIGHTX = {"demo-8x-rrdb": ("RRDB (L1)", "rrdb_psnr"), "demo-8x": ("SRFlow, L=4", "t0_psnr"), "demo-8x-esrgan": ("ESRGAN", "-esrgan_lpips")}
TABLE2_8X_CSV = Path("data/results/20b_repro.table2_8x/quick/table2.csv")   # held-out results of Table 2's 8x half (nbs/20b_repro.table2_8x)


def eightx_card(out: Path, n_train: int, table2_csv: Path = TABLE2_8X_CSV) -> str:
    """The 8x section of MODEL_CARD.md (`demo-8x-rrdb`, `demo-8x`, `demo-8x-esrgan`): every number from the bundled files in
    `out` (weights, config, model_config, metrics, val) and `table2_csv`; '' when none of them is bundled."""
    have = {n: w for n, w in EIGHTX.items() if n in PRETRAINED and (out / PRETRAINED[n]).exists() and (out / f"{n}.metrics.csv").exists()}
    if not have: return ""
    rows, picks, cfgs = [], [], []
    for name, (what, metric) in have.items():
        m, cfg = pd.read_csv(out / f"{name}.metrics.csv"), json.loads((out / f"{name}.config.json").read_text())
        last, t = m.iloc[-1], trained_on(out, name, n_train, "python tools/campaign.py run")
        rows.append(f"| `{name}` | {what} | `{PRETRAINED[name]}` | {int(last.step)} | {last.cpu_time_s / 3600:.2f} | {int(m.skipped.sum())} | "
                    f"{cfg['patch_size']} | {t['n']} | {(out / PRETRAINED[name]).stat().st_size / 2 ** 20:.1f} MB |")
        if (out / f"{name}.val.csv").exists(): picks.append("- " + selection(name, out / f"{name}.val.csv", int(last.step), metric))
        mc = out / f"{name}.model_config.json"
        cfgs += [f"- `{name}`: `{json.dumps(cfg)}`"] + ([f"  model: `{mc.read_text().strip()}`"] if mc.exists() else [])
    lines = ["## The 8x models: `demo-8x-rrdb`, `demo-8x`, `demo-8x-esrgan`", "",
             "Table 2's 8x half, trained by issue 24's campaign (`python tools/campaign.py run`, stages `rrdb_8x`, `srflow_8x`, "
             "`esrgan_8x`) on the built training set: the 8x RRDB (L1), SRFlow with one more flow level (L=4) on its encoder, and "
             "ESRGAN fine-tuned from it, as the paper trained its own 8x RRDB and ESRGAN (Sec 5.2).", "",
             "| model | what | file | steps | CPU hours | skipped steps | HR patch | training images | size |", "|---|---|---|---|---|---|---|---|---|",
             *rows, "", "Which checkpoint is bundled (from the validation logs):", "", *picks]
    if Path(table2_csv).exists():
        t2 = pd.read_csv(table2_csv, index_col=0)
        lines += ["", f"Held-out **test** split at 8x (`{table2_csv}`, written by `nbs/20b_repro.table2_8x.ipynb`; the paper's DIV2K 8x "
                  "numbers in `findings.PAPER_TABLE2_8X`):", "", "| method | PSNR | SSIM | LPIPS | LR-PSNR |", "|---|---|---|---|---|"]
        for k, r in t2.iterrows(): lines.append(f"| {k} | {r.psnr:.2f} | {r.ssim:.4f} | {r.lpips:.4f} | {r.lr_psnr:.2f} |")
    lines += ["", "Usage: `load_pretrained('demo-8x')`, `srflow sample --checkpoint demo-8x`, `load_superresolver('rrdb:demo-8x-rrdb')`, "
              "`load_superresolver('esrgan:demo-8x-esrgan')`; `demo.repro_setup(..., scale=8)` pairs them.", "", "Training configs:", "", *cfgs]
    return "\n".join(lines) + "\n"


def v1_card(out: Path, n_train: int) -> str:
    "The section on the earlier bundled models kept loadable as `<name>-v1` (steps and CPU-hours from their logs); '' when there are none."
    rows, scripts = [], {}
    for name, fname in PRETRAINED.items():
        if not name.endswith("-v1") or not (out / fname).exists(): continue
        script = "train_esrgan.sh" if "esrgan" in name else "train_hcflow.sh" if "hcflow" in name else "train_demo.sh"
        scripts[script] = f"`bash tools/{script}`"
        m = out / f"{name}.metrics.csv"
        last = pd.read_csv(m).iloc[-1] if m.exists() else None
        rows.append(f"| `{name}` | `{fname}` | {int(last.step) if last is not None else '-'} | "
                    f"{f'{last.cpu_time_s / 3600:.2f}' if last is not None else '-'} | {(out / fname).stat().st_size / 2 ** 20:.1f} MB |")
    if not rows: return ""
    return "\n".join([
        "## Earlier versions (`*-v1`)", "",
        f"The models the campaign replaced, trained on the demo dataset's **train** split ({n_train} images in data/demo/train) by "
        f"{', '.join(list(scripts.values())[:-1])}{' and ' if len(scripts) > 1 else ''}{list(scripts.values())[-1]}, still load by name (`load_pretrained('demo-4x-v1')`, "
        "`srflow sample --checkpoint demo-4x-v1`); their training logs are the `<name>.metrics.csv` / `.val.csv` beside them.", "",
        "| model | file | steps | CPU hours | size |", "|---|---|---|---|---|", *rows]) + "\n"


def write_card(out: Path, n_train: int):
    "Re-write MODEL_CARD.md from demo_eval.json and the val CSVs, keeping the hand-written notes section."
    ev = json.loads((out / "demo_eval.json").read_text())
    old = (out / "MODEL_CARD.md").read_text() if (out / "MODEL_CARD.md").exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else ""
    test = Path("data/demo/test")
    n_test = ev.get("n_test") or len([p for p in test.iterdir() if p.suffix.lower() == ".png"])   # older demo_eval.json: count the split
    run = [l for l in old.splitlines() if l.startswith("Run info: ")]   # older demo_eval.json: keep the export's own line
    text = card(out, ev["test"], ev["facts"], n_test, n_train) + "\n" + (f"Run info: `{json.dumps(ev['run_info'])}`" if "run_info" in ev else run[0]) + "\n"
    gan = esrgan_card(out, n_train)
    if gan: text += "\n" + gan
    hc = hcflow_card(out, n_train)
    if hc: text += "\n" + hc
    sr = sr3_card(out, n_train)
    if sr: text += "\n" + sr
    x8 = eightx_card(out, n_train)
    if x8: text += "\n" + x8
    v1 = v1_card(out, n_train)
    if v1: text += "\n" + v1
    if notes: text += "\n" + notes
    atomic_write(out / "MODEL_CARD.md", lambda p: Path(p).write_text(text))
    return text


@call_parse
def main(rrdb: str = None,             # the RRDB run's checkpoint to bundle (e.g. runs/demo-4x-rrdb/best.pt)
         flow: str = None,             # the SRFlow run's checkpoint to bundle
         out: str = "srflow_nb/pretrained",   # where the bundled files go
         runs: str = "",               # run folders whose logs/configs are copied next to the weights (comma-separated)
         train: str = "data/demo/train",   # the training images (counted for the card)
         card_only: bool = False,      # only re-write MODEL_CARD.md from demo_eval.json and the val CSVs
         hcflow: str = None,           # an HCFlow run folder to bundle (its best.pt, else the newest checkpoint), then re-write the card
         hcflow_name: str = None,      # the bundled name for --hcflow (default: demo-4x-hcflow or demo-4x-hcflow-rescaling, by model kind)
         hcflow_checkpoint: str = None,   # the checkpoint of --hcflow to bundle instead of best.pt
         sr3: str = None,              # the SR3 run folder whose demo-4x-sr3 model `tools/train_sr3.sh export` bundled: copy its files, re-write the card
        ):
    "Export the demo campaign's checkpoints as the bundled models, evaluate them on the held-out split, write the model card."
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    n_train = len([p for p in Path(train).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]) if Path(train).is_dir() else 0
    if card_only: print(write_card(out, n_train)); return
    if hcflow:
        bundle_hcflow(Path(hcflow), out, hcflow_name, hcflow_checkpoint)
        if (out / "demo_eval.json").exists(): print(write_card(out, n_train))
        else: print(hcflow_card(out, n_train))
        return
    if sr3:
        bundle_sr3_files(Path(sr3), out)
        if (out / "demo_eval.json").exists(): print(write_card(out, n_train))
        else: print(sr3_card(out, n_train))
        return
    if not rrdb: sys.exit("[export] --rrdb is required (or --card-only)")
    torch.set_num_threads(2)
    facts, files = {}, {}
    for kind, src in (("rrdb", rrdb), ("flow", flow)):
        if not src: continue
        if not Path(src).exists(): sys.exit(f"[export] {src} does not exist: run the {kind} stage first")
        ck = load_checkpoint(src)
        name = "demo-4x-rrdb" if kind == "rrdb" else "demo-4x"
        dest = out / PRETRAINED[name]
        kept = holds_checkpoint(dest, ck)                     # already exported from this checkpoint: the file stays as it is
        if not kept:
            export_model(ck, dest)
            if dest.stat().st_size > LIMIT: export_model(ck, dest, half=True)
        files[name] = dest
        facts[name] = dict(step=ck["step"], cpu_hours=round(ck.get("cpu_time", 0) / 3600, 2), wall_hours=round(ck.get("wall_time", 0) / 3600, 2),
                           skipped=ck.get("skipped", 0), size_mb=round(dest.stat().st_size / 2 ** 20, 1), config=ck["config"],
                           model_config=ck.get("model_config"), val=(ck.get("val_history") or [{}])[-1])
        print(f"[export] {name}: step {ck['step']} {'already in' if kept else '->'} {dest} ({facts[name]['size_mb']} MB)")
    rrdb_m = load_model(files["demo-4x-rrdb"]) if "demo-4x-rrdb" in files else None
    flow_m = load_model(files["demo-4x"]) if "demo-4x" in files else None
    res, n = evaluate(rrdb_m, flow_m)
    for run in [Path(r) for r in runs.split(",") if r]:
        for f in ("metrics.csv", "val.csv", "config.json", "model_config.json"):
            if (run / f).exists(): shutil.copy(run / f, out / f"{run.name}.{f}")
    ev = dict(test=res, facts=facts, n_test=n, run_info=run_info())
    atomic_write(out / "demo_eval.json", lambda p: Path(p).write_text(json.dumps(ev, indent=1)))
    print(write_card(out, n_train))
