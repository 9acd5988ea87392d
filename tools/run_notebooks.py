#!/usr/bin/env python3
"""Execute the notebooks in quick mode and commit-ready: outputs saved in the notebook, stamped with the hash of what produced them.

    python tools/run_notebooks.py                 # every notebook in nbs/ (2 at a time), outputs written in place
    python tools/run_notebooks.py nbs/21_repro.temperature.ipynb nbs/17_plots.ipynb
    python tools/run_notebooks.py --check         # CI: every notebook's outputs are current (no execution, ~1 s)

Execution is a real Jupyter kernel (nbclient), the way JupyterLab runs a notebook, from the notebook's folder, with
`SRFLOW_FULL` unset (quick mode). Cells flagged `#| slow`, `#| cuda` (settings.ini `tst_flags`) or `#| eval: false`
are skipped, as `nbdev_test --flags ""` skips them; their outputs are left empty.

Outputs are post-processed to stay light and renderable everywhere: the live-widget part of a display
(`application/vnd.jupyter.widget-view+json`, meaningless without the kernel that held the widget) is dropped, so a
widget app shows its static fallback (the PNG / HTML that `srflow_nb.plots.Controls` and the explorer put beside it);
then `nbdev_clean` runs on the file, so the sync gate stays clean.

The stamp (`metadata.srflow_nb.inputs_sha256`) hashes the code the run depended on: every code cell source of the
notebook, and every git-tracked file under `srflow_nb/` (library + bundled checkpoints) and `data/` (demo images,
committed results), except the `quick/` and `partial/` result folders that the notebooks themselves (re)write, the
campaign's carried training state (`data/campaign_state/`, read by `tools/campaign.py` alone) and
Markdown documents (`*.md`: model cards, READMEs), which no notebook executes or reads. That keeps the model card,
whose held-out sections are rendered from the repro notebooks' results, from staling the notebooks that produced them.
`--check` recomputes it: a notebook whose cells, library or inputs changed since its outputs were produced is stale,
and CI fails with the command that refreshes it. It also fails on error outputs, figures left as text
(`<Figure size ...>`) and notebooks over the size budget.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP_KEY = "srflow_nb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MAX_NOTEBOOK_BYTES = 2_000_000          # per notebook, outputs included
INPUT_DIRS = ("srflow_nb", "data")
EXCLUDED_PARTS = {"quick", "partial", "cache", "campaign_state", "__pycache__"}   # campaign_state: training state (tools/campaign.py carry), no notebook's input
DOC_SUFFIXES = {".md"}                   # documents, not inputs: no notebook's outputs depend on them


def notebooks(root: Path = ROOT) -> list[Path]:
    "Every notebook under nbs/ (folders starting with _ or . skipped, as nbdev does)."
    return sorted(p for p in (root / "nbs").rglob("*.ipynb")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(root / "nbs").parts))


def _tracked_inputs(root: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", *INPUT_DIRS], capture_output=True, check=True).stdout
    files = [f for f in out.decode().split("\0") if f]
    return sorted(f for f in files if not (EXCLUDED_PARTS & set(Path(f).parts[:-1])) and Path(f).suffix not in DOC_SUFFIXES
                  and (root / f).is_file())


def inputs_digest(root: Path = ROOT) -> str:
    "sha256 over the tracked library and data files (path + content hash), the part of the stamp shared by every notebook."
    h = hashlib.sha256()
    for f in _tracked_inputs(root):
        h.update(f.encode() + b"\0" + hashlib.sha256((root / f).read_bytes()).digest())
    return h.hexdigest()


def code_sources(nb: dict) -> list[str]:
    src = lambda c: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
    return [src(c) for c in nb["cells"] if c["cell_type"] == "code"]


def stamp_of(nb: dict, digest: str) -> str:
    "The stamp of a notebook: its code cell sources + the shared inputs digest."
    h = hashlib.sha256(digest.encode())
    for s in code_sources(nb): h.update(b"\0cell\0" + s.encode())
    return h.hexdigest()


def _skip_flags(root: Path) -> set[str]:
    import configparser
    cfg = configparser.ConfigParser(); cfg.read(root / "settings.ini")
    return set(cfg["DEFAULT"].get("tst_flags", "").split())


def skipped(source: str, flags: set[str]) -> bool:
    "True for cells nbdev_test --flags '' skips: a tst_flags directive (#| slow, #| cuda) or #| eval: false."
    for line in source.splitlines():
        s = line.strip()
        if not s.startswith("#|"): continue
        words = s[2:].strip().split()
        if words and words[0] in flags: return True
        if re.fullmatch(r"#\|\s*eval:\s*false\s*", s, flags=re.I): return True
    return False


def _light_outputs(cell) -> None:
    for o in cell.get("outputs", []):
        if "data" in o: o["data"].pop(WIDGET_VIEW, None)
        o.get("metadata", {}).pop(WIDGET_VIEW, None)
        o.pop("transient", None)


def run_notebook(path: Path, root: Path = ROOT, timeout: int = 1800) -> dict:
    "Execute `path` in a fresh kernel (quick mode), write it back with light outputs and its stamp; return timing info."
    import nbformat
    from nbclient import NotebookClient
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    flags = _skip_flags(root)
    before = inputs_digest(root)
    env = {k: v for k, v in os.environ.items() if k != "SRFLOW_FULL"}
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join([str(root), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=True, record_timing=False)   # False breaks on Output widgets (KeyError on their comm id)
    t0, n_run = time.time(), 0
    with client.setup_kernel(env=env):
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code": continue
            if skipped(cell.source, flags): cell.outputs = []; continue
            client.execute_cell(cell, i)          # raises CellExecutionError (cell source and traceback) on failure
            _light_outputs(cell); n_run += 1
    seconds = time.time() - t0
    after = inputs_digest(root)
    if after != before:
        raise RuntimeError(f"{path.name}: running it changed tracked files under {INPUT_DIRS} (outside quick/ and partial/); "
                           "a notebook must not rewrite its own inputs")
    nb.metadata.pop("widgets", None)          # live widget state: meaningless without the kernel (outputs keep the static fallback)
    nb.metadata[STAMP_KEY] = {"inputs_sha256": stamp_of(nb, after), "mode": "quick",
                              "command": "python tools/run_notebooks.py " + str(path.relative_to(root))}
    nbformat.write(nb, path)
    subprocess.run(["nbdev_clean", "--fname", str(path)], cwd=root, check=True, capture_output=True)
    return dict(notebook=path.name, seconds=round(seconds, 1), cells_run=n_run, bytes=path.stat().st_size)


def problems(path: Path, digest: str) -> list[str]:
    "Why the committed outputs of `path` are not current or not fit to commit (empty list: fine)."
    nb = json.loads(Path(path).read_text())
    name, out = Path(path).name, []
    stamp = nb.get("metadata", {}).get(STAMP_KEY, {}).get("inputs_sha256")
    if stamp is None: out.append(f"{name}: no outputs stamp (never run by tools/run_notebooks.py)")
    elif stamp != stamp_of(nb, digest): out.append(f"{name}: outputs are stale (its cells, srflow_nb/ or data/ changed since they were produced)")
    for i, c in enumerate(nb["cells"]):
        for o in c.get("outputs", []):
            if o.get("output_type") == "error": out.append(f"{name}: cell {i} has an error output ({o.get('ename')})")
            data = o.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if text.startswith("<Figure size") and "image/png" not in data: out.append(f"{name}: cell {i} shows a figure as text")
            if WIDGET_VIEW in data: out.append(f"{name}: cell {i} keeps a live-widget view without its kernel")
    size = Path(path).stat().st_size
    if size > MAX_NOTEBOOK_BYTES: out.append(f"{name}: {size / 1e6:.1f} MB, over the {MAX_NOTEBOOK_BYTES / 1e6:.0f} MB budget")
    return out


def check(paths, root: Path = ROOT) -> list[str]:
    digest = inputs_digest(root)
    return [p for path in paths for p in problems(path, digest)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks to run (default: every notebook in nbs/)")
    ap.add_argument("--check", action="store_true", help="only verify that the committed outputs are current (no execution)")
    ap.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("SRFLOW_NB_WORKERS", 2)), help="notebooks run at once")
    args = ap.parse_args(argv)
    paths = [Path(p).resolve() for p in args.notebooks] or notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing: print(f"run_notebooks: no such notebook: {', '.join(missing)}", file=sys.stderr); return 2
    if args.check:
        found = check(paths)
        for p in found: print(f"[outputs] {p}")
        if found:
            print(f"[outputs] FAILED: {len(found)} problem(s). Refresh with: python tools/run_notebooks.py "
                  "(or name the stale notebooks) and commit the notebooks.")
            return 1
        print(f"[outputs] {len(paths)} notebooks: outputs current, {sum(p.stat().st_size for p in paths) / 1e6:.1f} MB in all")
        return 0
    t0, failed, rows = time.time(), [], []
    def job(p):
        try:
            r = run_notebook(p); print(f"[run] {r['notebook']}: {r['seconds']} s, {r['cells_run']} cells, {r['bytes'] / 1e3:.0f} kB", flush=True)
            return r
        except Exception as e:
            msg = str(e).strip().splitlines()
            print(f"[run] {p.name}: FAILED\n" + "\n".join(msg[-25:]), flush=True); failed.append(p.name)
    with ThreadPoolExecutor(max(1, args.jobs)) as ex: rows = [r for r in ex.map(job, paths) if r]
    print(f"[run] {len(rows)} notebooks in {time.time() - t0:.0f} s, {sum(r['bytes'] for r in rows) / 1e6:.1f} MB in all")
    if failed: print(f"[run] FAILED: {', '.join(failed)} (left unchanged)"); return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
