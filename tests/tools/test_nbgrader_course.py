"""The single-source exercise pipeline, with nbgrader itself: generate, release, autograde, export."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nbformat
import pytest

from course_lib.grading import EXERCISES
from course_lib.tools.nbgrader_course import (
    autograde,
    build_exercises,
    course_root,
    release,
    solution_notebooks,
)

ROOT = course_root()
SOLUTIONS = solution_notebooks(ROOT)


def _graded_cells(path: Path) -> list[dict]:
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]


def test_every_solution_has_a_generated_exercise_and_back():
    assert SOLUTIONS, "no solution notebooks"
    exercises = sorted(p.name for p in (ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
    assert exercises == [p.name for p in SOLUTIONS]


def test_exercises_in_sync_with_solutions(tmp_path):
    """exercises/ is exactly what nbgrader generates from solutions/ (regenerate: course build-exercises)."""
    generated = build_exercises(out_dir=tmp_path, root=ROOT)
    for path in generated:
        committed = ROOT / "exercises" / path.name
        assert committed.read_text() == path.read_text(), (
            f"exercises/{path.name} is out of date with solutions/{path.name}: run `course build-exercises`")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_notebook_holds_no_solution(solution):
    nb = nbformat.read(ROOT / "exercises" / solution.name, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    stubs = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    assert stubs, "an exercise notebook without exercises"
    assert all("raise NotImplementedError()" in c.source for c in stubs if c.cell_type == "code")
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs leaked"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_graded_cells_match_the_registry(solution):
    cells = _graded_cells(solution)
    assert cells, f"{solution.name} has no graded cell"
    module = solution.name[:2]
    seen = set()
    for cell in cells:
        meta = cell.metadata.nbgrader
        ex_id = meta["grade_id"].removeprefix("check_")
        assert ex_id in EXERCISES, f"{meta['grade_id']} grades an unknown exercise"
        assert EXERCISES[ex_id].module == module
        assert meta["points"] == EXERCISES[ex_id].points, f"points of {ex_id} differ from the registry"
        assert f'check("{ex_id}"' in cell.source and ".raise_for_status()" in cell.source
        seen.add(ex_id)
    missing = {e.id for e in EXERCISES.values() if e.module == module} - seen
    assert not missing, f"registered exercises without a graded cell in {solution.name}: {sorted(missing)}"


@pytest.mark.timeout(1800)  # every module released and graded twice: minutes on 2 shared cores
def test_autograde_gives_solutions_full_marks_and_exercises_zero(tmp_path):
    """The real nbgrader pipeline: release, collect two students, autograde, export the gradebook CSV."""
    course_dir = tmp_path / "course"
    released = release(course_dir, root=ROOT)
    submissions = tmp_path / "submissions"
    for student in ("solver", "blank"):
        (submissions / student).mkdir(parents=True)
    for folder in released:
        shutil.copy2(ROOT / "solutions" / f"{folder.name}.ipynb", submissions / "solver")
        shutil.copy2(folder / f"{folder.name}.ipynb", submissions / "blank")
    csv_path = autograde(course_dir, submissions, feedback=False, progress=False).csv_path
    rows = list(csv.DictReader(csv_path.open()))
    assert {r["student_id"] for r in rows} == {"solver", "blank"}
    assert {r["assignment"] for r in rows} == {f.name for f in released}
    for row in rows:
        score, max_score = float(row["score"]), float(row["max_score"])
        expected_max = sum(c.metadata.nbgrader["points"] for c in _graded_cells(ROOT / "solutions" /
                                                                                 f"{row['assignment']}.ipynb"))
        assert max_score == expected_max
        if row["student_id"] == "solver":
            assert score == max_score, f"solution of {row['assignment']} scored {score}/{max_score}"
        else:
            assert score == 0, f"blank exercise {row['assignment']} scored {score}"


def test_a_later_release_adds_its_module_and_keeps_the_earlier_one(tmp_path):
    """Modules handed out one at a time into one course directory (each week's release)."""
    from nbgrader.api import Gradebook

    course_dir = tmp_path / "course"
    first = release(course_dir, ["00"], root=ROOT)[0]
    before = (first / f"{first.name}.ipynb").read_text()
    second = release(course_dir, ["01"], root=ROOT)[0]
    assert (first / f"{first.name}.ipynb").read_text() == before
    assert (second / f"{second.name}.ipynb").is_file()
    with Gradebook("sqlite:///" + str((course_dir / "gradebook.db").resolve())) as gb:
        assert sorted(a.name for a in gb.assignments) == [first.name, second.name]
