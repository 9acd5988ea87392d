"""The README's measured numbers, rendered from the committed files that hold them.

Each block of README.md between `<!-- name -->` and `<!-- /name -->` is produced here from result files:
- `results-table`: data/results/20_repro.table2/quick/table2.csv (+ its run.json), beside the paper's Table 2;
- `findings`: every data/results/*/quick/findings.csv (hold / does not hold, with the measured detail);
- `esrgan`: the bundled ESRGAN's training log/config (srflow_nb/pretrained/demo-4x-esrgan.*) and its Table 2 verdicts;
- `equivalence`: benchmarks/results/official_equivalence.json (tests/test_official_equivalence.py --write);
- `tolerances`: srflow_nb.findings.TOLERANCES and benchmarks/results/cross_cpu_differences.csv (tools/cross_cpu.py);
- `speed-table`: benchmarks/results/sample_speed_lr64_threads2_idle_<cpu kind>.json (one per CPU kind) and ..._threads2_compile.json;
- `train-speed`: benchmarks/results/train_speed_small_idle_<cpu kind>.json (one per CPU kind) and train_speed_compile_<cpu kind>.json;
- `status`: the bundled RRDB and SRFlow's training logs and configs (srflow_nb/pretrained/demo-4x[-rrdb].*), and what they
  were trained on (`demo-4x.data.json`, written by `tools/campaign.py bundle`; without it, the demo train split).

`python tools/readme_numbers.py` rewrites the blocks in place (after results are regenerated);
`tests/test_readme_numbers.py` fails when a block differs from what the files say.
"""
from __future__ import annotations
import json
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "data" / "results"
BENCH = ROOT / "benchmarks" / "results"
COMPILE_JSON = BENCH / "sample_speed_lr64_threads2_compile.json"
EQUIVALENCE_JSON = BENCH / "official_equivalence.json"
REPRO = ["20_repro.table2", "21_repro.temperature", "22_repro.perception_distortion", "23_repro.best_of_n",
         "24_repro.ablations", "25_repro.restoration", "27_repro.hcflow", "28_repro.sr3", "29_repro.scaling"]
DIGITS = {"psnr": 2, "ssim": 3, "psnr_y": 2, "ssim_y": 3, "lpips": 3, "lr_psnr": 2, "niqe": 2, "brisque": 1, "piqe": 1}


def _f(v, k):
    return "-" if pd.isna(v) else f"{v:.{k}f}"


def results_table() -> str:
    from srflow_nb.findings import PAPER_TABLE2_4X
    d = RESULTS / "20_repro.table2" / "quick"
    t2 = pd.read_csv(d / "table2.csv", index_col=0)
    run = json.loads((d / "run.json").read_text())
    names = {"Bicubic": "bicubic", "RRDB": f"RRDB (`{run['rrdb']}`)", "ESRGAN": f"ESRGAN (`{run.get('esrgan', '?')}`)"}
    paper = {"Bicubic": "Bicubic", "RRDB": "RRDB", "ESRGAN": "ESRGAN", "SRFlow τ=0.9": "SRFlow τ=0.9"}
    cols = list(DIGITS)
    lines = [f"{len(run['images'])} held-out test images at full size, 4x, PSNR/SSIM on RGB and on Y (BT.601, the HCFlow/IRN/SR3 convention), no border crop, 8-bit rounding, bicubic = "
             f"MATLAB kernel, {run['n_samples']} samples per temperature; computed by `nbs/20_repro.table2.ipynb` "
             f"(`data/results/20_repro.table2/quick/table2.csv`, on {run['device']}{_machine(run)}; its `run.json` records the git commit, machine and "
             f"seeds; the commit is not copied here, since every CI run re-measures and re-records it). Paper numbers (DIV2K 4x, full models trained on 3,450 images, Table 2) for orientation only.",
             "",
             "| method | PSNR | SSIM | PSNR (Y) | SSIM (Y) | LPIPS | LR-PSNR | NIQE | BRISQUE | PIQE | paper PSNR / LPIPS / LR-PSNR |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in t2.iterrows():
        label = names.get(m, m.replace("SRFlow", f"SRFlow (`{run['checkpoint']}`),"))
        p = paper.get(m)
        pp = " / ".join(_f(PAPER_TABLE2_4X.loc[p, c], DIGITS[c]) for c in ("psnr", "lpips", "lr_psnr")) if p else "-"
        lines.append(f"| {label} | " + " | ".join(_f(r[c], DIGITS[c]) for c in cols) + f" | {pp} |")
    return "\n".join(lines)


def _machine(run: dict) -> str:
    "' (CPU, its kind, precision)' from a run record, '' for records older than `core.machine_info`."
    m = run.get("machine")
    return f" ({m['cpu']}, {m['cpu_kind']}, {run.get('precision', 'fp32')}, {m['threads']} threads)" if m else ""


def _sample(run: dict) -> str:
    "What a notebook's verdicts were measured on, from its run.json: its `sample` when it states one, else images, crop, samples (or steps)."
    if "sample" in run: return run["sample"]
    if "images" not in run: return f"{run.get('steps', '?')}-step models, {run.get('patch', '?')}-px patches, 2 val crops of 96 px"
    crop = f"{run['crop']}-px crops" if run.get("crop") else "full size"
    n = f", {run['n_samples']} sample(s)" if "n_samples" in run else ""
    return f"{len(run['images'])} images, {crop}{n}"


def findings_table() -> str:
    "Two tables: the papers' claims (a source names the paper's place) and our hypotheses, each claim once."
    from srflow_nb.findings import status
    papers, ours = [], []
    for nb in REPRO:
        f = RESULTS / nb / "quick" / "findings.csv"
        if not f.exists(): raise FileNotFoundError(f"{f}: no findings yet; run nbs/{nb}.ipynb (tools/run_notebooks.py) and commit its results first")
        sample = _sample(json.loads((f.parent / "run.json").read_text()))
        for r in pd.read_csv(f).to_dict("records"):
            v = status(r)
            v = v if v.startswith("holds") else f"**{v}**"
            own = r.get("sample")                                                   # a finding measured on other images than its run's
            row = (f"| `{nb}` | {r['finding']} |" + (f" {r['source']} |" if r.get("source", "hypothesis") != "hypothesis" else "")
                   + f" {own if isinstance(own, str) and own else sample} | {v} | {r['detail']} |")
            (ours if r.get("source", "hypothesis") == "hypothesis" else papers).append(row)
    return "\n".join(["**The papers' claims**", "", "| notebook | claim | source | sample | verdict | measured |", "|---|---|---|---|---|---|", *papers,
                      "", "**Our hypotheses** (questions of this project's own, not claims of a paper)", "",
                      "| notebook | hypothesis | sample | verdict | measured |", "|---|---|---|---|---|", *ours])


def _e(v):
    return "0 (bit-exact)" if v == 0 else f"{v:.1e}"


def equivalence() -> str:
    rec = json.loads(EQUIVALENCE_JSON.read_text())
    e, m = rec["max_abs_error"], rec["machine"]
    return (f"`tests/test_official_equivalence.py` loads an official-architecture state dict (official key names, config "
            f"inferred) and reproduces the official code's outputs; maximum absolute differences "
            f"(`benchmarks/results/official_equivalence.json`, written by the test's `--write`): conditioning {_e(e['conditioning'])}, "
            f"RRDB SR {_e(e['rrdb_sr'])}, latents {_e(e['latents'])}, NLL {_e(e['nll_bits_per_pixel'])} bits per pixel, "
            f"samples at temperature 0.9 and 0 {_e(e['samples'])}, round trip {_e(e['round_trip'])} (measured on {m['cpu']}, {m['cpu_kind']}; "
            f"the last digits depend on the CPU, and the test checks every figure against the equivalence tolerance, its `RTOL` and `ATOL`, on whichever CPU runs it).")


SPEED_KINDS = {"amx": "Intel, AMX-BF16", "avx512bf16": "AMD Zen 4, AVX-512-BF16 (no AMX)"}   # file suffix -> CPU


def _cpu_label(rec: dict, path: Path) -> str:
    "The CPU that measured a benchmark: its record's `machine` (core.machine_info), else the kind its file name states."
    m = rec.get("machine")
    return f"{m['cpu']}, {m['cpu_kind']}" if m else SPEED_KINDS[path.stem.rsplit("_", 1)[-1]]


def speed_table() -> str:
    runs = [(f, json.loads(f.read_text())) for f in sorted(BENCH.glob("sample_speed_lr64_threads2_idle_*.json"))]
    s, c = runs[0][1], json.loads(COMPILE_JSON.read_text())
    comp = c["compile"]["speedup_vs_eager"]
    frac = s["gflop"]["fast_per_extra_sample"] / s["gflop"]["plain_sample"]
    rows = []
    for f, r in runs:
        t, b, cpu = r["seconds_per_sample"], r["bf16"]["seconds_per_sample"], _cpu_label(r, f)
        rows += [f"| {cpu} | fp32 (default) | {t['plain']:.2f} | {t['fast_1']:.2f} | {t['fast_10']:.3f} | {t['sweep_11']:.3f} | `{f.name}` |",
                 f"| {cpu} | bf16 (`precision=\"bf16\"`) | | {b['fast_1']:.2f} | {b['fast_10']:.3f} | {b['sweep_11']:.3f} | |"]
    vs, sc = s["speedup_vs_official"], s["speedup_vs_official_scaled"]
    return "\n".join([
        f"Per extra sample the fast engine runs {frac:.1%} of a plain reverse pass's FLOPs. The paper's DF2K-4X "
        f"architecture, LR {s['lr_size']} -> {s['lr_size'] * 4}, {s['threads']} threads, on each CPU kind these machines come in "
        f"(`benchmarks/sample_speed.py --bf16`; bf16 speed depends on the instruction set far more than fp32's):",
        "",
        f"| CPU | precision | plain reverse pass | fast, 1 sample | fast, 10 samples | fast, 11-point sweep | file |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Against the official code's reported {s['official_reference_s_per_sample']:g} s per sample ({s['threads']} threads, "
        f"another machine of this kind), on {_cpu_label(s, runs[0][0])}: fp32 {vs['fast_1']:.2f}x for one sample, {vs['fast_10']:.1f}x per sample for ten; "
        f"scaled by the two machines' measured 3x3-conv throughput (the fair comparison) {sc['fast_1']:.1f}x and "
        f"{sc['fast_10']:.1f}x. Fast and plain passes agree to {s['max_abs_diff_fast_vs_plain']:.0e}. "
        f"`compile=True` (`torch.compile`, `srflow sample --compile`) is {min(comp.values()):.2f}-{max(comp.values()):.2f}x "
        f"faster again after a {c['compile']['first_call_s']:.0f} s first call (compilation, inductor cache warm; "
        f"`benchmarks/results/{COMPILE_JSON.name}`, {_cpu_label(c, COMPILE_JSON) if 'machine' in c else 'its machine not recorded'}): worth it for large tiled images, not for a few samples. "
        f"bf16 accuracy against fp32: `nbs/14_sampling.ipynb`."])


TRAIN_ROWS = [   # (label, stage, batch, HR patch, amp, amp_scope, channels_last): the campaign's settings (tools/campaign.py)
    ("SRFlow flow stage, fp32 (the campaign)", "flow", 4, 64, None, None, False),
    ("SRFlow flow stage, bf16 encoder", "flow", 4, 64, "bf16", "encoder", False),
    ("SRFlow flow stage, bf16 everywhere", "flow", 4, 64, "bf16", "all", False),
    ("SRFlow flow stage, fp32 channels_last", "flow", 4, 64, None, None, True),
    ("RRDB stage, fp32", "rrdb", 8, 96, None, None, False),
    ("RRDB stage, bf16 (the campaign)", "rrdb", 8, 96, "bf16", "encoder", False)]


def _train_rows(rows: list[dict]) -> dict:
    "{label: s_per_step} of the grid rows (1 thread, encoder trained) that TRAIN_ROWS names."
    out = {}
    for label, stage, b, hr, amp, scope, cl in TRAIN_ROWS:
        hit = [r for r in rows if (r["stage"], r["batch"], r["hr_patch"], r["amp"], r.get("amp_scope"), r["channels_last"], r["threads"], r["encoder_frozen"])
               == (stage, b, hr, amp, scope, cl, 1, False)]
        if hit: out[label] = hit[0]["s_per_step"]
    return out


def train_speed() -> str:
    "Training throughput per CPU kind (steps x HR pixels per CPU-second), each setting against fp32 at the same configuration."
    lines = ["| CPU | setting | batch x HR patch | s/step | HR Mpixel per CPU-s | vs fp32 | file |", "|---|---|---|---|---|---|---|"]
    best = {}
    for f in sorted(BENCH.glob("train_speed_small_idle_*.json")):
        rec = json.loads(f.read_text())
        rows, cpu = (rec["rows"], _cpu_label(rec["run_info"], f)) if isinstance(rec, dict) else (rec, _cpu_label({}, f))
        t = _train_rows(rows)
        for label, stage, b, hr, *_ in TRAIN_ROWS:
            if label not in t: continue
            base = t["RRDB stage, fp32" if stage == "rrdb" else "SRFlow flow stage, fp32 (the campaign)"]
            best[(cpu, stage)] = max(best.get((cpu, stage), 0.0), base / t[label])
            lines.append(f"| {cpu} | {label} | {b} x {hr}² | {t[label]:.3f} | {b * hr * hr / t[label] / 1e6:.3f} | {base / t[label]:.2f}x | `{f.name}` |")
    comp = []
    for f in sorted(BENCH.glob("train_speed_compile_*.json")):
        rec = json.loads(f.read_text()); r = rec["rows"][0]; rel = r["relative_to_first"]
        comp.append(f"on {_cpu_label(rec['run_info'], f)} (`{f.name}`, interleaved A/B, {r['rounds']} rounds, the flow stage at batch "
                    f"{r['batch']} x {r['hr_patch']}²), `torch.compile` of the flow makes fp32 {rel['fp32_compiled']:.2f}x and bf16 everywhere "
                    f"{rel['bf16_all_compiled']:.2f}x as fast as eager fp32 (bf16 eager {rel['bf16_all']:.2f}x; the best setting, "
                    f"{max(rel, key=rel.get).replace('_', ' ')}, {max(rel.values()):.2f}x), after a first (compiling) step "
                    f"of up to {max(r['first_step_s'].values()):.0f} s")
    for f in sorted(BENCH.glob("train_speed_profile_*.json")):
        rec = json.loads(f.read_text()); r = {x["setting"]: x["ms_per_step"] for x in rec["rows"]}
        fp, bf = r["fp32"], r["bf16_all+channels_last"]
        rest = lambda ms: ms["rest"] + ms["Adam + grad norm"]                      # noqa: E731
        comp.append(f"where a flow step's time goes on {_cpu_label(rec['run_info'], f)} (`{f.name}`, torch.profiler): convolutions take "
                    f"{fp['convolution']:.0f} of {sum(fp.values()):.0f} ms in fp32; bf16 everywhere with channels_last makes them "
                    f"{fp['convolution'] / bf['convolution']:.1f}x faster ({bf['convolution']:.0f} ms), but adds {bf['dtype casts']:.0f} ms of dtype "
                    f"casts, and the rest of the step (the flow's elementwise layers, Adam) {'grows' if rest(bf) > rest(fp) else 'shrinks'} "
                    f"({rest(bf):.0f} ms against {rest(fp):.0f} ms in fp32), so the step is only "
                    f"{sum(fp.values()) / sum(bf.values()):.2f}x faster: 2x needs the casts and elementwise layers fused, which "
                    "`torch.compile` does in part")
    flow = " and ".join(f"{v:.2f}x on {cpu}" for (cpu, st), v in best.items() if st == "flow")
    rrdb = " and ".join(f"{v:.2f}x on {cpu}" for (cpu, st), v in best.items() if st == "rrdb")
    study = RESULTS / "scale_study" / "quick" / "scale_study.csv"
    budget_min = pd.read_csv(study).budget_min.unique()
    if len(budget_min) != 1: sys.exit(f"readme_numbers: {study} mixes budgets {sorted(budget_min.tolist())} (CPU-min): the README sentence states one")
    recipe = pd.read_csv(RESULTS / "29_repro.scaling" / "quick" / "scale_recipe.csv")
    return "\n".join([
        "One training step (`benchmarks/train_speed.py`: batch sampling, forward, backward, NaN guard, Adam) of the small model "
        "the bundled checkpoints use, 1 thread, on an idle machine of each CPU kind:", "", *lines, "",
        f"The best setting's throughput against fp32 at the same configuration: RRDB stage {rrdb}; SRFlow flow stage {flow}. "
        + "".join(c[0].upper() + c[1:] + ". " for c in comp) + precision_quality(recipe, PRECISIONS, budget_min[0])])


PRECISIONS = {"K4_h32_fp32": "fp32", "K4_h32": "bf16 encoder", "K4_h32_bf16all": "bf16 everywhere"}   # the scale study's precision configurations


def precision_quality(recipe: pd.DataFrame, names: dict, budget_min: float) -> str:
    "29's recipe table (`scale_recipe.csv`: τ=0.9 LPIPS mean, best and worst seed per configuration) for the precisions in `names`: is the best one's worst seed better than the others' best?"
    q = recipe[recipe.config.isin(list(names))].set_index("config").sort_values("lpips_mean")
    best, rest = q.iloc[0], q.iloc[1:]
    seeds = lambda n: f"{int(n)} seed{'s' if n > 1 else ''}"                       # noqa: E731
    rival = rest["lpips_best"].idxmin()
    return (f"Speed is not quality per CPU-hour: at an equal budget of {budget_min:g} CPU-minutes the scale study "
            "(`nbs/29_repro.scaling.ipynb`) measured held-out τ=0.9 LPIPS, the mean over seeds (best to worst seed): "
            + ", ".join(f"{names[c]} {r.lpips_mean:.4f} ({r.lpips_best:.4f} to {r.lpips_worst:.4f}, {seeds(r.seeds)})" for c, r in q.iterrows()) + ". "
            + (f"The worst seed of {names[best.name]} beats every other precision's best seed, so the ranking holds across seeds"
               if (rest["lpips_best"] > best["lpips_worst"]).all() else
               f"The seeds overlap ({names[best.name]}'s worst seed {best['lpips_worst']:.4f}, {names[rival]}'s best {rest.loc[rival, 'lpips_best']:.4f}), "
               "so no precision is a measured advantage at this budget")
            + "; the campaign trains the flow in fp32, chosen on the seed-0 runs.")


PRETRAINED = ROOT / "srflow_nb" / "pretrained"


STATUS_MODELS = (("demo-4x-rrdb", "RRDB", "L1"), ("demo-4x", "SRFlow", "NLL"), ("demo-4x-esrgan", "ESRGAN", "GAN"),
                 ("demo-4x-hcflow", "HCFlow SR", "NLL"), ("demo-4x-hcflow-rescaling", "HCFlow rescaling", "rescaling"), ("demo-4x-sr3", "SR3", "diffusion"))


def status() -> str:
    "The Status paragraph's sentence on the bundled checkpoints: which the campaign replaced (v2) and which are still v1; steps, CPU-hours, precision."
    from srflow_nb.datasets import demo_images
    def fact(name, label, kind):
        last, cfg = pd.read_csv(PRETRAINED / f"{name}.metrics.csv").iloc[-1], json.loads((PRETRAINED / f"{name}.config.json").read_text())
        h = last.cpu_time_s / 3600
        prec = "fp32" if not cfg.get("amp") else f"{cfg['amp']} {'encoder' if cfg.get('amp_scope') == 'encoder' else 'everywhere'}"
        return f"{label}: {int(last.step) // 1000}k {kind} steps, {h:.1f} CPU-hour{'s' if round(h, 1) != 1 else ''}" + (f", {prec}" if kind == "NLL" else "")
    known = [m for m in STATUS_MODELS if (PRETRAINED / f"{m[0]}.metrics.csv").exists()]
    new = [m for m in known if (PRETRAINED / f"{m[0]}.data.json").exists()]
    old = [m for m in known if m not in new]
    v1 = f"by `bash tools/train_*.sh` on the {len(demo_images('train'))} demo training images"
    if not new: return f"The bundled checkpoints are **v1**, trained on this project's 2-core CPU {v1} ({'; '.join(fact(*m) for m in old)}; `srflow_nb/pretrained/MODEL_CARD.md`)."
    d = json.loads((PRETRAINED / f"{new[0][0]}.data.json").read_text())
    out = (f"The bundled checkpoints are **v2** where issue 24's campaign has replaced them, trained on this project's 2-core CPU by "
           f"`python tools/campaign.py` on the {d['train_images']} photographs of the built training set (`{d['manifest']}`) "
           f"({'; '.join(fact(*m) for m in new)})")
    if old: out += f"; still **v1**, trained {v1}: {'; '.join(fact(*m) for m in old)}"
    return out + " (`srflow_nb/pretrained/MODEL_CARD.md`)."


def _unnest(detail: str) -> str:
    "'a vs b (paper c vs d)' -> 'a vs b; paper c vs d' (for a detail quoted inside parentheses)."
    return detail.replace(" (paper", "; paper")[:-1] if " (paper" in detail and detail.endswith(")") else detail


def esrgan_note() -> str:
    "How the bundled ESRGAN was trained (its training log) and which of its Table 2 verdicts fail (20_repro.table2's findings.csv)."
    last = pd.read_csv(PRETRAINED / "demo-4x-esrgan.metrics.csv").iloc[-1]
    cfg = json.loads((PRETRAINED / "demo-4x-esrgan.config.json").read_text())
    f = pd.read_csv(RESULTS / "20_repro.table2" / "quick" / "findings.csv")
    gan = f[f.finding.str.contains("ESRGAN")]
    fail = gan[~gan.holds.astype(bool)]
    text = (f"ESRGAN (`demo-4x-esrgan`, `nbs/04a_esrgan.ipynb`) is a CPU fine-tune of `demo-4x-rrdb`: {int(last.step)} GAN steps, "
            f"{last.cpu_time_s / 3600:.2f} CPU-hours, batch {cfg['batch_size']} of {cfg['patch_size']}-px patches, a "
            f"{cfg['options'].get('disc_features', 64)}-channel discriminator and AlexNet perceptual features in place of VGG19 "
            f"(`srflow_nb/pretrained/MODEL_CARD.md`; `demo-4x-esrgan.metrics.csv`). Of its {len(gan)} Table 2 verdicts, "
            f"{len(gan) - len(fail)} hold")
    if len(fail):
        from srflow_nb.findings import PAPER_TABLE2_4X as P
        t2 = pd.read_csv(RESULTS / "20_repro.table2" / "quick" / "table2.csv", index_col=0)
        drop, pdrop = t2.loc["RRDB", "psnr"] - t2.loc["ESRGAN", "psnr"], P.loc["RRDB", "psnr"] - P.loc["ESRGAN", "psnr"]
        text += ("; " + "; ".join(f"*{r.finding}* does not ({_unnest(r.detail)})" for r in fail.itertuples()) +
                 ". The likely reasons: its perceptual loss is computed on the same AlexNet features LPIPS measures with, which "
                 "flatters its LPIPS; and a short CPU fine-tune of a small generator moves it less far from the RRDB than the paper's "
                 f"400k-step VGG19 ESRGAN: its PSNR falls {drop:.2f} dB below the RRDB's, the paper's {pdrop:.2f} dB.")
    else:
        text += "."
    return text


def tolerances() -> str:
    "findings.TOLERANCES beside the largest difference measured between the two CPU kinds (benchmarks/results/cross_cpu_differences.csv)."
    from srflow_nb.findings import TOLERANCES
    d = pd.read_csv(BENCH / "cross_cpu_differences.csv")
    lines = [f"| metric | tolerance | largest difference measured, {d.a.iloc[0]} vs {d.b.iloc[0]} (values compared) | beyond the file's last printed digit |",
             "|---|---|---|---|"]
    d = d.assign(beyond=(d.max_abs_diff - 10.0 ** -d.decimals).clip(lower=0))
    name = d.column.str.lower().str.extract(r"\((.+)\)$")[0].fillna(d.column.str.lower())    # "Restored (psnr)": the row's metric
    key = name.map(lambda n: n if n in TOLERANCES else next((k for k in TOLERANCES if n.endswith("_" + k)), None))
    for m, t in TOLERANCES.items():
        sel = d[key == m]
        meas = f"{sel.max_abs_diff.max():.2g} ({int(sel['values'].sum())}) | {sel.beyond.max():.2g}" if len(sel) else "not measured (no such column in the quick results) | -"
        lines.append(f"| `{m}` | {t:.3g} | {meas} |")
    return "\n".join(lines) + f"\n\n(`benchmarks/results/cross_cpu_differences.csv`, written by `tools/cross_cpu.py`.)"


BLOCKS = {"results-table": results_table, "tolerances": tolerances, "findings": findings_table, "esrgan": esrgan_note, "equivalence": equivalence,
          "speed-table": speed_table, "train-speed": train_speed, "status": status}


def _pattern(name: str) -> str:
    return rf"<!-- {re.escape(name)} -->\n(.*?)<!-- /{re.escape(name)} -->"


def block(text: str, name: str) -> str:
    "The text between the lines `<!-- name -->` and `<!-- /name -->` (without its final newline)."
    m = re.search(_pattern(name), text, re.S)
    if m is None: raise KeyError(f"README.md has no block <!-- {name} --> ... <!-- /{name} -->")
    return m.group(1).rstrip("\n")


def render(text: str) -> str:
    "`text` with every block replaced by what the result files say."
    for name, f in BLOCKS.items():
        block(text, name)
        new = f()
        text = re.sub(_pattern(name), lambda m: f"<!-- {name} -->\n{new}\n<!-- /{name} -->", text, flags=re.S)
    return text


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    new = render(README.read_text())
    README.write_text(new)
    print(f"rewrote {len(BLOCKS)} blocks of {README}")
