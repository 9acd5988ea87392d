"""Reproducible on the next machine, and nothing overwritten (issue 23): a test run writes no committed file, every
reproduction notebook writes through `core.output_root` and checks its results against the committed ones within
`findings.TOLERANCES`, and the README's commands leave the checkout as they found it.

`tools/test.sh` ends with `git status --porcelain` and fails on any change or untracked file; these tests pin the
pieces that make that hold."""
import json, os, re, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REPRO = sorted((ROOT / "nbs").glob("2*_repro.*.ipynb"))


def _code(nb: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")


def _py(code: str, **env) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("IN_TEST", "SRFLOW_OUTPUT_ROOT")}
    return subprocess.run([sys.executable, "-c", code], env={**e, **env}, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def test_results_go_to_scratch_in_a_test_run_and_to_the_checkout_otherwise():
    code = "from srflow_nb.demo import results_dir; print(results_dir('20_repro.table2/quick'))"
    test_run, real_run = Path(_py(code, IN_TEST="1")), Path(_py(code))
    assert not test_run.resolve().is_relative_to(ROOT.resolve()), test_run
    assert real_run.resolve() == (ROOT / "data/results/20_repro.table2/quick").resolve()
    assert not test_run.exists(), "the scratch folder of a test run is removed when it exits"


def test_every_repro_notebook_writes_through_output_root_and_checks_its_results():
    assert len(REPRO) >= 9
    for nb in REPRO:
        src = _code(nb)
        assert "repo_root()" not in src, f"{nb.name}: writes results through repo_root() (use core.output_root, results_dir or repro_setup)"
        assert not re.search(r"""["']\.\./(data|figures)""", src), f"{nb.name}: a path into the checkout"
        assert "check_results(" in src, f"{nb.name}: never compares its results with the committed ones"
        assert "check_findings(" in src or nb.name.startswith(("26_", "26b_")), f"{nb.name}: never checks its verdicts"   # 26*: figures, no verdicts


def test_demo_output_is_ignored_by_git():
    "The README's main job writes demo_out/ inside the checkout: ignored, so a demo before the tests leaves no untracked file."
    out = subprocess.run(["git", "check-ignore", "-q", "demo_out/samples/x.png"], cwd=ROOT)
    assert out.returncode == 0, "demo_out/ is not git-ignored"


def test_committed_results_name_their_machine():
    "Every run record of the committed quick results names the CPU, its kind, the precision and the threads."
    runs = sorted((ROOT / "data/results").glob("*/quick/run.json"))
    assert runs
    # 24's run.json is written by its #| slow training cells, last run before machine records existed: rerunning them
    # (nbdev_test --flags slow, with SRFLOW_OUTPUT_ROOT at the checkout) refreshes it; until then it is the one exception
    for f in [f for f in runs if f.parts[-3] != "24_repro.ablations"]:
        r = json.loads(f.read_text())
        assert {"cpu", "cpu_kind", "isa", "threads"} <= set(r.get("machine", {})), f"{f}: no machine record"
        assert r.get("precision") in ("fp32", "bf16", "fp16"), f"{f}: no precision"


# Benchmark records whose code state is dirty by design, with why: an A/B of an uncommitted change against the committed code
# times both sides in one run, so the "after" side is the working tree (the change landed in the next commit).
DIRTY_BY_DESIGN = {"train_speed_trainer_protocol_ab.json": "A/B of the trainer before and after an uncommitted change (13_train)"}
CODE_SUFFIXES = (".py", ".ipynb", ".sh", ".toml", ".ini", ".cfg")


def _code_dirty(rec: dict) -> list[str]:
    "The code files a benchmark record says were uncommitted when it ran (README and result files are not code)."
    info = rec.get("run_info", rec)
    if not str(info.get("git_sha", "")).endswith("-dirty"): return []
    return [p for p in info.get("git_dirty") or ["<not recorded>"] if not p.startswith("benchmarks/results/") and
            (p == "<not recorded>" or p.endswith(CODE_SUFFIXES))]


def test_benchmark_records_come_from_committed_code():
    "A benchmark JSON that records its code state was measured by committed code (results and the README may differ)."
    recs = {f.name: json.loads(f.read_text()) for f in sorted((ROOT / "benchmarks/results").glob("*.json"))}
    dated = {n: r for n, r in recs.items() if isinstance(r, dict) and "git_sha" in r.get("run_info", r)}
    assert len(dated) >= 5
    bad = {n: _code_dirty(r) for n, r in dated.items() if n not in DIRTY_BY_DESIGN and _code_dirty(r)}
    assert not bad, f"benchmark records measured by uncommitted code (rerun them from a clean checkout): {bad}"
    assert _code_dirty(dict(run_info=dict(git_sha="abc-dirty", git_dirty=["benchmarks/train_speed.py", "README.md"]))) == ["benchmarks/train_speed.py"]
    assert _code_dirty(dict(git_sha="abc-dirty")) == ["<not recorded>"] and _code_dirty(dict(git_sha="abc")) == []
