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


def test_set_up_says_only_its_steps(tmp_path):
    """A first run's set-up prints its numbered steps and nothing else; the editable install of the course
    runs with Python warnings off (setuptools' editable-build notices are not for learners)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls.log"
    fake_python = venv / "bin" / "python"  # records each call; `import torch` succeeds
    fake_python.write_text(f"#!/bin/sh\necho \"$* | PYTHONWARNINGS=${{PYTHONWARNINGS:-}}\" >> {calls}\n"
                           "case \"$*\" in *__version__*) echo 2.13.0+cpu;; esac\nexit 0\n")
    fake_python.chmod(0o755)
    (venv / "bin" / "course").write_text("#!/bin/sh\necho \"course CLI: $*\"\n")
    (venv / "bin" / "course").chmod(0o755)
    env = {"PATH": os.environ["PATH"], "COURSE_VENV": str(venv), "PYTHON": sys.executable, "HOME": str(tmp_path)}
    proc = subprocess.run(["/bin/bash", str(ROOT / "course"), "doctor"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (venv / ".course-installed").exists()
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("course: ") for line in lines), proc.stderr
    assert [ln.split("]")[0] for ln in lines if "/3]" in ln] == ["course: [1/3", "course: [2/3", "course: [3/3"]
    editable = [c for c in calls.read_text().splitlines() if "pip install" in c and " -e " in c]
    assert len(editable) == 1 and editable[0].endswith("PYTHONWARNINGS=ignore"), editable


def test_the_editable_build_is_silent_with_warnings_off(tmp_path):
    """What the set-up's PYTHONWARNINGS=ignore relies on: setuptools' editable build of this package warns
    through Python's warnings (so the setting silences it), and says nothing else on stderr."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    shutil.copy2(ROOT / "README.md", src / "README.md")
    (src / "course_lib").symlink_to(ROOT / "course_lib")
    build = ("import os, sys\nfrom setuptools import build_meta\nos.makedirs('out', exist_ok=True)\n"
             "build_meta.build_editable('out')\n")

    def warnings_printed(**env: str) -> list[str]:
        proc = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Warning" in ln or "!!" in ln]

    assert warnings_printed(), "setuptools no longer warns on an editable build: the PYTHONWARNINGS can go"
    for folder in ("out", "build"):
        shutil.rmtree(src / folder, ignore_errors=True)
    assert warnings_printed(PYTHONWARNINGS="ignore") == []
