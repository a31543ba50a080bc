"""The nbgrader side of the course: exercises generated from solutions, release and autograding.

The solution notebooks in ``solutions/`` are the single source. Each module is one nbgrader
assignment named after its notebook (``01_rnn_bptt``). This module builds a standard nbgrader
course directory from them and drives nbgrader itself (``generate_assignment``, ``autograde``,
``export``) -- no hand-written stripping of solutions.

    course build-exercises           # regenerate exercises/ from solutions/
    course release DIR               # an nbgrader course directory with release/ ready to hand out
    course autograde DIR SUBMISSIONS # grade SUBMISSIONS/<student>/<NN_name>.ipynb, write DIR/grades.csv
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import nbformat

COURSE_ID = "memory-in-sequence-models"


def course_root() -> Path:
    """The checkout that holds ``solutions/`` (the package is installed from it in editable mode)."""
    candidates = [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]]
    for path in candidates:
        if (path / "solutions").is_dir() and (path / "course_lib").is_dir():
            return path
    raise FileNotFoundError("could not find the course checkout (a folder with solutions/ and course_lib/); "
                            "run this from inside the cloned repository")


def solution_notebooks(root: Path | None = None, modules: Iterable[str] | None = None) -> list[Path]:
    """``solutions/NN_*.ipynb``, optionally only the modules ``NN`` listed, sorted by module."""
    root = root or course_root()
    wanted = set(modules) if modules else None
    paths = sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if wanted is None or p.name[:2] in wanted]


def _write_config(course_dir: Path) -> None:
    db = (course_dir / "gradebook.db").resolve()
    (course_dir / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.CourseDirectory.root = {str(course_dir.resolve())!r}\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(db)!r}\n"
        "# Learner code that loops forever is stopped by the graders; this is the notebook-level limit.\n"
        "c.ExecutePreprocessor.timeout = 600\n"
    )


def make_course_dir(course_dir: Path, modules: Iterable[str] | None = None, root: Path | None = None) -> list[str]:
    """Create an nbgrader course directory whose ``source/`` holds the solution notebooks.

    Returns the assignment names.
    """
    course_dir = Path(course_dir)
    course_dir.mkdir(parents=True, exist_ok=True)
    _write_config(course_dir)
    names = []
    for nb in solution_notebooks(root, modules):
        name = nb.stem
        dest = course_dir / "source" / name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, dest / nb.name)
        names.append(name)
    if not names:
        raise FileNotFoundError("no solution notebooks found in solutions/")
    return names


def _run_nbgrader(course_dir: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader calls helper programs (alembic, jupyter) by name: put this interpreter's bin/ first on
    # PATH so that they are found when the course runs from a virtual environment that is not activated.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course_dir,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _generate(course_dir: Path, names: list[str]) -> None:
    for name in names:
        _run_nbgrader(course_dir, "generate_assignment", name, "--force")


def normalise(path: Path) -> None:
    """Rewrite a notebook in nbformat's canonical JSON (stable diffs, stable sync test)."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def build_exercises(out_dir: Path | None = None, modules: Iterable[str] | None = None,
                    root: Path | None = None) -> list[Path]:
    """Regenerate the exercise notebooks from the solutions with nbgrader; return their paths."""
    root = root or course_root()
    out_dir = Path(out_dir) if out_dir else root / "exercises"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="course-nbgrader-") as tmp:
        course_dir = Path(tmp)
        names = make_course_dir(course_dir, modules, root)
        _generate(course_dir, names)
        written = []
        for name in names:
            src = course_dir / "release" / name / f"{name}.ipynb"
            dest = out_dir / f"{name}.ipynb"
            shutil.copy2(src, dest)
            normalise(dest)
            written.append(dest)
    return written


def release(course_dir: Path, modules: Iterable[str] | None = None, root: Path | None = None) -> list[Path]:
    """Build an instructor's nbgrader course directory with every assignment generated into release/."""
    course_dir = Path(course_dir)
    names = make_course_dir(course_dir, modules, root)
    _generate(course_dir, names)
    return [course_dir / "release" / n for n in names]


def autograde(course_dir: Path, submissions: Path, csv_path: Path | None = None) -> Path:
    """Autograde ``submissions/<student>/<NN_name>.ipynb`` in ``course_dir``; export a gradebook CSV.

    ``course_dir`` must come from :func:`release` (it holds the generated assignments and the
    gradebook database). Returns the CSV path (``course_dir/grades.csv`` by default).
    """
    course_dir, submissions = Path(course_dir), Path(submissions)
    assignments = {p.name for p in (course_dir / "release").iterdir() if p.is_dir()}
    students = sorted(p.name for p in submissions.iterdir() if p.is_dir())
    if not students:
        raise FileNotFoundError(f"no student folders in {submissions}")
    graded: set[str] = set()
    for student in students:
        _run_nbgrader(course_dir, "db", "student", "add", student)
        for nb in sorted((submissions / student).glob("*.ipynb")):
            if nb.stem not in assignments:
                raise ValueError(f"{nb} is not one of the released assignments: {sorted(assignments)}")
            dest = course_dir / "submitted" / student / nb.stem
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, dest / nb.name)
            graded.add(nb.stem)
    for name in sorted(graded):
        _run_nbgrader(course_dir, "autograde", name, "--force")
    csv_path = Path(csv_path) if csv_path else course_dir / "grades.csv"
    _run_nbgrader(course_dir, "export", "--to", str(csv_path.resolve()))
    return csv_path
