"""``course lab`` as people run it: as root in a container, stopped by its process id, quiet, with
the course's JupyterLab settings (no news pop-up, no nbgrader menus for learners)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from argparse import Namespace

import pytest

from course_lib.cli import lab_command
from course_lib.tools.nbgrader_course import course_root

ROOT = course_root()
TOKEN = "course-lab-test-token"


def _args(**kw) -> Namespace:
    base = {"no_browser": True, "ip_any": False, "port": None, "allow_root": False, "nbgrader": False}
    return Namespace(**{**base, **kw})


@pytest.mark.parametrize("euid", [0, 1000])
def test_root_gets_the_servers_own_allow_root_option(monkeypatch, euid):
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    cmd, _ = lab_command(ROOT, _args())
    assert ("--allow-root" in cmd) == (euid == 0)
    cmd, _ = lab_command(ROOT, _args(allow_root=True))
    assert "--allow-root" in cmd


def test_learners_lab_hides_nbgrader_and_instructors_get_it():
    _, env = lab_command(ROOT, _args())
    from course_lib.lab import LAB_CONFIG_DIR

    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0] == str(LAB_CONFIG_DIR)
    _, env = lab_command(ROOT, _args(nbgrader=True))
    assert str(LAB_CONFIG_DIR) not in env.get("JUPYTER_CONFIG_PATH", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.mark.timeout(300)
def test_lab_starts_as_this_user_serves_the_first_notebook_and_stops_on_sigterm(tmp_path):
    """Runs as whoever runs the suite (root in CI containers). SIGTERM to the started process stops the server."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "JUPYTER_TOKEN": TOKEN, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = (tmp_path / "lab.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "course_lib.cli", "lab", "--no-browser", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, page = _get(f"{base}/lab?token={TOKEN}")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        log.seek(0)
        output = log.read()
        assert status == 200, f"no /lab page (exit code {proc.poll()}):\n{output[-3000:]}"
        status, body = _get(f"{base}/api/contents/notebooks/00_start_here.ipynb?token={TOKEN}")
        assert status == 200 and json.loads(body)["content"]["cells"], "the first notebook was not served"
        assert _get(f"{base}/api/contents/notebooks/00_start_here.ipynb")[0] == 403, "served without the token"
        # the course's settings: no nbgrader extension in the page, no news pop-up
        assert '"@jupyter/nbgrader"' in page.decode().split('"disabledExtensions"', 1)[1][:300]
        status, body = _get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={TOKEN}")
        defaults = json.loads(body)["schema"]["properties"]  # overrides.json replaces the schema's defaults
        assert defaults["fetchNews"]["default"] == "false" and defaults["checkForUpdates"]["default"] is False
        # saved notebooks keep their widgets' state, so a reopened notebook shows its views, not an error
        status, body = _get(f"{base}/lab/api/settings/@jupyter-widgets/jupyterlab-manager:plugin?token={TOKEN}")
        assert json.loads(body)["schema"]["properties"]["saveState"]["default"] is True
        assert "Running as root is not recommended" not in output
        assert "No nbgrader_config.py" not in output
        assert "without encryption" not in output

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        with pytest.raises(OSError):
            _get(f"{base}/lab?token={TOKEN}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
