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
                                  ["release"], ["autograde", "only-one-arg"]])
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
