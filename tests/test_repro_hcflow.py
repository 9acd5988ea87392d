"""`nbs/27_repro.hcflow`: listed with the other notebooks, stops with a clear error when a bundled HCFlow model is
missing, refuses a model of the wrong kind, and its result files (once committed: they come from the bundled models)
agree with each other: the SR table is `table2` of the two evaluation files, the rescaling table is the mean of the
per-image rescaling rows beside the SR table's rows."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from srflow_nb import checkpoints
from srflow_nb.core import InputError
from srflow_nb.findings import RESCALING_ROW, table2
from srflow_nb.hcflow import HCFlow, HCFlowConfig

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "nbs" / "27_repro.hcflow.ipynb"
RESULTS = ROOT / "data" / "results" / "27_repro.hcflow" / "quick"
SR_ROWS = ["Bicubic", "RRDB", "ESRGAN", "SRFlow τ=0", "SRFlow τ=0.9", "HCFlow τ=0", "HCFlow τ=0.9"]


def _cell(cid: str) -> str:
    cells = {c["id"]: c for c in json.loads(NB.read_text())["cells"]}
    src = cells[cid]["source"]
    return "".join(src) if isinstance(src, list) else src


def _result(name: str) -> Path:
    p = RESULTS / name
    if not p.exists(): pytest.skip(f"{p} not committed yet (regenerated once demo-4x-hcflow and demo-4x-hcflow-rescaling are bundled)")
    return p


def test_listed_with_the_notebooks():
    assert "| `27_repro.hcflow` |" in (ROOT / "README.md").read_text()
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    assert NB in mod.notebooks(ROOT)


@pytest.mark.parametrize("full", [False, True])
def test_settings(full, monkeypatch):
    "Both modes evaluate τ=0 and 0.9 with >= 2 samples (diversity); the default models are the bundled names."
    monkeypatch.delenv("SRFLOW_HCFLOW", raising=False); monkeypatch.delenv("SRFLOW_HCFLOW_RESCALING", raising=False)
    monkeypatch.setenv("SRFLOW_FULL", "1" if full else "0")
    ns = {}; exec(_cell("c27a0003"), ns)
    assert ns["FULL"] is full and {0.0, 0.9} <= set(ns["TEMPERATURES"]) and ns["N_SAMPLES"] >= 2
    assert ns["HCFLOW"] == "demo-4x-hcflow" and ns["HCFLOW_RESCALING"] == "demo-4x-hcflow-rescaling"
    assert {ns["HCFLOW"], ns["HCFLOW_RESCALING"]} <= set(checkpoints.PRETRAINED)


@pytest.mark.parametrize("name", ["demo-4x-hcflow", "demo-4x-hcflow-rescaling"])
def test_missing_bundled_model_is_an_error(name, monkeypatch, tmp_path):
    "A bundled name whose file is not installed (here: an empty pretrained folder) is one FileNotFoundError naming it and the path."
    monkeypatch.setattr(checkpoints, "pretrained_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=f"'{name}' not found at .*{checkpoints.PRETRAINED[name]}"):
        checkpoints.load_model_any(name)


def test_hcflow_model_checks_family_and_kind():
    "The notebook's loader: an HCFlow of the expected kind, an InputError naming the file otherwise."
    import srflow_nb.hcflow_train as H
    tiny = {"sr.pt": HCFlow(HCFlowConfig.sr_tiny_4x()), "resc.pt": HCFlow(HCFlowConfig.rescaling_tiny_4x()), "srflow.pt": object()}
    ns = dict(HCFlow=HCFlow, InputError=InputError, load_official_hcflow=H.load_official_hcflow, load_model_any=lambda s: tiny[s])
    exec(_cell("c27a0006"), ns)
    f = ns["hcflow_model"]
    assert f("sr.pt", "sr", "cpu").config.kind == "sr" and f("resc.pt", "rescaling", "cpu").config.kind == "rescaling"
    with pytest.raises(InputError, match="sr.pt: an HCFlow sr model, expected rescaling"): f("sr.pt", "rescaling", "cpu")
    with pytest.raises(InputError, match="srflow.pt: not an HCFlow model"): f("srflow.pt", "sr", "cpu")


def test_sr_table_is_table2_of_the_evaluations():
    sr = pd.read_csv(_result("sr_table.csv"), index_col=0)
    ev, hc = pd.read_csv(_result("evaluation.csv")), pd.read_csv(_result("hcflow_evaluation.csv"))
    assert set(ev.method) == {"bicubic", "rrdb", "esrgan", "srflow"} and set(hc.method) == {"hcflow"}
    assert ev.groupby("method").image.nunique().eq(hc.image.nunique()).all()           # every method on the same images
    m = list(sr.columns)
    got = pd.concat([table2(ev, [0.0, 0.9], m), table2(hc, [0.0, 0.9], m).rename(index=lambda s: s.replace("hcflow", "HCFlow"))])
    assert list(sr.index) == SR_ROWS == list(got.index)
    np.testing.assert_allclose(sr.to_numpy(float), got.to_numpy(float), atol=1e-4)


def test_rescaling_table_matches_its_rows():
    rt = pd.read_csv(_result("rescaling_table.csv"), index_col=0)
    per, sr = pd.read_csv(_result("rescaling.csv")), pd.read_csv(_result("sr_table.csv"), index_col=0)
    assert list(rt.index) == [RESCALING_ROW, "Bicubic", "RRDB", "SRFlow τ=0", "HCFlow τ=0"]
    assert sorted(per.image) == sorted(pd.read_csv(_result("evaluation.csv")).image.unique())   # the SR table's images
    np.testing.assert_allclose(rt.loc[RESCALING_ROW, ["psnr", "ssim", "lr_psnr"]].to_numpy(float),
                               per[["psnr", "ssim", "lr_psnr"]].mean().to_numpy(float), atol=1e-4)
    sr_rows = rt.drop(index=RESCALING_ROW)
    np.testing.assert_allclose(sr_rows[["psnr", "ssim"]].to_numpy(float), sr.loc[sr_rows.index, ["psnr", "ssim"]].to_numpy(float), atol=1e-4)
    assert sr_rows.lr_psnr.isna().all()                                              # SR rows use the bicubic LR itself


# --- the papers' numbers: every one shown comes from a committed file -------------------------------------------
from srflow_nb import findings as F, results as R

PAPERS_CSV = ROOT / "srflow_nb" / "papers" / "hcflow.csv"


def _run(cid: str, **ns) -> dict:
    "Execute one cell of 27 in `ns`; its last expression (a Markdown) lands in ns['_out']."
    from IPython.display import Markdown
    lines = _cell(cid).rstrip().splitlines()
    k = max(i for i, l in enumerate(lines) if l.startswith("Markdown("))
    lines[k] = "_out = " + lines[k]
    public = lambda m: {k: getattr(m, k) for k in dir(m) if not k.startswith("_")}      # noqa: E731  (27 imports from both)
    ns = {**public(F), **public(R), "pd": pd, "np": np, "Markdown": Markdown, **ns}
    exec("\n".join(lines), ns)
    return ns


def _file_numbers() -> set[float]:
    "Every number of the papers' files 27 reads: srflow_nb/papers/hcflow.csv (read with plain pandas) and SRFlow's Table 2."
    raw = pd.read_csv(PAPERS_CSV)
    vals = raw[list(F.PAPER_METRICS)].to_numpy(float).ravel().tolist() + F.PAPER_TABLE2_4X.to_numpy(float).ravel().tolist()
    return {round(v, 6) for v in vals if not np.isnan(v)}


def test_papers_file_rows_have_sources_and_are_what_findings_reads():
    raw = pd.read_csv(PAPERS_CSV)
    assert raw.source.str.contains(r"arXiv \d{4}\.\d{5}").all() and raw.source.str.contains("[Tt]able").all()
    assert not raw.first_hand.any(), "a first-hand row: drop the 'not in the stored paper text' wording in 27 and 19b"
    sr = raw[raw.table == "sr_div2k_4x"].set_index("method")
    pd.testing.assert_frame_equal(F.PAPER_HCFLOW_4X, sr[list(F.PAPER_HCFLOW_4X.columns)], check_names=False)
    assert F.PAPER_IRN_4X_PSNR_Y == raw.set_index(["table", "method"]).loc[("rescaling_div2k_4x", "IRN"), "psnr"]


def test_no_paper_number_typed_in_the_notebook():
    "Numbers with two or more decimals (27.02, 0.124, 35.07) appear in no cell of 27: they are read from the files."
    import re
    for c in json.loads(NB.read_text())["cells"]:
        s = re.sub(r"arXiv\s+\d{4}\.\d{4,5}", "", "".join(c["source"]))          # arXiv ids are not numbers
        assert not re.findall(r"(?<![\w.])\d+\.\d{2,}", s), (c["id"], re.findall(r"(?<![\w.])\d+\.\d{2,}", s))


def _fake_sr_table():
    return pd.DataFrame({m: np.linspace(0.1, 0.7, len(SR_ROWS)) for m in ("psnr", "ssim", "lpips", "lr_psnr", "diversity")}, index=SR_ROWS)


def test_sr_paper_column_is_the_files(monkeypatch):
    ns = _run("c27a0010", sr_table=_fake_sr_table())
    paper = ns["side"].xs("paper", axis=1, level=1)
    shown = {round(v, 6) for v in paper.to_numpy(float).ravel() if not np.isnan(v)}
    assert shown and shown <= _file_numbers()
    assert paper.loc["HCFlow τ=0.9", "psnr"] == pd.read_csv(PAPERS_CSV).set_index(["table", "method"]).loc[("sr_div2k_4x", "HCFlow"), "psnr"]
    assert "arXiv 2108.05301" in ns["_out"].data and "second-hand" in ns["_out"].data
    # a changed file changes what is shown (read, not typed)
    ns = _run("c27a0010", sr_table=_fake_sr_table(), PAPER_HCFLOW_4X=F.PAPER_HCFLOW_4X.assign(psnr=11.11))
    assert ns["side"].loc["HCFlow τ=0.9", ("psnr", "paper")] == 11.11


def test_rescaling_paper_column_is_the_files():
    rescaling = pd.DataFrame({"psnr": [30.0, 25, 26, 26, 25], "ssim": [0.9, 0.7, 0.8, 0.8, 0.7], "lr_psnr": [40.0] + [np.nan] * 4},
                             index=[RESCALING_ROW, "Bicubic", "RRDB", "SRFlow τ=0", "HCFlow τ=0"])
    ns = _run("c27a0014", rescaling=rescaling)
    shown = {round(v, 6) for v in ns["paper_resc"].to_numpy(float).ravel() if not np.isnan(v)}
    assert shown <= _file_numbers() and np.isnan(ns["paper_resc"].loc[RESCALING_ROW, "psnr"])   # HCFlow's own: not available
    assert f"{F.PAPER_IRN_4X_PSNR_Y:.2f} dB" in ns["_out"].data and "arXiv 2005.05650" in ns["_out"].data


def test_papers_section_lists_what_is_missing():
    ns = _run("c27a0031")
    text = ns["_out"].data
    for r in pd.read_csv(PAPERS_CSV).itertuples():
        assert r.source in text                                          # every row's source is shown
    assert "HCFlow (rescaling_div2k_4x): no number" in text


def test_verdict_details_quote_the_files():
    import re
    df = pd.DataFrame([dict(image=i, method=m, temperature=t, sample=0, psnr=p, lpips=l) for i in ("a", "b")
                       for m, t, p, l in [("rrdb", np.nan, 26, 0.25), ("srflow", 0.0, 26, 0.25), ("srflow", 0.9, 25, 0.2),
                                          ("hcflow", 0.0, 25.5, 0.3), ("hcflow", 0.9, 24, 0.34)]])
    for v in F.hcflow_findings(df, quiet=True):
        for x in re.findall(r"paper ([\d.]+) vs ([\d.]+)", v["detail"]):
            assert {round(float(y), 3) for y in x} <= {round(n, 3) for n in _file_numbers()}, v


# --- verdicts: computed from the CSVs the notebook writes, and able to fail ---------------------------------------
def _write_results(out: Path, hc_psnr: float, resc_psnr: float):
    rows = []
    for i in ("a", "b"):
        rows += [dict(image=i, method="rrdb", temperature=np.nan, sample=0, psnr=26.0, ssim=0.8, lpips=0.25),
                 dict(image=i, method="srflow", temperature=0.0, sample=0, psnr=26.0, ssim=0.8, lpips=0.25),
                 dict(image=i, method="srflow", temperature=0.9, sample=0, psnr=25.0, ssim=0.75, lpips=0.20)]
    pd.DataFrame(rows).to_csv(out / "evaluation.csv", index=False)
    pd.DataFrame([dict(image=i, method="hcflow", temperature=t, sample=0, psnr=hc_psnr - t, ssim=0.8, lpips=0.2)
                  for i in ("a", "b") for t in (0.0, 0.9)]).to_csv(out / "hcflow_evaluation.csv", index=False)
    pd.DataFrame({"psnr": [resc_psnr, 25.0, 26.0], "ssim": [0.9, 0.7, 0.8], "lr_psnr": [40.0, np.nan, np.nan]},
                 index=pd.Index([RESCALING_ROW, "Bicubic", "RRDB"], name="method")).to_csv(out / "rescaling_table.csv")


@pytest.mark.parametrize("good", [True, False])
def test_findings_cell_reads_the_written_csvs_and_can_fail(good, tmp_path):
    "The findings cell judges the CSVs in R.out (not in-memory tables): a strong HCFlow holds, a weak one does not."
    from types import SimpleNamespace
    _write_results(tmp_path, hc_psnr=26.2 if good else 20.0, resc_psnr=33.0 if good else 25.5)
    ns = _run("c27a0018", R=SimpleNamespace(out=tmp_path))
    holds = dict((v["finding"], v["holds"]) for v in ns["V"])
    assert holds["HCFlow τ=0.9 PSNR above SRFlow τ=0.9's"] is good and holds["rescaling HR PSNR above every SR method's"] is good
    assert pd.read_csv(tmp_path / "findings.csv").holds.tolist() == [v["holds"] for v in ns["V"]]
