"""The ``./course`` bootstrap script: it changes the system only when asked to."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_lib.tools.nbgrader_course import course_root

ROOT = course_root()


@pytest.fixture
def sandbox(tmp_path: Path) -> dict:
    """A set-up venv whose `course` only echoes, and a PATH where root's apt-get only records its calls."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    course = venv / "bin" / "course"
    course.write_text("#!/bin/sh\necho \"course CLI: $*\"\n")
    course.chmod(0o755)
    stamp = venv / ".course-installed"
    stamp.touch()
    future = time.time() + 3600
    os.utime(stamp, (future, future))  # newer than pyproject.toml: no installation
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    log = tmp_path / "apt.log"
    for name, body in {"apt-get": f"echo \"apt-get $*\" >> {log}", "id": "echo 0"}.items():
        (fakebin / name).write_text(f"#!/bin/sh\n{body}\n")
        (fakebin / name).chmod(0o755)
    (fakebin / "dirname").symlink_to(shutil.which("dirname"))
    env = {"PATH": str(fakebin), "COURSE_VENV": str(venv), "PYTHON": sys.executable, "HOME": str(tmp_path)}
    return {"env": env, "log": log}


def _run(sandbox: dict, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(ROOT / "course"), *args], capture_output=True, text=True,
                          env={**sandbox["env"], **extra}, timeout=60)


def test_course_test_does_not_install_chromium_unless_asked(sandbox):
    proc = _run(sandbox, "test")
    assert proc.returncode == 0, proc.stderr
    assert "course CLI: test" in proc.stdout
    assert not sandbox["log"].exists(), "apt-get ran without COURSE_INSTALL_BROWSER=1"
    lines = [ln for ln in proc.stderr.splitlines() if "chromium" in ln]
    assert len(lines) == 1 and "COURSE_INSTALL_BROWSER=1" in lines[0] and "skipped" in lines[0]


def test_course_test_installs_chromium_when_asked(sandbox):
    proc = _run(sandbox, "test", COURSE_INSTALL_BROWSER="1")
    assert proc.returncode == 0, proc.stderr
    assert "apt-get install -y -qq chromium" in sandbox["log"].read_text()


def test_other_commands_never_mention_chromium(sandbox):
    proc = _run(sandbox, "doctor", COURSE_INSTALL_BROWSER="1")
    assert "course CLI: doctor" in proc.stdout and "chromium" not in proc.stderr
    assert not sandbox["log"].exists()


def test_ci_script_opts_in():
    assert "COURSE_INSTALL_BROWSER=1 ./course test" in (ROOT / ".ci" / "run").read_text()
