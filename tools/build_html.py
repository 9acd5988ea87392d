#!/usr/bin/env python3
"""HTML pages of the notebooks with their committed outputs: `python tools/build_html.py` -> `_docs/html/index.html`.

nbconvert (JupyterLab look) renders every notebook in nbs/ as it is committed: no execution, so the pages show exactly
the quick-mode outputs that `tools/run_notebooks.py` stored (refresh those first if `--check` says they are stale; this
command warns). Widget apps appear as their static picture (the PNG each app stores beside its live view): a page has
no kernel to redraw a slider, so no widget state is embedded. The pages are built on demand, not committed: each
carries ~0.3 MB of JupyterLab CSS and the notebooks' images, which git already holds in the notebooks themselves.

    python tools/build_html.py                       # every notebook
    python tools/build_html.py nbs/21_repro.temperature.ipynb -o /tmp/pages
"""
from __future__ import annotations

import argparse
import html
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(run_notebooks)


def title_of(nb: dict, default: str) -> tuple[str, str]:
    "(title, subtitle) from the notebook's first '# Title' and '> subtitle' markdown lines."
    for c in nb["cells"]:
        if c["cell_type"] != "markdown": continue
        lines = "".join(c["source"]).splitlines()
        heads = [l[2:].strip() for l in lines if l.startswith("# ")]
        if heads:
            sub = next((l[1:].strip() for l in lines if l.startswith(">")), "")
            return heads[0], sub
    return default, ""


def build(paths, out: Path) -> list[Path]:
    from nbconvert import HTMLExporter
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    pages, rows = [], []
    for p in paths:
        nb = json.loads(Path(p).read_text())
        title, sub = title_of(nb, Path(p).stem)
        exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
        body, _ = exporter.from_filename(str(p), resources={"metadata": {"name": title}})
        page = out / (Path(p).stem + ".html")
        page.write_text(body, encoding="utf-8"); pages.append(page)
        rows.append(f'<li><a href="{html.escape(page.name)}">{html.escape(Path(p).stem)}</a>: <b>{html.escape(title)}</b>'
                    f'{" &mdash; " + html.escape(sub) if sub else ""}</li>')
    index = out / "index.html"
    index.write_text("<!doctype html><meta charset='utf-8'><title>srflow_nb notebooks</title>"
                     "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.5}</style>"
                     "<h1>srflow_nb: the notebooks with their quick-mode outputs</h1><ul>" + "\n".join(rows) + "</ul>", encoding="utf-8")
    return [index, *pages]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks (default: every notebook in nbs/)")
    ap.add_argument("-o", "--out", default=str(ROOT / "_docs" / "html"), help="output folder (default: _docs/html)")
    args = ap.parse_args(argv)
    paths = [Path(p).resolve() for p in args.notebooks] or run_notebooks.notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing: print(f"build_html: no such notebook: {', '.join(missing)}", file=sys.stderr); return 2
    for problem in run_notebooks.check(paths): print(f"[html] warning: {problem}")
    files = build(paths, Path(args.out))
    print(f"[html] {len(files) - 1} pages, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB: open {files[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
