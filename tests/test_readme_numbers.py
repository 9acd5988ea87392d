"""The README's measured numbers are the committed result files' numbers: every generated block of README.md
(results table, findings, equivalence, speed table) equals what `tools/readme_numbers.py` renders from those files,
and spot checks read the README's tables back against the files directly."""
import importlib.util
import json
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "tools" / "readme_numbers.py")
rn = importlib.util.module_from_spec(spec); spec.loader.exec_module(rn)
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", list(rn.BLOCKS))
def test_block_matches_files(name):
    assert rn.block(README, name) == rn.BLOCKS[name](), f"README block {name!r} is stale: run `python tools/readme_numbers.py`"


def _rows(block):
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_results_table_against_table2_csv():
    t2 = pd.read_csv(ROOT / "data/results/20_repro.table2/quick/table2.csv", index_col=0)
    rows = _rows(rn.block(README, "results-table"))
    assert len(rows) == len(t2)
    for row, (_, r) in zip(rows, t2.iterrows()):
        for cell, col in zip(row[1:1 + len(rn.DIGITS)], rn.DIGITS):
            assert cell == ("-" if pd.isna(r[col]) else f"{r[col]:.{rn.DIGITS[col]}f}"), (row[0], col)


def test_findings_table_against_findings_csv():
    "Two tables, the papers' claims (with their source) and our hypotheses, with exactly the verdicts of the committed findings.csv files."
    from srflow_nb.findings import status
    block = rn.block(README, "findings")
    papers_text, ours_text = block.split("**Our hypotheses**")
    papers, ours = _rows(papers_text), _rows(ours_text)
    want_p, want_o = [], []
    for nb in rn.REPRO:
        for r in pd.read_csv(ROOT / "data/results" / nb / "quick/findings.csv").to_dict("records"):
            (want_o if r["source"] == "hypothesis" else want_p).append((f"`{nb}`", r["finding"], status(r), r["source"]))
    assert [(r[0], r[1], r[4].strip("*"), r[2]) for r in papers] == want_p
    assert [(r[0], r[1], r[3].strip("*")) for r in ours] == [w[:3] for w in want_o]
    assert want_p and want_o and any(not w[2].startswith("holds") for w in want_p), "no paper claim fails: suspicious for a CPU-trained demo model"


def test_equivalence_and_speed_against_json():
    eq = json.loads(rn.EQUIVALENCE_JSON.read_text())
    text = rn.block(README, "equivalence")
    e = eq["max_abs_error"]
    assert f"latents {rn._e(e['latents'])}" in text and f"samples at temperature 0.9 and 0 {rn._e(e['samples'])}" in text
    assert f"measured on {eq['machine']['cpu']}, {eq['machine']['cpu_kind']}" in text
    rows = _rows(rn.block(README, "speed-table"))
    files = sorted(rn.BENCH.glob("sample_speed_lr64_threads2_idle_*.json"))
    assert len(files) >= 2, "the speed table should show both CPU kinds (AMX and AVX-512-BF16)"
    for f in files:
        sp = json.loads(f.read_text())["seconds_per_sample"]
        fp32 = next(r for r in rows if r[1] == "fp32 (default)" and r[-1] == f"`{f.name}`")
        assert fp32[0] == rn._cpu_label(json.loads(f.read_text()), f)
        assert [float(x) for x in fp32[2:6]] == pytest.approx([sp["plain"], sp["fast_1"], sp["fast_10"], sp["sweep_11"]], rel=0.01)



def test_train_speed_against_json():
    "The training-speed table read back against the benchmark files: both CPU kinds, each row's s/step and its ratio to fp32."
    rows = _rows(rn.block(README, "train-speed"))
    files = sorted(rn.BENCH.glob("train_speed_small_idle_*.json"))
    assert {f.stem.rsplit("_", 1)[-1] for f in files} >= {"amx", "avx512bf16"}, "both CPU kinds should be measured"
    for f in files:
        rec = json.loads(f.read_text()); grid = rec["rows"] if isinstance(rec, dict) else rec
        pick = lambda stage, amp: next(r["s_per_step"] for r in grid if (r["stage"], r["amp"], r["threads"], r["encoder_frozen"], r["channels_last"],   # noqa: E731
                                                                         r["batch"]) == (stage, amp, 1, False, False, 8 if stage == "rrdb" else 4) and r.get("amp_scope") in (None, "encoder"))
        mine = {r[1]: r for r in rows if r[-1] == f"`{f.name}`"}
        fp32, bf16 = pick("rrdb", None), pick("rrdb", "bf16")
        assert float(mine["RRDB stage, bf16 (the campaign)"][3]) == pytest.approx(bf16, abs=5e-4)
        assert mine["RRDB stage, bf16 (the campaign)"][5] == f"{fp32 / bf16:.2f}x" and mine["RRDB stage, fp32"][5] == "1.00x"
        assert float(mine["SRFlow flow stage, fp32 (the campaign)"][4]) == pytest.approx(4 * 64 * 64 / pick("flow", None) / 1e6, abs=5e-4)
    for f in rn.BENCH.glob("train_speed_compile_*.json"):
        rel = json.loads(f.read_text())["rows"][0]["relative_to_first"]
        assert f"fp32 {rel['fp32_compiled']:.2f}x and bf16 everywhere {rel['bf16_all_compiled']:.2f}x" in rn.block(README, "train-speed")
        assert f"the best setting, {max(rel, key=rel.get).replace('_', ' ')}, {max(rel.values()):.2f}x" in rn.block(README, "train-speed")

def test_no_unsourced_claims():
    # numbers that once stood in the README without any result file behind them
    for claim in ("44.1 dB", "70 s", "50-55 dB", "4.8e-6"):
        outside = re.sub(r"<!-- (\S+) -->\n.*?<!-- /\1 -->", "", README, flags=re.S)
        assert claim not in outside, claim


def test_parameter_counts_against_official_meta():
    "The README's official parameter counts are the fixture's (counted from the official code; tests/test_model.py builds them)."
    counts = json.loads((ROOT / "tests/fixtures/official_4x_tiny/meta.json").read_text())["param_count_paper_configs"]
    text = " ".join(README.split())
    assert f"DF2K-4X {counts['SRFlow_DF2K_4X']:,}" in text and f"CelebA-8X {counts['SRFlow_CelebA_8X']:,}" in text


def test_status_training_numbers_against_metrics():
    "The Status paragraph's steps and CPU-hours of the bundled checkpoints are the last rows of their training logs."
    text = " ".join(README.split())
    pre = ROOT / "srflow_nb/pretrained"
    v2, v1 = text.split("still **v1**") if "still **v1**" in text else (text, "")
    for name, label, kind in (("demo-4x-rrdb", "RRDB", "L1"), ("demo-4x", "SRFlow", "NLL"), ("demo-4x-esrgan", "ESRGAN", "GAN"),
                              ("demo-4x-hcflow", "HCFlow SR", "NLL"), ("demo-4x-hcflow-rescaling", "HCFlow rescaling", "rescaling")):
        last = pd.read_csv(pre / f"{name}.metrics.csv").iloc[-1]
        part = v2 if (pre / f"{name}.data.json").exists() else v1          # a campaign model is listed among the v2 ones, others after
        m = re.search(rf"{label}: (\d+)k {kind} steps, ([\d.]+) CPU-hours?", part)
        assert m, f"README Status no longer states {label}'s training where it belongs: update this test"
        assert int(m.group(1)) * 1000 == int(last.step), (label, last.step)
        assert float(m.group(2)) == round(last.cpu_time_s / 3600, 1), (label, last.cpu_time_s)
    data = pre / "demo-4x.data.json"                   # a campaign model (tools/campaign.py bundle): the built training set
    if data.exists(): assert f"on the {json.loads(data.read_text())['train_images']} photographs of the built training set" in text
    else:
        from srflow_nb.datasets import demo_images
        assert f"on the {len(demo_images('train'))} demo training images" in text


def test_model_card_esrgan_section_from_files():
    "MODEL_CARD.md's demo-4x-esrgan section is what `tools/export_demo.py` renders from the bundled files and table2.csv."
    spec = importlib.util.spec_from_file_location("export_demo", ROOT / "tools" / "export_demo.py")
    ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
    from srflow_nb.datasets import demo_images
    pre = ROOT / "srflow_nb/pretrained"
    section = ex.esrgan_card(pre, len(demo_images("train")), ROOT / ex.TABLE2_CSV)
    assert section and section.replace(str(ROOT) + "/", "") in (pre / "MODEL_CARD.md").read_text(), "run `python tools/export_demo.py --card_only`"
    last = pd.read_csv(pre / "demo-4x-esrgan.metrics.csv").iloc[-1]
    assert f"| {int(last.step)} | {last.cpu_time_s / 3600:.2f} |" in section            # steps and CPU-hours: the training log's last row
    t2 = pd.read_csv(ROOT / ex.TABLE2_CSV, index_col=0).loc["ESRGAN"]
    assert f"| ESRGAN | {t2.psnr:.2f} | {t2.ssim:.4f} | {t2.lpips:.4f} | {t2.lr_psnr:.2f} |" in section
    assert int(last.step) == json.loads((pre / "demo-4x-esrgan.config.json").read_text())["iterations"]   # the bundled run finished


def test_precision_quality_says_whether_the_seeds_resolve_the_ranking():
    "The train-speed block's scale-study sentence: 29's recipe table (means, best and worst seeds), a ranking claimed only when seeds separate."
    names = {"K4_h32_fp32": "fp32", "K4_h32": "bf16 encoder"}
    toy = pd.DataFrame(dict(config=["K4_h32", "K4_h32_fp32", "K8_h32"], seeds=[2, 2, 1], lpips_mean=[0.14, 0.11, 0.05],
                            lpips_best=[0.13, 0.10, 0.05], lpips_worst=[0.15, 0.12, 0.05]))
    s = rn.precision_quality(toy, names, 12.0)
    assert "fp32 0.1100 (0.1000 to 0.1200, 2 seeds), bf16 encoder 0.1400 (0.1300 to 0.1500, 2 seeds)" in s and "ranking holds across seeds" in s
    assert "12 CPU-minutes" in s and "K8" not in s                          # only the named precisions
    toy.loc[0, "lpips_best"] = 0.115                                       # bf16 encoder's best seed now beats fp32's worst
    s = rn.precision_quality(toy, names, 12.0)
    assert "The seeds overlap (fp32's worst seed 0.1200, bf16 encoder's best 0.1150)" in s and "no precision is a measured advantage" in s
    recipe = pd.read_csv(rn.RESULTS / "29_repro.scaling" / "quick" / "scale_recipe.csv")
    budget = pd.read_csv(rn.RESULTS / "scale_study" / "quick" / "scale_study.csv").budget_min.iloc[0]
    assert rn.precision_quality(recipe, rn.PRECISIONS, budget) in rn.block(README, "train-speed")


def test_a_scale_study_of_mixed_budgets_is_one_line_not_a_sentence(tmp_path, monkeypatch):
    "The README's scale-study sentence states one CPU budget: a study that mixes budgets stops the tool with the file named."
    (tmp_path / "scale_study" / "quick").mkdir(parents=True)
    study = pd.read_csv(rn.RESULTS / "scale_study" / "quick" / "scale_study.csv")
    study.assign(budget_min=[12] * (len(study) - 1) + [24]).to_csv(tmp_path / "scale_study" / "quick" / "scale_study.csv", index=False)
    monkeypatch.setattr(rn, "RESULTS", tmp_path)
    with pytest.raises(SystemExit, match=r"scale_study\.csv mixes budgets \[12, 24\]"): rn.train_speed()
