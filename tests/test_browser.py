"""End to end in a real browser: JupyterLab 4 on 127.0.0.1, Debian's chromium driven by playwright.

Opens the explorer notebook and a reproduction notebook (copies in a temporary folder), runs all their cells the way a
reader does (Run > Run All Cells), drags a slider of each widget app and checks that the picture it renders changes.
Fails on browser console errors, "Error displaying widget", figures shown as text (`<Figure size ...>`) and
tracebacks in the outputs. Set-up: `tools/setup.sh` installs chromium (apt) and playwright (pip; its own browser
download is never used). Without them the test fails under CI (`CI=true`) and in `tools/test.sh`
(`SRFLOW_REQUIRE_BROWSER=1`), and is skipped with a loud reason elsewhere.
"""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SRFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"         # the notebook in the active tab
NOTEBOOKS = {"18_explorer.ipynb": "temperature τ", "26_repro.gallery.ipynb": "top"}   # notebook -> the slider to drag
TIMEOUT_MS = 420_000                                  # a whole notebook on a busy 2-core machine


def _unavailable(why: str):
    msg = f"BROWSER TEST NOT RUN: {why} (install with: bash tools/setup.sh)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("SRFLOW_REQUIRE_BROWSER") == "1": pytest.fail(msg)
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "A JupyterLab server on 127.0.0.1 with a token, serving copies of the notebooks; settings and state in a temp folder."
    try: import playwright.sync_api  # noqa: F401
    except ImportError: _unavailable("the playwright Python package is not installed")
    if not Path(CHROMIUM).exists(): _unavailable(f"{CHROMIUM} does not exist")
    tmp = tmp_path_factory.mktemp("lab")
    work, home = tmp / "notebooks", tmp / "jupyter"
    work.mkdir(); home.mkdir()
    for nb in NOTEBOOKS: shutil.copy(ROOT / "nbs" / nb, work / nb)
    settings = home / "lab-settings"
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                           "@jupyterlab/docmanager-extension/plugin": {"autosave": False}}.items():
        f = settings / f"{plugin}.jupyterlab-settings"; f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               IN_TEST="1")                           # as nbdev_test: the notebooks' last `nbdev_export()` cell is a no-op
    env.pop("SRFLOW_FULL", None)
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
                             "--ServerApp.allow_root=True"],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if proc.poll() is not None: break
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2); break
            except OSError: time.sleep(0.5)
        else: pytest.fail(f"JupyterLab did not answer within 60 s; log: {tmp / 'lab.log'}")
        if proc.poll() is not None: pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{(tmp / 'lab.log').read_text()[-3000:]}")
        yield dict(url=url, token=token, tmp=tmp)
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser_page(lab):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        try:
            ctx = p.chromium.launch_persistent_context(str(lab["tmp"] / "chromium-profile"), executable_path=CHROMIUM,
                                                       headless=True, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        except Exception as e: _unavailable(f"chromium could not be launched: {str(e).splitlines()[0]}")
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        errors = []
        page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        yield page, errors
        ctx.close()


def _run_all(page, lab, name):
    page.goto(f"{lab['url']}/lab/tree/{name}?token={lab['token']}")
    page.locator(f"{PANEL} .jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    try: select.wait_for(timeout=5_000); select.click()          # the kernel chooser, if JupyterLab asks
    except Exception: pass
    page.locator(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)   # kernel started
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function("""(panel) => {
        const p = [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
        return p.length > 0 && p.every(t => /\\[\\d+\\]/.test(t));
    }""", arg=PANEL, timeout=TIMEOUT_MS)                          # every code cell has an execution count: the run finished


def _outputs_text(page) -> str:
    return page.evaluate("(panel) => [...document.querySelectorAll(panel + ' .jp-OutputArea-output')].map(e => e.innerText).join('\\n')", PANEL)


def _drag(page, label: str):
    "Drag the handle of the slider labelled `label` to the right; return the widget app's image src before the move."
    slider = page.locator(f"{PANEL} .widget-slider", has=page.locator(".widget-label", has_text=label)).first
    slider.scroll_into_view_if_needed()
    handle = slider.locator(".noUi-handle").first
    box, track = handle.bounding_box(), slider.locator(".noUi-target").first.bounding_box()
    x0, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x0, y0); page.mouse.down()
    page.mouse.move(x0 - track["width"] / 3 if x0 > track["x"] + track["width"] / 2 else x0 + track["width"] / 3, y0, steps=8)
    page.mouse.up()


def _choose(page, label: str, value: str) -> list[str]:
    "Pick `value` in the dropdown labelled `label`; return its options."
    dd = page.locator(f"{PANEL} .widget-dropdown", has=page.locator(".widget-label", has_text=label)).first
    dd.scroll_into_view_if_needed()
    options = dd.locator("select option").all_inner_texts()
    dd.locator("select").select_option(value)
    return options


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_runs_and_its_widget_redraws(lab, browser_page, name):
    page, errors = browser_page
    errors.clear()
    _run_all(page, lab, name)
    app_image = page.locator(f"{PANEL} .jp-OutputArea-output img.widget-image").last
    app_image.wait_for(timeout=60_000)
    text = _outputs_text(page)
    assert "Error displaying widget" not in text, "a widget failed to display"
    assert "<Figure size" not in text, "a figure is shown as text instead of an image"
    assert "Traceback (most recent call last)" not in text, f"a cell failed:\n{text[-3000:]}"
    figures = page.locator(f"{PANEL} .jp-OutputArea-output.jp-RenderedImage img").count()
    if name.startswith("2"): assert figures >= 1, "the reproduction notebook shows no figure"
    src0 = app_image.get_attribute("src")
    _drag(page, NOTEBOOKS[name])
    page.wait_for_function("([el, s]) => el.getAttribute('src') !== s", arg=[app_image.element_handle(), src0], timeout=180_000)
    if name == "18_explorer.ipynb":                                # the model choice: ESRGAN renders its image
        src1 = app_image.get_attribute("src")
        options = _choose(page, "model", "esrgan")
        assert {"srflow", "esrgan"} <= set(options), options
        page.wait_for_function("([el, s]) => el.getAttribute('src') !== s", arg=[app_image.element_handle(), src1], timeout=180_000)
        page.get_by_text("ESRGAN one image").first.wait_for(timeout=60_000)    # the status line says what is shown
        assert "region resampling needs latents (SRFlow)" in _outputs_text(page)
    assert "Error displaying widget" not in _outputs_text(page)
    assert not errors, "browser console errors:\n" + "\n".join(errors)
