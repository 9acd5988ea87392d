"""`nbs/28_repro.sr3.ipynb`: the SR3 paper numbers it cites are the paper's own sentences, and its committed quick
results agree with each other (the cost table is the per-step evaluations and clock records it claims to summarise,
SR3's network evaluations are its step counts, the table's SR3 row is its full schedule)."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from srflow_nb.findings import table2

ROOT = Path(__file__).resolve().parents[1]
PAPER_CSV = ROOT / "srflow_nb" / "papers" / "sr3.csv"
ABSTRACTS = [ROOT.parent / "shared" / "papers" / "sr3-abstract.txt", Path("/work/shared/papers/sr3-abstract.txt")]
QUICK = ROOT / "data" / "results" / "28_repro.sr3" / "quick"
METRICS = ["psnr", "ssim", "lpips", "lr_psnr", "diversity"]


def test_paper_numbers_are_quoted():
    paper = pd.read_csv(PAPER_CSV)
    assert list(paper.columns) == ["claim", "value", "unit", "setting", "comparable_here", "source", "quote"]
    assert paper.source.str.contains("2104.07636").all() and set(paper.comparable_here) == {"no"}
    for r in paper.itertuples():
        assert f"{r.value:g}" in r.quote, (r.claim, r.value, r.quote)        # the number stands in the sentence it is taken from
    text = next((p.read_text() for p in ABSTRACTS if p.exists()), None)
    if text is None: pytest.skip("the SR3 abstract is not on this machine")
    flat = " ".join(text.split())
    for q in paper.quote: assert q in flat, q


need_results = pytest.mark.skipif(not (QUICK / "cost.csv").exists(), reason="28_repro.sr3 quick results not generated yet")


@pytest.fixture
def quick():
    run = json.loads((QUICK / "run.json").read_text())
    return run, pd.read_csv(QUICK / "cost.csv"), pd.read_csv(QUICK / "timing.csv", dtype={"image": str})


@need_results
def test_cost_is_the_evaluations_and_the_clock(quick):
    run, cost, timing = quick
    sr3 = cost[cost.method == "sr3"].set_index("steps")
    assert sr3.index.tolist() == run["sr3_steps"] and sr3.nfe.tolist() == [float(s) for s in run["sr3_steps"]]
    assert (cost[cost.method == "srflow"].nfe == 1).all()
    for s in run["sr3_steps"]:
        ev = pd.read_csv(QUICK / f"sr3_{s}steps_evaluation.csv")
        assert len(ev) == len(run["images"]) * run["n_samples"] == sr3.loc[s, "samples"]
        np.testing.assert_allclose(sr3.loc[s, METRICS].to_numpy(float), ev[METRICS].mean().to_numpy(float), rtol=1e-5)
        t = timing[(timing.method == "sr3") & (timing.steps == s)]
        assert sorted(t.image) == sorted(run["images"])                      # one clocked call per image
        assert math.isclose(sr3.loc[s, "cpu_s_per_sample"], t.cpu_s.sum() / t.samples.sum(), rel_tol=1e-4)
        assert math.isclose(sr3.loc[s, "s_per_sample"], t.wall_s.sum() / t.samples.sum(), rel_tol=1e-4)
    flow = pd.read_csv(QUICK / "evaluation.csv")
    for r in cost[cost.method == "srflow"].itertuples():
        ev = flow[(flow.method == "srflow") & np.isclose(flow.temperature, r.temperature)]
        np.testing.assert_allclose([getattr(r, m) for m in METRICS], ev[METRICS].mean().to_numpy(float), rtol=1e-5)


@need_results
def test_table_rows_are_their_evaluations(quick):
    run, cost, _ = quick
    table = pd.read_csv(QUICK / "table.csv", index_col=0)
    full = max(run["sr3_steps"])
    ev = pd.read_csv(QUICK / f"sr3_{full}steps_evaluation.csv")
    np.testing.assert_allclose(table.loc[f"SR3 ({full} steps)", METRICS].to_numpy(float), ev[METRICS].mean().to_numpy(float), atol=1e-4)
    t2 = table2(pd.read_csv(QUICK / "evaluation.csv"), run["temperatures"], METRICS)
    np.testing.assert_allclose(table.loc[t2.index, METRICS].to_numpy(float), t2.to_numpy(float), atol=1e-4)
    assert {"HCFlow τ=0", "HCFlow τ=0.9"} <= set(table.index)


# ---------------------------------------------------------------- bundling: demo-4x-sr3's files and its model card
def _export_demo():
    import importlib.util
    spec = importlib.util.spec_from_file_location("export_demo", ROOT / "tools" / "export_demo.py")
    ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
    return ex


def _fake_run(path):
    "An SR3 run folder as `srflow train --family sr3` leaves it (tiny model, two checkpoints, config/model_config/metrics/val files)."
    import torch
    from srflow_nb.checkpoints import save_checkpoint
    from srflow_nb.sr3 import SR3, SR3Config
    from srflow_nb.sr3_train import sr3_demo
    torch.manual_seed(0)
    m = SR3(SR3Config.tiny())
    cfg, mc = sr3_demo(out_dir=str(path)).to_dict(), {"kind": "sr3", **m.config.to_dict()}
    path.mkdir()
    for step, file in ((1000, "best.pt"), (2000, "checkpoints/step_00002000.pt")):
        save_checkpoint(path / file, dict(modules={"model": m.state_dict()}, optimizers={}, config=cfg, model_config=mc, step=step, cpu_time=0.9 * step))
    (path / "config.json").write_text(json.dumps(cfg)); (path / "model_config.json").write_text(json.dumps(mc))
    pd.DataFrame(dict(step=[1000, 2000], loss=[0.5, 0.25], skipped=[0, 2], cpu_time_s=[900.0, 1800.0])).to_csv(path / "metrics.csv", index=False)
    pd.DataFrame(dict(step=[1000, 2000], bicubic_psnr=[25.0, 25.0], sr3_psnr=[21.125, 22.5], sr3_lr_psnr=[30.0, 31.5],
                      bicubic_lpips=[0.4, 0.4], sr3_lpips=[0.5, 0.375])).to_csv(path / "val.csv", index=False)
    return m


def _export(checkpoint, dest):
    "The model export `tools/train_sr3.sh export` runs (`checkpoints.export_model`, what `srflow export` runs)."
    from srflow_nb.checkpoints import export_model
    return export_model(checkpoint, dest)


def test_bundle_and_card(tmp_path):
    import torch
    from srflow_nb.sr3_train import load_sr3
    ex, out = _export_demo(), tmp_path / "bundle"
    m = _fake_run(tmp_path / "run")
    out.mkdir()
    assert ex.sr3_card(out, 17) == ""                                                  # nothing bundled: no section
    with pytest.raises(SystemExit, match="export the model first"): ex.bundle_sr3_files(tmp_path / "run", out)
    dest = _export(tmp_path / "run/checkpoints/step_00002000.pt", out / ex.PRETRAINED[ex.SR3])
    assert ex.sr3_card(out, 17) == ""                                                  # the run files are not copied yet
    ex.bundle_sr3_files(tmp_path / "run", out)
    assert all(torch.equal(a, b) for a, b in zip(load_sr3(dest).state_dict().values(), m.state_dict().values()))
    for f in ex.SR3_FILES: assert (out / f"{ex.SR3}.{f}").read_bytes() == (tmp_path / "run" / f).read_bytes()
    card = ex.sr3_card(out, 17, results=tmp_path / "no-results")
    assert card.startswith("## `demo-4x-sr3`") and card.count("## `") == 1
    params = sum(p.numel() for p in m.parameters())
    assert f"| `demo-4x-sr3` | `{dest.name}` | {params:,} | 2000 | 0.50 | 2000 | 0.50 | 2 | {len(m.sample_gammas)} |" in card
    assert "bundled step 2000 (the last validated step) is the best of 2 validations" in card
    assert "PSNR 21.12 dB at step 1000 -> 22.50 dB at step 2000 (best 22.50 dB at step 2000)" in card and "LPIPS 0.3750 (bicubic 0.4000)" in card
    assert "| iterations | 1000000 | 24000 |" in card and "| model channels | 128 | 16 |" in card and "Held-out" not in card
    # the SR3 comparison's results join the card only when they were made with the bundled model
    res = tmp_path / "results"; res.mkdir()
    pd.DataFrame(dict(psnr=[25.0, 24.0, 20.0], ssim=[0.7, 0.6, 0.5], lpips=[0.3, 0.2, 0.25], lr_psnr=[38.0, 43.0, 30.0], diversity=[np.nan, 3.0, 9.0]),
                 index=pd.Index(["Bicubic", "SRFlow τ=0.9", "SR3 (100 steps)"], name="method")).to_csv(res / "table.csv")
    pd.DataFrame(dict(method=["sr3", "sr3", "srflow"], steps=[10, 100, np.nan], temperature=[np.nan, np.nan, 0.9],
                      cpu_s_per_sample=[0.5, 5.0, 0.125])).to_csv(res / "cost.csv", index=False)
    (res / "run.json").write_text(json.dumps(dict(sr3="some.safetensors", images=["a"], n_samples=2, device="cpu")))
    assert "Held-out" not in ex.sr3_card(out, 17, results=res)
    (res / "run.json").write_text(json.dumps(dict(sr3="demo-4x-sr3", images=["a"], n_samples=2, device="cpu")))
    card = ex.sr3_card(out, 17, results=res)
    assert "| SR3 (100 steps) | 20.00 | 0.5000 | 0.2500 | 30.00 | 9 |" in card and "| Bicubic | 25.00 | 0.7000 | 0.3000 | 38.00 | - |" in card and "SR3 5 CPU-s at 100 steps, 0.5 at 10; SRFlow τ=0.9 0.125 CPU-s" in card
    (tmp_path / "run/val.csv").unlink()
    with pytest.raises(SystemExit, match="lacks val.csv"): ex.bundle_sr3_files(tmp_path / "run", out)


def test_model_card_sr3_section_from_files():
    "MODEL_CARD.md's SR3 section is what `tools/export_demo.py` renders from the bundled files (none before the campaign is bundled)."
    from srflow_nb.datasets import demo_images
    ex, pre = _export_demo(), ROOT / "srflow_nb/pretrained"
    card = ex.sr3_card(pre, len(demo_images("train")), results=ROOT / ex.SR3_RESULTS)
    text = (pre / "MODEL_CARD.md").read_text()
    if not card: assert "## `demo-4x-sr3" not in text; return
    assert card.replace(str(ROOT) + "/", "") in text, "run `python tools/export_demo.py --card_only`"


# ---------------------------------------------------------------- full mode never falls back to the CPU demo models
def _code_cells(upto: str) -> list[str]:
    "The code cells of 28_repro.sr3 up to and including the first one containing `upto`."
    nb = json.loads((ROOT / "nbs" / "28_repro.sr3.ipynb").read_text())
    out = []
    for c in nb["cells"]:
        if c["cell_type"] != "code": continue
        out.append("".join(c["source"]))
        if upto in out[-1]: return out
    raise AssertionError(f"no cell with {upto!r}")


@pytest.mark.parametrize("given", [{}, {"SRFLOW_SR3": "sr3.pt"}, {"SRFLOW_HCFLOW": "hcflow.pt"}])
def test_full_mode_needs_its_models(monkeypatch, given):
    for k in ("SRFLOW_SR3", "SRFLOW_HCFLOW"): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SRFLOW_FULL", "1")
    for k, v in given.items(): monkeypatch.setenv(k, v)
    ns = {}
    cells = _code_cells("repro_setup(")
    for src in cells[:-1]: exec(src, ns)
    assert ns["FULL"] is True and (ns["SR3"], ns["HCFLOW"]) == (given.get("SRFLOW_SR3"), given.get("SRFLOW_HCFLOW"))
    with pytest.raises(KeyError, match=r"\$SRFLOW_SR3 .* and \$SRFLOW_HCFLOW"): exec(cells[-1], ns)
