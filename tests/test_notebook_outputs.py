"""Committed notebook outputs are current (tools/run_notebooks.py --check), and the stamp/check machinery can fail."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
rn = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(rn)


def test_committed_outputs_are_current():
    "Every notebook carries outputs produced by the current code (refresh: python tools/run_notebooks.py)."
    found = rn.check(rn.notebooks(ROOT), ROOT)
    assert not found, "\n".join(found + ["refresh with: python tools/run_notebooks.py (then commit the notebooks)"])


def _nb(*cells, metadata=None):
    return {"cells": [dict(cell_type="code", id=f"c{i}", metadata={}, execution_count=None, outputs=outs, source=src)
                      for i, (src, outs) in enumerate(cells)],
            "metadata": metadata or {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def repo(tmp_path):
    "A tiny checkout: settings.ini, a package file, data (a committed result and a quick result), one notebook."
    (tmp_path / "srflow_nb").mkdir(); (tmp_path / "srflow_nb" / "lib.py").write_text("X = 1\n")
    for d in ("data/results/a/full", "data/results/a/quick", "nbs"): (tmp_path / d).mkdir(parents=True)
    (tmp_path / "data/results/a/full/r.csv").write_text("1\n"); (tmp_path / "data/results/a/quick/r.csv").write_text("1\n")
    (tmp_path / "settings.ini").write_text("[DEFAULT]\nlib_name = srflow_nb\nlib_path = srflow_nb\nnbs_path = nbs\ntst_flags = slow cuda\n"
                                           "clear_all = False\nallowed_metadata_keys = srflow_nb\n")
    nb = _nb(("from matplotlib.figure import Figure\nf = Figure(figsize=(1, 1)); f.subplots().plot([0, 1])\n"
              "from srflow_nb import plots\nf", []),
             ("#| slow\nraise RuntimeError('a slow cell must not run')", []),
             ("#| eval: false\nraise RuntimeError('never')", []),
             ("print(1 + 1)", []))
    (tmp_path / "nbs" / "t.ipynb").write_text(json.dumps(nb))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
    return tmp_path


def test_stamp_follows_code_and_inputs(repo):
    nbp = repo / "nbs" / "t.ipynb"
    nb = json.loads(nbp.read_text())
    d0 = rn.inputs_digest(repo)
    nb["metadata"]["srflow_nb"] = {"inputs_sha256": rn.stamp_of(nb, d0)}
    nbp.write_text(json.dumps(nb))
    assert rn.check([nbp], repo) == []
    (repo / "data/results/a/quick/r.csv").write_text("2\n")          # results the notebooks rewrite: not an input
    assert rn.check([nbp], repo) == []
    (repo / "data/results/a/full/r.csv").write_text("2\n")           # a committed result it may read: stale
    assert any("stale" in p for p in rn.check([nbp], repo))
    (repo / "data/results/a/full/r.csv").write_text("1\n"); assert rn.check([nbp], repo) == []
    (repo / "srflow_nb" / "lib.py").write_text("X = 2\n")            # library changed: stale
    assert any("stale" in p for p in rn.check([nbp], repo))
    (repo / "srflow_nb" / "lib.py").write_text("X = 1\n")
    (repo / "srflow_nb" / "CARD.md").write_text("rewritten from results\n")   # a document (model card): not an input
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    assert rn.check([nbp], repo) == []
    (repo / "srflow_nb" / "card.json").write_text("{}\n")              # a tracked non-document file: an input
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    assert any("stale" in p for p in rn.check([nbp], repo))
    (repo / "srflow_nb" / "card.json").unlink(); subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    nb["cells"][3]["source"] = "print(1 + 2)"; nbp.write_text(json.dumps(nb))   # a cell changed: stale
    assert any("stale" in p for p in rn.check([nbp], repo))
    del nb["metadata"]["srflow_nb"]; nbp.write_text(json.dumps(nb))
    assert any("no outputs stamp" in p for p in rn.check([nbp], repo))


def test_check_rejects_unfit_outputs(repo):
    nbp = repo / "nbs" / "t.ipynb"
    outs = [{"output_type": "execute_result", "execution_count": None, "metadata": {}, "data": {"text/plain": "<Figure size 100x100 with 1 Axes>"}},
            {"output_type": "display_data", "metadata": {}, "data": {"text/plain": "VBox()", rn.WIDGET_VIEW: {"model_id": "x"}}},
            {"output_type": "error", "ename": "ValueError", "evalue": "", "traceback": []}]
    nb = _nb(("f", outs))
    nb["metadata"]["srflow_nb"] = {"inputs_sha256": rn.stamp_of(nb, rn.inputs_digest(repo))}
    nbp.write_text(json.dumps(nb))
    found = " | ".join(rn.check([nbp], repo))
    assert "figure as text" in found and "live-widget view" in found and "error output (ValueError)" in found


def test_skip_directives():
    flags = {"slow", "cuda"}
    assert rn.skipped("#| slow\nx", flags) and rn.skipped("#|cuda\nx", flags) and rn.skipped("#| eval: false\nx", flags)
    assert not rn.skipped("#| hide\nx", flags) and not rn.skipped("#| export\nslow = 1", flags) and not rn.skipped("# slow", flags)


def test_run_notebook_writes_png_outputs_and_stamp(repo):
    "A real kernel run: the figure is a PNG output, flagged cells are skipped, the stamp checks, nbdev_clean is idempotent."
    nbp = repo / "nbs" / "t.ipynb"
    env_pp = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env_pp] if env_pp else []))   # the real srflow_nb.plots
    try: info = rn.run_notebook(nbp, repo)
    finally:
        if env_pp is None: os.environ.pop("PYTHONPATH")
        else: os.environ["PYTHONPATH"] = env_pp
    nb = json.loads(nbp.read_text())
    fig_out = nb["cells"][0]["outputs"][0]["data"]
    assert fig_out["image/png"].startswith("iVBORw0KGgo")                  # base64 of the PNG signature
    assert nb["cells"][1]["outputs"] == [] and nb["cells"][2]["outputs"] == []
    assert "".join(nb["cells"][3]["outputs"][0]["text"]) == "2\n"
    assert info["cells_run"] == 2 and rn.check([nbp], repo) == []
    before = nbp.read_text()
    subprocess.run(["nbdev_clean", "--fname", str(nbp)], cwd=repo, check=True, capture_output=True)
    assert nbp.read_text() == before


def test_carried_campaign_state_is_no_notebook_input(tmp_path):
    "Committing the campaign's training state (data/campaign_state/, every session) must not stale all 48 notebooks: no notebook reads it."
    for f in ("data/campaign_state/srflow_8x/last.pt", "data/results/20_repro.table2/quick/table2.csv", "data/demo/manifest.json", "srflow_nb/core.py"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True); (tmp_path / f).write_text("x")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    assert rn._tracked_inputs(tmp_path) == ["data/demo/manifest.json", "srflow_nb/core.py"]   # quick/ results and carried state excluded
