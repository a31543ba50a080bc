"""The `course` command: usage errors, progress, doctor, and grading a notebook from the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from course_lib.cli import main


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "COURSE_PROGRESS"}  # `course test` sets it to off
    return subprocess.run([sys.executable, "-m", "course_lib.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=600)


@pytest.mark.parametrize("args", [[], ["nonsense"], ["check", "one"], ["check", "--bogus"], ["bench", "--tests=3"],
                                  ["release"], ["autograde", "only-one-arg"],
                                  ["autograde", "class", "subs", "--grader-timeout", "0"]])
def test_wrong_arguments_give_usage_and_exit_2(args):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "usage: course" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_module_is_a_clear_error_not_a_traceback(capsys):
    assert main(["check", "99"]) == 1
    err = capsys.readouterr().err
    assert "no notebooks for modules ['99']" in err


def test_progress_lists_passed_exercises(tmp_path):
    progress = tmp_path / "p.json"
    progress.write_text(json.dumps({"rnn_cell": {"attempts": 2, "passed": True, "score": 2,
                                                 "last_result": "passed", "last": "now"}}))
    proc = run_cli("progress", "01", env={"COURSE_PROGRESS_FILE": str(progress)})
    assert proc.returncode == 0
    line = next(ln for ln in proc.stdout.splitlines() if " rnn_cell " in ln)
    assert line.strip().startswith("[x]")
    assert "[ ] rnn_bptt" in proc.stdout and "2/" in proc.stdout.splitlines()[-1]


def test_doctor_reports_the_triton_mode():
    proc = run_cli("doctor")
    assert "triton mode" in proc.stdout
    assert "kernel test rnn_cell_triton vs reference" in proc.stdout and "OK" in proc.stdout


def test_check_grades_the_exercise_notebook_from_the_terminal(tmp_path):
    """Module 00's released exercise is unsolved (exit 1, not attempted); its solution passes (exit 0).

    Checking the exercises records the attempt; checking the solutions does not mark anything passed.
    """
    path = tmp_path / "p.json"
    env = {"COURSE_PROGRESS_FILE": str(path)}
    blank = run_cli("check", "00", env=env)
    assert blank.returncode == 1, blank.stdout + blank.stderr
    assert "FAIL check_softplus" in blank.stdout and "not attempted" in blank.stdout
    assert json.loads(path.read_text())["softplus"]["last_result"] == "not attempted"
    solved = run_cli("check", "00", "--solutions", env=env)
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert "PASS check_softplus" in solved.stdout
    entry = json.loads(path.read_text())["softplus"]
    assert entry["attempts"] == 1 and entry["passed"] is False


@pytest.mark.parametrize("args, message", [
    (["progress", "42"], "no module 42 in this course"),
    (["build-exercises", "42"], "no module 42 in this course"),
    (["release", "{tmp}/class", "42"], "no module 42 in this course"),
    (["autograde", "{tmp}/no-such-class", "{tmp}"], "is not a course directory made by `course release`"),
    (["check", "{tmp}/missing.ipynb"], "no notebook"),
    (["check", "42"], "no notebooks for modules ['42']"),
])
def test_unknown_modules_and_missing_folders_are_clear_errors(tmp_path, capsys, args, message):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "class").exists(), "nothing half-made"


def test_check_grades_a_copy_anywhere_and_shows_the_notebooks_detail(tmp_path):
    """The README tells learners to work on a copy: `course check PATH` grades it, with the sub-check detail."""
    import nbformat

    from course_lib.tools.nbgrader_course import course_root

    nb = nbformat.read(course_root() / "exercises" / "00_start_here.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "softplus_solution")
    cell.source = "def softplus(x):\n    return torch.clamp(x, min=0)"
    nbformat.write(nb, tmp_path / "my copy.ipynb")
    proc = run_cli("check", str(tmp_path / "my copy.ipynb"), env={"COURSE_PROGRESS": "off"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "FAIL check_softplus" in out
    assert "FAIL values" in out and "max abs error" in out and "worst at index" in out
    assert "diagnosis: your output matches what you get when" in out
    assert "sub-check(s) passed" in out and "PASS " not in out.split("FAIL check_softplus", 1)[1]
    assert "without encryption" not in proc.stderr


def test_course_test_runs_only_the_paths_it_is_given(monkeypatch):
    import course_lib.cli as cli

    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    monkeypatch.setenv("COURSE_PROGRESS", "on")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert main(["test", "tests/test_environment.py", "-x"]) == 0
    cmd = calls[-1]
    assert "tests/test_environment.py" in cmd and "-x" in cmd
    assert not {"tests", "notebooks", "solutions"} & set(cmd)
    assert main(["test", "-k", "softplus"]) == 0
    assert {"tests", "notebooks", "solutions"} <= set(calls[-1])
    assert any(a.startswith("--nbval-cell-timeout=") for a in calls[-1])


@pytest.mark.parametrize("cores, workers, threads", [(2, 2, "1"), (8, 2, "4"), (1, 2, "1"), (4, 1, "4")])
def test_course_test_gives_each_worker_its_share_of_the_cores(monkeypatch, cores, workers, threads):
    import course_lib.cli as cli

    envs = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: envs.append(kw["env"]) or 0)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: cores)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert main(["test", "--workers", str(workers), "tests/test_environment.py"]) == 0
    assert envs[-1]["OMP_NUM_THREADS"] == threads
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting wins
    assert main(["test", "--workers", str(workers), "tests/test_environment.py"]) == 0
    assert envs[-1]["OMP_NUM_THREADS"] == "3"


def test_doctor_says_how_to_enable_the_browser_tests(tmp_path):
    proc = run_cli("doctor", env={"PATH": str(tmp_path)})
    assert "chromium    missing" in proc.stdout
    assert "browser tests (slides, JupyterLab) are skipped" in proc.stdout
    assert "COURSE_INSTALL_BROWSER=1 ./course test" in proc.stdout
