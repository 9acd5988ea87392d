"""The docs site (`tools/build_docs.py`), built into a temporary folder and read in a real browser.

The site is served by a local http.server on 127.0.0.1 and opened in Debian's chromium driven by playwright; every
request that leaves 127.0.0.1 is blocked and fails the test (search, MathJax and the theme must be served by the site).
Checks: the sidebar lists every notebook in order with its title; a reproduction page's images have all loaded; no
nbdev directive (`#| hide`, `#| export`) and no hidden cell's code is shown; `show_doc` entries carry the symbol's
full name as anchor and the API index links every exported symbol to an anchor that exists; MathJax typesets; the
search box finds "temperature"; no console errors. The build must leave the git work tree as it was.
Like tests/test_browser.py: fails (never skips) without chromium/playwright under CI or `SRFLOW_REQUIRE_BROWSER=1`.
"""
import functools
import html.parser
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SRFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPRO = "20_repro.table2"
LIBRARY = "05_model"

_spec = importlib.util.spec_from_file_location("build_docs", ROOT / "tools" / "build_docs.py")
build_docs = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(build_docs)


def _unavailable(why: str):
    msg = f"BROWSER TEST NOT RUN: {why} (install with: bash tools/setup.sh)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("SRFLOW_REQUIRE_BROWSER") == "1": pytest.fail(msg)
    pytest.skip(msg)


def _notebooks() -> list[Path]: return build_docs.run_notebooks.notebooks()


def _git_state() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
                          capture_output=True, text=True, check=True).stdout


# --- the processing rules, without a browser -----------------------------------------------------------------------

def test_directives_and_hidden_cells():
    test_nb = {"metadata": {"srflow_nb": {"inputs_sha256": "x"}}, "cells": [
        {"cell_type": "code", "id": "a", "source": "#| default_exp demo_mod", "outputs": []},
        {"cell_type": "code", "id": "b", "source": "#| export\n#|  slow\nclass Thing:\n    def go(self): pass", "outputs": []},
        {"cell_type": "code", "id": "c", "source": "#| hide\nsecret = 1", "outputs": [{"output_type": "stream", "name": "stdout", "text": "hidden!"}]},
        {"cell_type": "code", "id": "d", "source": "#|hide\nimport nbdev", "outputs": []},
        {"cell_type": "code", "id": "e", "source": "show_doc(Thing.go)", "outputs": [{"output_type": "execute_result", "metadata": {},
            "data": {"text/markdown": "---\n\n[source](https://x.invalid/a.py#L1){target=\"_blank\"}\n\n### Thing.go\n\n```python\ndef go()\n```"}}]},
        {"cell_type": "markdown", "id": "f", "source": "Prose may mention `#| hide`."}]}
    test_eq = lambda a, b: (a == b) or pytest.fail(f"{a!r} != {b!r}")
    test_eq(build_docs.directives("#| export\n#|slow\n\nx = 1\n#| not a directive here"), ({"export", "slow"}, "x = 1\n#| not a directive here"))
    test_eq(build_docs.module_of(test_nb), "srflow_nb.demo_mod")
    defs = build_docs.definitions(test_nb)
    test_eq(defs, {"Thing": "b", "Thing.go": "b"})
    shown = build_docs.process(test_nb, "srflow_nb.demo_mod", defs)
    test_eq([c["id"] for c in shown["cells"]], ["b", "e", "f"])          # hide and default_exp cells are gone, outputs with them
    test_eq(shown["cells"][0]["source"], "class Thing:\n    def go(self): pass")
    test_eq(shown["cells"][1]["metadata"]["tags"], ["remove_input"])   # show_doc: output only
    md = shown["cells"][1]["outputs"][0]["data"]["text/markdown"]
    assert 'id="srflow_nb.demo_mod.Thing.go"' in md and 'href="#cell-id=b"' in md and "x.invalid" not in md, md
    assert "srflow_nb" not in shown["metadata"] and "srflow_nb" in test_nb["metadata"]   # the input is not changed


# --- the built site in a browser -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "site"
    before = _git_state()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "-o", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "WARNING" not in proc.stdout, proc.stdout             # mkdocs warnings (broken links) fail the build check
    assert _git_state() == before, "building the docs changed the work tree"
    return out


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.ids, self.hrefs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"): self.ids.add(a["id"])
        if tag == "a" and a.get("href"): self.hrefs.append(a["href"])


def _parse(path: Path) -> _Ids:
    p = _Ids(); p.feed(path.read_text(encoding="utf-8")); return p


def test_api_index_links_every_symbol_to_an_existing_anchor(site):
    syms = {full for mod in build_docs.modidx().values() for full in mod}
    api = _parse(site / "api.html")
    links = [h for h in api.hrefs if re.match(r"[\w.]+\.html#", h) and not h.startswith("api.html")]
    pages = {}
    for h in links:
        page, frag = h.split("#", 1)
        if page not in pages: pages[page] = _parse(site / page).ids
        assert frag in pages[page], f"api.html links to {h}, which does not exist"
    assert len(links) == len(syms), (len(links), len(syms))
    documented = [h for h in links if "#srflow_nb." in h]
    assert len(documented) > 200, len(documented)                # the show_doc entries


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))   # loopback only
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown(); srv.server_close()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    try: from playwright.sync_api import sync_playwright
    except ImportError: _unavailable("the playwright Python package is not installed")
    if not Path(CHROMIUM).exists(): _unavailable(f"{CHROMIUM} does not exist")
    with sync_playwright() as p:
        try: b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        except Exception as e: _unavailable(f"chromium could not be launched: {str(e).splitlines()[0]}")
        ctx = b.new_context(viewport={"width": 1400, "height": 1000})
        outside = []
        ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith((server + "/", "data:"))
                  else (outside.append(route.request.url), route.abort()))
        page = ctx.new_page()
        errors = []
        page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        yield dict(page=page, errors=errors, outside=outside, url=server, shots=tmp_path_factory.mktemp("shots"))
        ctx.close(); b.close()


def _open(b, name: str):
    b["errors"].clear()
    b["page"].goto(f"{b['url']}/{name}", wait_until="load")
    return b["page"]


def _no_errors(b):
    assert not b["errors"], b["errors"]
    assert not b["outside"], f"requests left 127.0.0.1: {b['outside']}"


def _title(nb: Path) -> str: return build_docs.title_of(json.loads(nb.read_text(encoding="utf-8")), nb.stem)


def test_home_page_and_navigation(browser):
    page = _open(browser, "index.html")
    assert page.locator("article h1").first.inner_text().strip().rstrip("¶") == "srflow_nb"   # README.md is the home page
    nav = page.evaluate("""() => [...document.querySelectorAll('nav.md-nav--primary a.md-nav__link[href$=".html"]')]
                                 .map(a => [a.getAttribute('href'), a.textContent.trim()])""")
    hrefs = [h for h, _ in nav]
    expected = [f"{nb.stem}.html" for nb in _notebooks()]
    assert [h for h in hrefs if h in expected] == expected, hrefs        # every notebook, in notebook order
    assert "api.html" in hrefs
    titles = dict(nav)
    for nb in _notebooks(): assert _title(nb) in titles[f"{nb.stem}.html"], (nb.name, titles[f"{nb.stem}.html"])
    page.wait_for_selector("article mjx-container", timeout=30_000)       # MathJax, served by the site, typeset the equation
    page.screenshot(path=str(browser["shots"] / "index.png"))
    _no_errors(browser)


def _shown_code(page) -> str:
    return page.evaluate("() => [...document.querySelectorAll('.jp-InputArea')].map(e => e.innerText).join('\\n')")


def _hidden_lines(nb_path: Path) -> list[str]:
    "Code lines of the notebook's `#| hide` cells that no shown cell has."
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    hidden, shown = set(), set()
    for c in nb["cells"]:
        if c["cell_type"] != "code": continue
        names, code = build_docs.directives("".join(c["source"]))
        lines = {l.strip() for l in code.splitlines() if len(l.strip()) > 12}
        (hidden if "hide" in names else shown).update(lines)
    return sorted(hidden - shown)


@pytest.mark.parametrize("name", [REPRO, LIBRARY])
def test_notebook_page(browser, name):
    page = _open(browser, f"{name}.html")
    nb = ROOT / "nbs" / f"{name}.ipynb"
    assert _title(nb) in page.locator("article h1").first.inner_text()
    code = _shown_code(page)
    assert code.strip(), "no code cells shown"
    assert not re.search(r"^\s*#\s*\|", code, re.M), "an nbdev directive is shown in a code cell"
    assert "#| hide" not in page.locator("article").inner_text()
    hidden = _hidden_lines(nb)
    assert hidden, "the notebook has no hidden cell to check"
    leaked = [l for l in hidden if l in code]
    assert not leaked, f"hidden cell code shown: {leaked[:5]}"
    assert "show_doc(" not in code                                           # show_doc cells show only their output
    imgs = page.evaluate("""async () => {
        const imgs = [...document.querySelectorAll('article img')];
        await Promise.all(imgs.map(i => i.decode().catch(() => null)));
        return imgs.map(i => [i.complete && i.naturalWidth > 0, (i.getAttribute('src') || '').slice(0, 40)]);
    }""")
    if name == REPRO:
        assert len(imgs) >= 1, "the reproduction page shows no figure"
        assert all(ok for ok, _ in imgs), [src for ok, src in imgs if not ok]
        page.screenshot(path=str(browser["shots"] / f"{name}.png"), full_page=False)
    else:
        anchor = "srflow_nb.model.SRFlow.sample"                             # an API entry, reached by its anchor
        page.goto(f"{browser['url']}/{name}.html#{anchor}")
        doc = page.locator(f'[id="{anchor}"]')
        assert doc.count() == 1 and doc.is_visible()
        assert "def sample(" in page.locator(".jp-OutputArea-output", has=doc).inner_text()
        src = page.locator(".jp-OutputArea-output", has=doc).locator("a.srflow-source")
        target = src.get_attribute("href")[1:]
        assert "SRFlow" in page.locator(f'[id="{target}"]').inner_text()    # [source] -> the defining code cell
        page.wait_for_selector("article mjx-container", timeout=30_000)
    _no_errors(browser)


def test_api_index_page(browser):
    page = _open(browser, "api.html")
    link = page.locator('article a[href="05_model.html#srflow_nb.model.SRFlow.sample"]')
    assert link.count() == 1
    link.click()
    page.wait_for_url("**/05_model.html#srflow_nb.model.SRFlow.sample")
    assert page.locator('[id="srflow_nb.model.SRFlow.sample"]').is_visible()
    _no_errors(browser)


def test_search_finds_temperature(browser):
    page = _open(browser, "index.html")
    box = page.locator("input.md-search__input")
    box.click(); box.fill("temperature")
    results = page.locator(".md-search-result__item")
    results.first.wait_for(timeout=30_000)
    assert results.count() > 0
    assert "temperature" in page.locator(".md-search-result").inner_text().lower()
    page.screenshot(path=str(browser["shots"] / "search.png"))
    _no_errors(browser)
