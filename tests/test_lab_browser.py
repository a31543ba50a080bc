"""Every lecture notebook run through JupyterLab's own UI in headless Chromium.

JupyterLab is started as ``course lab`` starts it (``lab_command``), on a free loopback port, with a
temporary Jupyter config, runtime, settings and workspace folder, serving copies of the lecture
notebooks (the UI saves what it runs; the committed notebooks are never touched). For each notebook
the test runs all cells with JupyterLab's "Run All Cells" command and asserts: every cell ran, no
error output, no JavaScript console error, every ipywidgets view rendered, a moved slider changes the
output it drives, every plotly figure drawn, and the notebook saved from the UI keeps every widget
view's state. Screenshots are kept in ``build/test-artifacts/lab/``.

This repeats every lecture notebook's run time (about 9 minutes of the suite, on one of its two workers);
the suite starts this file first so that the other worker's files fill the same minutes (tests/conftest.py).
``COURSE_LAB_NOTEBOOKS=01,03`` runs only the chosen notebooks.
Chromium is Debian's (``apt-get install chromium``); without it the test is skipped with that message.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from argparse import Namespace
from pathlib import Path

import nbformat
import pytest

from course_lib.cli import lab_command
from course_lib.tools.doctor import BROWSER_TESTS_SKIPPED
from course_lib.tools.nbgrader_course import course_root

ROOT = course_root()
CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "course-browser-test"
ARTIFACTS = ROOT / "build" / "test-artifacts" / "lab"
NOTEBOOK_TIMEOUT_S = 600  # a lecture runs in about 2 minutes; past this the test fails naming the cell
DEFAULT_NOTEBOOKS = "all"
_choice = os.environ.get("COURSE_LAB_NOTEBOOKS", DEFAULT_NOTEBOOKS).strip().lower()
_only = set() if _choice == "all" else {m.strip().zfill(2) for m in _choice.split(",") if m.strip()}
NOTEBOOKS = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if not _only or p.name[:2] in _only]
pytestmark = pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 300)

STATE_JS = """() => {
  if (!window.jupyterapp) return null;
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.map((cell, index) => {
    const code = cell.model.type === 'code';
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    return {index, code, empty: cell.model.sharedModel.getSource().trim() === '',
            first: cell.model.sharedModel.getSource().split('\\n')[0].slice(0, 60),
            count: code ? cell.model.executionCount : null,
            running: !!prompt && prompt.textContent.includes('*'),
            outputs: code ? cell.model.outputs.toJSON() : []};
  });
  return {kernel: kernel ? kernel.status : 'none', ready: panel.context.isReady, cells};
}"""


WIDGET_VIEWS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const views = [];
  panel.content.widgets.forEach(cell => {
    if (cell.model.type !== 'code') return;
    const outputs = cell.model.outputs.toJSON();
    outputs.forEach((output, j) => {
      if (!output.data || !output.data['application/vnd.jupyter.widget-view+json']) return;
      const child = cell.outputArea.widgets[j];
      const node = child ? child.node : null;
      views.push({rendered: !!node && !!node.querySelector('.jupyter-widgets'),
                  text: node ? node.innerText : ''});
    });
  });
  return views;
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server started like `course lab`, isolated in temporary folders; yields its base URL."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: {BROWSER_TESTS_SKIPPED}")
    pytest.importorskip("playwright.sync_api")
    tmp = tmp_path_factory.mktemp("lab")
    served = tmp / "course"
    (served / "notebooks").mkdir(parents=True)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy2(path, served / "notebooks" / path.name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd, env = lab_command(served, Namespace(no_browser=True, ip_any=False, port=port, allow_root=False,
                                             nbgrader=False))
    cmd.insert(-1, "--LabApp.expose_app_in_browser=True")
    env.update({"JUPYTER_TOKEN": TOKEN, "JUPYTER_CONFIG_DIR": str(tmp / "config"),
                "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "OMP_NUM_THREADS": "1"})
    # every cell stays in the page (no virtual scrolling), so that every output can be inspected
    tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}')
    log = (tmp / "lab.log").open("w+")
    proc = subprocess.Popen(cmd, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=5):
                break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        log.seek(0)
        pytest.fail(f"JupyterLab did not start:\n{log.read()[-3000:]}")
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"])
        yield browser
        browser.close()


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _outputs_with(state: dict, mime: str) -> int:
    return sum(1 for c in state["cells"] for o in c["outputs"] if mime in o.get("data", {}))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_lecture_notebook_runs_in_jupyterlab(lab, browser, notebook):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console: list[str] = []
    phase = {"now": "opening"}  # each console error says when it came: while opening, or at which running cell
    page.on("console", lambda msg: console.append(f"[{phase['now']}] {msg.text} at {msg.location.get('url', '?')}:"
                                                  f"{msg.location.get('lineNumber', '?')}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(f"[{phase['now']}] page error: {exc}"))
    try:
        # `reset`: a fresh workspace, so that JupyterLab does not restore (and start kernels for) the
        # notebooks that earlier tests opened -- those ran beside this one and raced its widgets
        page.goto(f"{lab}/lab/tree/notebooks/{notebook.name}?token={TOKEN}&reset")
        print(f"{notebook.name}: opened", flush=True)
        page.wait_for_function(f"() => {{ const s = ({STATE_JS})(); return s && s.ready && s.kernel === 'idle'; }}",
                               timeout=120_000)
        open_tabs = page.evaluate("() => Array.from(window.jupyterapp.shell.widgets('main')).map(w => w.title.label)")
        assert open_tabs == [notebook.name], f"{notebook.name}: expected only this notebook open, found {open_tabs}"
        start = time.monotonic()
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        print(f"{notebook.name}: kernel ready, running all cells", flush=True)
        state = None
        while time.monotonic() - start < NOTEBOOK_TIMEOUT_S:
            page.wait_for_timeout(1000)
            state = page.evaluate(STATE_JS)
            code = [c for c in state["cells"] if c["code"] and not c["empty"]]
            phase["now"] = next((f"cell {c['index']}" for c in code if c["running"]), "between cells")
            errors = [c for c in code if any(o.get("output_type") == "error" for o in c["outputs"])]
            if errors or (state["kernel"] == "idle" and not any(c["running"] for c in code)
                          and all(c["count"] is not None for c in code)):
                break
        else:
            running = next((c for c in state["cells"] if c["running"]), None)
            where = f"cell {running['index']} ({running['first']})" if running else "no cell marked running"
            pytest.fail(f"{notebook.name}: not finished after {NOTEBOOK_TIMEOUT_S} s, still at {where}")
        seconds = time.monotonic() - start
        phase["now"] = "after the run"
        page.wait_for_timeout(1500)  # let widget and plotly views render
        errors = [f"cell {c['index']} ({c['first']}): {o.get('ename')}: {o.get('evalue')}"
                  for c in state["cells"] for o in c["outputs"] if o.get("output_type") == "error"]
        assert not errors, f"{notebook.name} error outputs: {errors}"
        not_run = [c["index"] for c in state["cells"] if c["code"] and not c["empty"] and c["count"] is None]
        assert not not_run, f"{notebook.name}: cells never ran: {not_run}"

        # every ipywidgets view is rendered (no "Loading widget..." / "Error displaying widget")
        n_widget_outputs = _outputs_with(state, "application/vnd.jupyter.widget-view+json")
        views = page.evaluate(WIDGET_VIEWS_JS)
        broken = [v["text"][:200] for v in views if "Error displaying widget" in v["text"]
                  or "Loading widget" in v["text"]]
        assert not broken, f"{notebook.name}: widgets not displayed: {broken}"
        # the interactive views the committed notebook shows must be live (finished progress bars close
        # their widget, and so render nothing, which is fine)
        promised = _outputs_with({"cells": [{"outputs": c.get("outputs", [])} for c in
                                            nbformat.read(notebook, as_version=4).cells]},
                                 "application/vnd.jupyter.widget-view+json")
        rendered = sum(v["rendered"] for v in views)
        assert rendered >= promised, f"{notebook.name}: {promised} interactive view(s) expected, {rendered} rendered"
        print(f"{notebook.name}: ran in {seconds:.0f} s, checking widgets", flush=True)
        # a slider moves and the view it drives changes
        sliders = page.locator(".widget-slider .noUi-handle, .widget-hslider .noUi-handle")
        if sliders.count():
            handle = sliders.first
            area = handle.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea')][1]")
            before = area.inner_html()
            handle.scroll_into_view_if_needed()
            handle.focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            deadline = time.monotonic() + 60
            while area.inner_html() == before and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            assert area.inner_html() != before, f"{notebook.name}: moving a slider changed nothing"
        # every plotly figure is drawn
        n_plotly = _outputs_with(state, "application/vnd.plotly.v1+json")
        assert page.locator(".js-plotly-plot .main-svg").count() >= n_plotly
        page.screenshot(path=str(ARTIFACTS / f"{notebook.stem}.png"), full_page=False)
        # saved as a learner saves it, every widget view keeps its model in the file (the course's lab setting
        # saveState): without it, the reopened notebook logs "widget model not found" for each view
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=60_000)
        saved = _get_json(f"{lab}/api/contents/notebooks/{notebook.name}?token={TOKEN}")["content"]
        kept = saved["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
        views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for c in saved["cells"]
                 for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        lost = [m for m in views if m and m not in kept.get("state", {})]
        assert not lost, f"{notebook.name}: saved without the state of {len(lost)} of {len(views)} widget view(s)"
        assert not console, f"{notebook.name} JavaScript console errors: {console[:5]}"
        print(f"{notebook.name}: all cells in {seconds:.0f} s, {n_widget_outputs} widget view(s), "
              f"{n_plotly} plotly figure(s)")
    finally:
        try:  # free the kernel's memory and CPU for the next notebook
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        except Exception:  # noqa: BLE001 - the page may never have opened the notebook
            pass
        page.close()
