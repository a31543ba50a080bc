"""The classroom round trip, as an instructor runs it: release module 01, collect a class's submissions
(good, blank, partial, broken, looping, tampered, corrupt, misnamed), autograde, read the gradebook and
the feedback, then grade a resubmission.

Expected scores are computed from the released notebook's points, so the test follows the module's
exercises; which exercise each student breaks is chosen so that no other exercise depends on it.
"""

from __future__ import annotations

import copy
import csv
import html
import re
import time
from pathlib import Path

import nbformat
import pytest

from course_lib.cli import main
from course_lib.tools.nbgrader_course import course_root, release

ROOT = course_root()
MODULE = "01_rnn_bptt"
UNGRADED = {"hal_badjson", "ivy_wrongmodule", "jo_badmetadata"}
pytestmark = pytest.mark.timeout(900)


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _points(nb) -> dict[str, float]:
    return {_grade_id(c): float(c.metadata.nbgrader["points"]) for c in nb.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("grade")}


def _solved(released, solution, only: set[str] | None = None):
    """The released notebook with the solution cells filled in from solutions/ (``only``: just these)."""
    answers = {_grade_id(c): "\n".join(line for line in c.source.splitlines() if "### " not in line)
               for c in solution.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        gid = _grade_id(cell)
        if gid in answers and (only is None or gid in only):
            cell.source = answers[gid]
    return nb


def _set_source(nb, grade_id: str, source: str):
    for cell in nb.cells:
        if _grade_id(cell) == grade_id:
            cell.source = source
    return nb


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """Release, a class of ten submissions, one autograde run through the CLI; returns everything to check."""
    tmp = tmp_path_factory.mktemp("classroom")
    course_dir = tmp / "class"
    folder = release(course_dir, ["01"], root=ROOT)[0]
    released = nbformat.read(folder / f"{MODULE}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / f"{MODULE}.ipynb", as_version=4)
    points = _points(released)
    total = sum(points.values())
    # rnn_cell and rnn are what "partial" solves; clip_grad_norm is independent of the others.
    partial_ids = {"rnn_cell_solution", "rnn_solution"}
    subs = tmp / "submissions"

    def submit(student: str, nb=None, text: str | None = None, name: str = MODULE) -> None:
        (subs / student).mkdir(parents=True)
        path = subs / student / f"{name}.ipynb"
        if text is not None:
            path.write_text(text)
        else:
            nbformat.write(nb, path)

    submit("ada_solved", _solved(released, solution))
    submit("ben_blank", copy.deepcopy(released))
    submit("cy_partial", _solved(released, solution, partial_ids))
    submit("dee_syntax", _set_source(_solved(released, solution), "clip_grad_norm_solution",
                                     "def clip_grad_norm(grads, max_norm:\n    return grads"))
    submit("eve_loop", _set_source(_solved(released, solution), "clip_grad_norm_solution",
                                   "def clip_grad_norm(grads, max_norm):\n    while True:\n        pass"))
    # the clip_grad_norm exercise left unsolved, its test cell edited so that it cannot fail
    stub = next(c.source for c in released.cells if _grade_id(c) == "clip_grad_norm_solution")
    fay = _set_source(_solved(released, solution), "clip_grad_norm_solution", stub)
    submit("fay_edited", _set_source(fay, "check_clip_grad_norm", "pass"))
    deleted = _solved(released, solution)
    deleted.cells = [c for c in deleted.cells if _grade_id(c) != "check_rnn_bptt"]
    submit("gus_deleted", deleted)
    submit("hal_badjson", text='{"cells": [{"cell_type": "code", "source": "def rnn_cell(')
    submit("ivy_wrongmodule", nbformat.read(ROOT / "solutions" / "00_start_here.ipynb", as_version=4))
    # valid JSON and the right cells, but nbgrader's own metadata broken: nbgrader refuses it, alone
    broken = _solved(released, solution)
    next(c for c in broken.cells if _grade_id(c) == "check_rnn").metadata.nbgrader["points"] = "lots"
    submit("jo_badmetadata", broken)

    start = time.perf_counter()
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        # a 5 s limit on one call of a student's function (default 30 s) stops eve's loop sooner
        rc = main(["autograde", str(course_dir), str(subs), "--grader-timeout", "5"])
    seconds = time.perf_counter() - start
    rows = {r["student_id"]: r for r in csv.DictReader((course_dir / "grades.csv").open())}
    return {"dir": course_dir, "subs": subs, "rc": rc, "out": out.getvalue(), "err": err.getvalue(), "rows": rows,
            "points": points, "total": total, "seconds": seconds, "solution": solution, "released": released}


def test_every_score_and_status(classroom):
    p, total, rows = classroom["points"], classroom["total"], classroom["rows"]
    expected = {
        "ada_solved": total,
        "ben_blank": 0,
        "cy_partial": p["check_rnn_cell"] + p["check_rnn"],
        "dee_syntax": total - p["check_clip_grad_norm"],
        "eve_loop": total - p["check_clip_grad_norm"],
        "fay_edited": total - p["check_clip_grad_norm"],
        "gus_deleted": total - p["check_rnn_bptt"],
    }
    assert set(rows) == set(expected) | UNGRADED, "a student's result was lost"
    for student, score in expected.items():
        row = rows[student]
        assert row["assignment"] == MODULE and float(row["max_score"]) == total
        assert row["status"] == "graded", row
        assert float(row["score"]) == score, f"{student}: {row['score']} != {score}"
    for student in UNGRADED:
        assert rows[student]["score"] == "", "an ungraded submission must not look like a 0"
        assert rows[student]["status"].startswith("not graded: ")


def test_every_problem_is_reported(classroom):
    rows, out = classroom["rows"], classroom["out"]
    problems = {s: r["problems"] for s, r in rows.items()}
    assert problems["eve_loop"] == "check_clip_grad_norm: stopped by the time limit"
    assert problems["fay_edited"] == ("graded cell check_clip_grad_norm edited "
                                      "(restored from the release before grading)")
    points = classroom["points"]["check_rnn_bptt"]
    assert problems["gus_deleted"] == f"graded cell check_rnn_bptt deleted, its {points:g} point(s) lost"
    for student in ("ada_solved", "ben_blank", "cy_partial", "dee_syntax", *UNGRADED):
        assert problems[student] == "", student
    assert rows["jo_badmetadata"]["status"].startswith("not graded: nbgrader could not grade it: ")
    assert "invalid JSON at line 1" in rows["hal_badjson"]["status"]
    assert rows["ivy_wrongmodule"]["status"] == (
        f"not graded: this is the notebook of 00_start_here, not {MODULE} (wrong file name?)")
    # the command's own output: one line per submission, problems in brackets, a summary, exit 1, no traceback
    assert classroom["rc"] == 1
    for student, row in rows.items():
        line = next(ln for ln in out.splitlines() if ln.startswith(student))
        if row["problems"]:
            assert f"[{row['problems']}]" in line
        if row["status"] != "graded":
            assert "NOT GRADED: " + row["status"].removeprefix("not graded: ") in line
    assert "3 submission(s) could not be graded" in classroom["err"]
    assert "3 submission(s) with changed read-only cells or code stopped by the time limit" in out
    assert "Traceback" not in out + classroom["err"]


def test_feedback_never_shows_expected_values_or_test_code(classroom):
    """nbgrader's per-student feedback: learners see their own code and the graders' messages, nothing more."""
    course_dir = classroom["dir"]
    answers = [line.strip() for c in classroom["solution"].cells
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")
               for line in c.source.split("### BEGIN SOLUTION")[-1].split("### END SOLUTION")[0].splitlines()
               if len(line.strip()) > 20]
    assert answers
    for student, row in classroom["rows"].items():
        page = course_dir / "feedback" / student / MODULE / f"{MODULE}.html"
        if row["status"] != "graded":
            assert not page.exists(), student
            continue
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
        assert "course_lib/grading" not in text or "def " not in text.split("course_lib/grading", 1)[1][:200]
        if student in ("ben_blank", "cy_partial"):
            leaked = [line for line in answers if line in text and student == "ben_blank"]
            assert not leaked, f"solution code in {student}'s feedback: {leaked[:3]}"
        if student == "ben_blank":
            assert "not attempted" in text
        if student == "eve_loop":
            assert "took longer than 5 s" in text


def test_a_resubmission_is_picked_up_and_nobody_else_is_lost(classroom, tmp_path):
    """hal's corrupt notebook was never copied into the course: the corrected one grades on the next run."""
    resubmitted = tmp_path / "late"
    (resubmitted / "hal_badjson").mkdir(parents=True)
    nbformat.write(_solved(classroom["released"], classroom["solution"]),
                   resubmitted / "hal_badjson" / f"{MODULE}.ipynb")
    assert main(["autograde", str(classroom["dir"]), str(resubmitted), "--no-feedback"]) == 0
    rows = {r["student_id"]: r for r in csv.DictReader((classroom["dir"] / "grades.csv").open())}
    assert rows["hal_badjson"]["status"] == "graded"
    assert float(rows["hal_badjson"]["score"]) == classroom["total"]
    for student, before in classroom["rows"].items():
        if student != "hal_badjson":
            assert rows[student] == before, f"{student}'s row changed on someone else's resubmission"


def test_round_trip_time(classroom):
    """Ten submissions; the time is stated in the README's instructor section."""
    assert classroom["seconds"] < 600, classroom["seconds"]
    print(f"autograde of 10 submissions: {classroom['seconds']:.0f} s")
    for student, row in sorted(classroom["rows"].items()):
        print(f"| {student} | {row['score'] or '-'}/{row['max_score']} | {row['status']} | {row['problems']} |")


def test_course_directory_inside_the_repository_gets_a_note(tmp_path, capsys, monkeypatch):
    from course_lib import cli

    monkeypatch.setattr(cli, "_inside_repository", lambda path: True)
    monkeypatch.setattr("course_lib.tools.nbgrader_course.release", lambda *a, **k: [])
    assert main(["release", str(tmp_path / "x"), "01"]) == 0
    assert "inside the course repository" in capsys.readouterr().err


def test_release_of_an_unknown_module_writes_nothing(tmp_path, capsys):
    target = tmp_path / "class"
    assert main(["release", str(target), "01", "42"]) == 1
    assert "no module 42 in this course" in capsys.readouterr().err
    assert not target.exists()


def test_autograde_of_a_missing_course_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["autograde", str(tmp_path / "nope"), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is not a course directory made by `course release`" in err and "Traceback" not in err


def test_ungraded_marks_survive_in_a_side_file(classroom):
    assert (Path(classroom["dir"]) / "autograde_status.json").is_file()
