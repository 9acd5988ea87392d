#!/usr/bin/env python3
"""The docs site: `python tools/build_docs.py` -> `_docs/site/index.html` (MkDocs + Material + mkdocs-jupyter).

Every notebook in nbs/ becomes a page showing its COMMITTED outputs: nothing is executed (refresh the outputs first
with `tools/run_notebooks.py` if `--check` says they are stale; this command warns). The pages are made from
processed copies of the notebooks in a temporary folder, so no tracked file changes:

- cells flagged `#| hide` (and their outputs) and `#| default_exp` cells are left out; the other cells keep their
  source minus the nbdev directive lines (`#| export`, `#| slow`, ...); `show_doc(...)` cells show only their output,
  as nbdev's own docs do;
- each `show_doc` heading gets the symbol's full name as its id (`#srflow_nb.model.SRFlow.sample`), and its
  `[source]` link (to the unreachable `doc_host` of settings.ini) points at the code cell that defines the symbol;
- the API index (`api.html`) lists every symbol of `srflow_nb/_modidx.py` per module, linked to its `show_doc`
  entry, or else to the code cell that defines it.

README.md is the home page; the sidebar lists the notebooks in order with their titles; search (lunr, bundled with
the theme) and MathJax 3 (from the `django-static-mathjax` package) are served by the site itself: nothing is
fetched from a CDN. Each page offers its original notebook (from nbs/) for download. Serve the folder over http for
search to work (`python -m http.server -b 127.0.0.1 -d _docs/site`); pages also open from the file system.

    python tools/build_docs.py                 # -> _docs/site
    python tools/build_docs.py -o /tmp/site
"""
from __future__ import annotations

import argparse
import ast
import html
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = "srflow_nb"
_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(run_notebooks)

HIDDEN = {"hide", "default_exp"}                         # directives whose cells are not shown at all
_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*([\w-]+)")       # nbdev / Quarto cell directive: `#| export`, `#|hide`, `#| eval: false`
_SHOW_DOC = re.compile(r"^\s*show_doc\(")
_SOURCE_LINK = re.compile(r"^\[source\]\([^)]*\)(\{[^}]*\})?\s*$", re.M)   # show_doc's link to doc_host, with Quarto attributes
_DOC_HEADING = re.compile(r"^(#{2,4}) (\S+)[ \t]*$", re.M)
MATHJAX_URL = "assets/mathjax/tex-svg-full.js"          # MathJax 3, one self-contained file (SVG output: no web fonts)


# --- notebook processing -----------------------------------------------------------------------------------------

def directives(source: str) -> tuple[set[str], str]:
    "(directive names, source without its leading directive lines) of a code cell, as nbdev reads them."
    lines, names = source.splitlines(True), set()
    i = 0
    while i < len(lines) and (m := _DIRECTIVE.match(lines[i])):
        names.add(m.group(1).rstrip(":")); i += 1
    return names, "".join(lines[i:]).strip("\n")


def _src(cell) -> str: return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def title_of(nb: dict, default: str) -> str:
    "The notebook's title: its first '# Title' markdown line."
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            heads = [l[2:].strip() for l in _src(c).splitlines() if l.startswith("# ")]
            if heads: return heads[0]
    return default


def module_of(nb: dict) -> str | None:
    "The module a library notebook exports to (`#| default_exp`), else None (a reproduction notebook)."
    for c in nb["cells"]:
        if c["cell_type"] == "code" and (m := re.match(r"\s*#\s*\|\s*default_exp\s+(\S+)", _src(c))): return f"{LIB}.{m.group(1)}"
    return None


def _patched_class(fn: ast.FunctionDef) -> str | None:
    "`Cls` for a fastcore `@patch def f(self: Cls)`, else None."
    if not any((isinstance(d, ast.Name) and d.id == "patch") or (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "patch")
               for d in fn.decorator_list): return None
    args = fn.args.posonlyargs + fn.args.args
    ann = args[0].annotation if args else None
    return ann.id if isinstance(ann, ast.Name) else None


def definitions(nb: dict) -> dict[str, str]:
    "Qualified name (`SRFlow.sample`, `load_image`) -> id of the exported code cell that defines it."
    out = {}
    for c in nb["cells"]:
        if c["cell_type"] != "code": continue
        names, code = directives(_src(c))
        if not names & {"export", "exports", "exporti"} or not c.get("id"): continue
        try: tree = ast.parse(code)
        except SyntaxError: continue

        def visit(body, prefix=""):
            for node in body:
                if isinstance(node, ast.ClassDef):
                    out.setdefault(prefix + node.name, c["id"]); visit(node.body, prefix + node.name + ".")
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    cls = None if prefix else _patched_class(node)
                    out.setdefault(f"{cls}.{node.name}" if cls else prefix + node.name, c["id"])
        visit(tree.body)
    return out


def process(nb: dict, module: str | None, defs: dict[str, str]) -> dict:
    "The notebook as its page shows it (see the module docstring); `nb` is not changed."
    nb = json.loads(json.dumps(nb))
    cells = []
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            names, code = directives(_src(c))
            if names & HIDDEN or (not code.strip() and not c.get("outputs")): continue
            c["source"] = code
            if _SHOW_DOC.match(code) and all(_SHOW_DOC.match(l) for l in code.splitlines() if l.strip()):
                meta = c.setdefault("metadata", {}); meta["tags"] = [*meta.get("tags", []), "remove_input"]
                for o in c.get("outputs", []):
                    md = o.get("data", {}).get("text/markdown")
                    if md is not None: o["data"]["text/markdown"] = _anchor_show_doc("".join(md), module, defs)
        cells.append(c)
    nb["cells"] = cells
    nb["metadata"].pop(LIB, None)                        # the outputs stamp: nothing for the reader
    return nb


def _anchor_show_doc(md: str, module: str | None, defs: dict[str, str]) -> str:
    "show_doc markdown: the heading gets the symbol's full name as id; `[source]` points at the defining cell."
    heads = _DOC_HEADING.findall(md)
    name = heads[0][1] if heads else None
    cell = defs.get(name) if name else None
    link = f'<a class="srflow-source" href="#cell-id={cell}" title="the code cell that defines {html.escape(name)}">source</a>' if cell else ""
    md = _SOURCE_LINK.sub(lambda m: link, md, count=1)
    if name and module:
        full = f"{module}.{name}"
        md = _DOC_HEADING.sub(lambda m: (f'<h{len(m.group(1))} id="{html.escape(full)}" class="srflow-doc">{html.escape(m.group(2))}'
                                         f'</h{len(m.group(1))}>'), md, count=1)
    return md


# --- site pages --------------------------------------------------------------------------------------------------

def modidx() -> dict:
    spec = importlib.util.spec_from_file_location("_modidx", ROOT / LIB / "_modidx.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod.d["syms"]


def api_page(pages: list[dict]) -> tuple[str, dict]:
    "Markdown of the API index, and counts of how each symbol is linked."
    by_module = {p["module"]: p for p in pages if p["module"]}
    syms, counts = modidx(), {"show_doc": 0, "code cell": 0, "page only": 0}
    out = ["# API index", "",
           f"Every symbol that `nbdev_export` wrote to `{LIB}/` (from `{LIB}/_modidx.py`), per module in notebook order. "
           "A **bold** name links to its `show_doc` entry; the others link to the code cell that defines them "
           "(names starting with `_` are internal helpers).", ""]
    for module, p in by_module.items():
        names = sorted((full[len(module) + 1:] for full in syms.get(module, {})), key=lambda q: (q.lstrip("_").lower(), q))
        out += [f"## `{module}`", "", f"[{p['label']}]({p['file']}): {len(names)} symbols", ""]
        rows = []
        for q in names:
            if q in p["documented"]: href, kind = f"{p['file']}#{module}.{q}", "show_doc"
            elif q in p["defs"]: href, kind = f"{p['file']}#cell-id={p['defs'][q]}", "code cell"
            else: href, kind = p["file"], "page only"
            counts[kind] += 1
            label = f"`{q}`"
            rows.append(f"[**{label}**]({href})" if kind == "show_doc" else f"[{label}]({href})")
        out += [" · ".join(rows), ""]
    return "\n".join(out), counts


def home_page(readme: str, pages: list[dict]) -> str:
    "README.md with its notebook names linked to their pages: `nbs/20_repro.table2.ipynb`, and the notebook map's rows."
    stems = {p["file"][:-len(".ipynb")] for p in pages}
    readme = re.sub(r"`nbs/([^`\s]+)\.ipynb`", lambda m: f"[{m.group(0)}]({m.group(1)}.ipynb)" if m.group(1) in stems else m.group(0), readme)
    return re.sub(r"^\| `([^`]+)` \|", lambda m: f"| [`{m.group(1)}`]({m.group(1)}.ipynb) |" if m.group(1) in stems else m.group(0),
                  readme, flags=re.M)


MAIN_HTML = """{% extends "base.html" %}
{% block extrahead %}
  <script>  /* MathJax 3 (served by the site): $...$ and $$...$$ as in Jupyter; code and pre are skipped */
    window.MathJax = {tex: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
                            processEscapes: true, tags: "ams"},
                      svg: {fontCache: "global"}};
  </script>
  {% if page and page.file and page.file.src_uri.endswith(".md") %}
  <script src="{{ 'MATHJAX' | url }}" defer></script>
  {% endif %}
  <style>
    .md-grid { max-width: 90rem; }                                             /* room for the notebooks' figures */
    .srflow-source { float: right; font-size: smaller; }
    .jupyter-wrapper .jp-OutputArea-output h3.srflow-doc { margin-top: .4em; }
    .jupyter-wrapper .jp-RenderedMarkdown pre { white-space: pre; overflow-x: auto; }   /* show_doc signatures keep their lines */
  </style>
{% endblock %}
{% block content %}
  {% if page.nb_url %}
  <a href="{{ page.file.src_uri | url }}" title="Download the notebook (as committed)" class="md-content__button md-icon"
     download>{% include ".icons/material/download.svg" %}</a>
  {% endif %}
  {{ super() }}
{% endblock %}
""".replace("MATHJAX", MATHJAX_URL)


def config(src: Path, site: Path, nav: list, no_prompt: bool, cache: Path) -> dict:
    return {
        "site_name": "srflow_nb",
        "site_description": "A notebook-first, tested, reproducible PyTorch companion to SRFlow (ECCV 2020)",
        "docs_dir": str(src / "docs"), "site_dir": str(site), "use_directory_urls": False,
        "theme": {"name": "material", "custom_dir": str(src / "overrides"), "font": False,
                  "features": ["navigation.sections", "navigation.top", "navigation.footer", "toc.follow",
                               "search.highlight", "search.suggest", "content.code.copy"],
                  "palette": {"primary": "indigo", "accent": "indigo"}},
        "nav": nav,
        "plugins": ["search", {"mkdocs-jupyter": {
            "execute": False, "include_source": True, "ignore_h1_titles": True, "show_input": True, "no_prompt": no_prompt, "toc_depth": 3,
            "remove_tag_config": {"remove_input_tags": ["remove_input"]}, "include_requirejs": False,
            "custom_mathjax_url": MATHJAX_URL, "cache": True, "cache_dir": str(cache)}}],
        "markdown_extensions": ["tables", "admonition", "attr_list", {"toc": {"permalink": True}},
                                {"pymdownx.arithmatex": {"generic": True}}, "pymdownx.superfences",
                                {"pymdownx.highlight": {"use_pygments": True}}],
        "validation": {"nav": {"omitted_files": "info"}, "links": {"not_found": "warn", "anchors": "info"}},
    }


def _mathjax() -> Path:
    "MathJax 3's one-file bundle, from the `django-static-mathjax` package (a plain copy of MathJax; Django not needed)."
    spec = importlib.util.find_spec("mathjax")
    f = Path(spec.origin).parent / "static" / "mathjax" / "es5" / "tex-svg-full.js" if spec and spec.origin else None
    if f is None or not f.is_file():
        raise SystemExit("build_docs: MathJax is missing: pip install django-static-mathjax (bash tools/setup.sh installs it)")
    return f


def _clean_search_titles(index: Path) -> None:
    "Search results titled 'Section¶': drop the heading's anchor mark that nbconvert puts in the heading text."
    data = json.loads(index.read_text(encoding="utf-8"))
    for d in data["docs"]: d["title"] = d["title"].rstrip("¶").rstrip()
    index.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def build(paths: list[Path], site: Path) -> dict:
    import yaml
    mathjax = _mathjax()
    site.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="srflow-docs-") as tmp:
        src = Path(tmp); docs = src / "docs"; (src / "overrides").mkdir(parents=True); docs.mkdir()
        (src / "overrides" / "main.html").write_text(MAIN_HTML, encoding="utf-8")
        pages, has_counts = [], False
        for p in paths:
            nb = json.loads(p.read_text(encoding="utf-8"))
            module, defs = module_of(nb), definitions(nb)
            has_counts |= any(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")
            shown = process(nb, module, defs)
            documented = {h[1] for c in nb["cells"] if c["cell_type"] == "code" and _SHOW_DOC.match(directives(_src(c))[1])
                          for o in c.get("outputs", []) for h in _DOC_HEADING.findall("".join(o.get("data", {}).get("text/markdown", "")))[:1]}
            (docs / p.name).write_text(json.dumps(shown, ensure_ascii=False), encoding="utf-8")
            num = p.stem.split("_")[0]
            pages.append(dict(file=p.name, path=p, module=module, defs=defs, documented=documented,
                              label=f"{num} · {title_of(nb, p.stem)}"))
        (docs / "index.md").write_text(home_page((ROOT / "README.md").read_text(encoding="utf-8"), pages), encoding="utf-8")
        api, counts = api_page(pages)
        (docs / "api.md").write_text(api, encoding="utf-8")
        nav = [{"Home": "index.md"},
               {"Library": [{p["label"]: p["file"]} for p in pages if p["module"]]},
               {"Reproductions": [{p["label"]: p["file"]} for p in pages if not p["module"]]},
               {"API index": "api.md"}]
        cfg = src / "mkdocs.yml"
        cfg.write_text(yaml.safe_dump(config(src, site, nav, not has_counts, ROOT / "_docs" / ".cache" / "mkdocs-jupyter"),
                                      sort_keys=False, allow_unicode=True), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--clean", "-f", str(cfg)],
                              cwd=src, capture_output=True, text=True)
        log = proc.stdout + proc.stderr
        if proc.returncode:
            raise SystemExit(f"build_docs: mkdocs build failed ({proc.returncode}):\n{log[-4000:]}")
        warnings = [l for l in log.splitlines() if l.startswith(("WARNING", "ERROR"))]
    _clean_search_titles(site / "search" / "search_index.json")
    for p in pages: shutil.copyfile(p["path"], site / p["file"])   # the download: the notebook as committed, not the processed copy
    (site / MATHJAX_URL).parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(mathjax, site / MATHJAX_URL)
    return dict(pages=len(pages) + 2, api=counts, warnings=warnings)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=str(ROOT / "_docs" / "site"), help="output folder (default: _docs/site)")
    args = ap.parse_args(argv)
    paths = run_notebooks.notebooks()
    for problem in run_notebooks.check(paths): print(f"[docs] warning: {problem}")
    t0 = time.time()
    res = build(paths, Path(args.out).resolve())
    for w in res["warnings"]: print(f"[docs] {w}")
    api = ", ".join(f"{v} to {k}" for k, v in res["api"].items())
    print(f"[docs] {res['pages']} pages in {time.time() - t0:.0f} s (API index: {api}): "
          f"serve with `python -m http.server -b 127.0.0.1 -d {args.out}` and open http://127.0.0.1:8000/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
