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

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
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
        "# Learner code that loops forever is stopped by the graders; this is the per-cell limit behind them.\n"
        "c.ExecutePreprocessor.timeout = 600\n"
        "c.Execute.timeout = 600\n"
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
    sources = sorted(p.name for p in (course_dir / "source").iterdir() if p.is_dir())
    if sorted(names) == sources:  # one nbgrader run for all (its start-up is 4 s; the same files as one by one)
        _run_nbgrader(course_dir, "generate_assignment", "*", "--force")
        return
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


def check_modules(modules: Iterable[str] | None, root: Path | None = None) -> None:
    """Raise ``ValueError`` naming every module number in ``modules`` that has no solution notebook."""
    available = sorted(p.name[:2] for p in solution_notebooks(root))
    unknown = sorted(set(modules or []) - set(available))
    if unknown:
        raise ValueError(f"no module {', '.join(unknown)} in this course (modules: {', '.join(available)})")


def release(course_dir: Path, modules: Iterable[str] | None = None, root: Path | None = None) -> list[Path]:
    """Build an instructor's nbgrader course directory with every assignment generated into release/.

    ``modules`` defaults to all. Unknown module numbers are an error before anything is written, and
    a course directory that this call created is removed again when generating fails.
    """
    check_modules(modules, root)
    course_dir = Path(course_dir)
    created = not course_dir.exists()
    try:
        names = make_course_dir(course_dir, modules, root)
        _generate(course_dir, names)
    except BaseException:
        if created:
            shutil.rmtree(course_dir, ignore_errors=True)
        raise
    return [course_dir / "release" / n for n in names]


# --------------------------------------------------------------------------------------------
# Autograding a class: every submission that can be graded is, every one that cannot is reported
# --------------------------------------------------------------------------------------------

STATUS_FILE = "autograde_status.json"
GRADEBOOK_COLUMNS = ["assignment", "student_id", "score", "max_score", "status", "problems"]
TIMEOUT_MARKERS = ("CellTimeoutError", "took longer than", "GraderTimeout")


@dataclass
class Submission:
    """One student's notebook for one assignment, and what autograding made of it.

    ``status`` is ``"graded"`` or ``"not graded"`` (then ``reason`` says why, in one line);
    ``problems`` lists what the instructor should look at even when it was graded: changed or deleted
    read-only cells, code stopped by a time limit.
    """

    student: str
    assignment: str
    path: Path
    status: str = "graded"
    reason: str = ""
    problems: list[str] = field(default_factory=list)
    score: float | None = None
    max_score: float | None = None

    @property
    def graded(self) -> bool:
        return self.status == "graded"

    def line(self) -> str:
        """One line for the terminal: student, notebook, score or reason, problems."""
        what = (f"{self.score:g}/{self.max_score:g}" if self.graded and self.score is not None
                else f"NOT GRADED: {self.reason}")
        extra = f"  [{'; '.join(self.problems)}]" if self.problems else ""
        return f"{self.student:<16} {self.assignment}.ipynb  {what}{extra}"


@dataclass
class AutogradeReport:
    csv_path: Path
    submissions: list[Submission]

    @property
    def not_graded(self) -> list[Submission]:
        return [s for s in self.submissions if not s.graded]

    @property
    def with_problems(self) -> list[Submission]:
        return [s for s in self.submissions if s.problems]


def _cells_by_id(nb: dict) -> dict[str, dict]:
    cells = {}
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if isinstance(meta, dict) and meta.get("grade_id"):
            cells[meta["grade_id"]] = cell
    return cells


def _graded_ids(nb: dict) -> set[str]:
    return {gid for gid, c in _cells_by_id(nb).items() if c["metadata"]["nbgrader"].get("grade")}


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return ("".join(src) if isinstance(src, list) else str(src)).strip()


def _read_submission(path: Path) -> tuple[dict | None, str]:
    """The notebook as JSON, or None and a one-line reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({type(exc).__name__})"
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not a notebook: invalid JSON at line {exc.lineno}, column {exc.colno}"
    try:
        nbformat.validate(nbformat.reads(text, as_version=4))
    except Exception as exc:  # noqa: BLE001 - any validation failure is reported in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"not a valid notebook: {first[:120]}"
    return nb, ""


def inspect_submission(nb: dict, released: dict, assignment: str, others: dict[str, set[str]]) -> tuple[str, list[str]]:
    """Compare a submission with its released notebook.

    Returns (reason it cannot be graded or "", problems). Graded cells and read-only cells are
    compared by their nbgrader ``grade_id``: a deleted one costs its points, an edited one is
    restored by nbgrader from the release before grading -- both are reported.
    """
    ours = _cells_by_id(nb)
    ref = _cells_by_id(released)
    graded_ids = {gid for gid, c in ref.items() if c["metadata"]["nbgrader"].get("grade")}
    if graded_ids and not graded_ids & set(ours):
        match = [name for name, ids in others.items() if name != assignment and ids & set(ours)]
        if match:
            return f"this is the notebook of {match[0]}, not {assignment} (wrong file name?)", []
        return f"none of the graded cells of {assignment} are in it (not the released notebook?)", []
    problems = []
    for gid, cell in ref.items():
        meta = cell["metadata"]["nbgrader"]
        if not (meta.get("grade") or meta.get("locked")) or meta.get("solution"):
            continue
        kind = "graded" if meta.get("grade") else "read-only"
        if gid not in ours:
            cost = f", its {meta.get('points', 0):g} point(s) lost" if meta.get("grade") else ""
            problems.append(f"{kind} cell {gid} deleted{cost}")
        elif _source(ours[gid]) != _source(cell):
            problems.append(f"{kind} cell {gid} edited (restored from the release before grading)")
    return "", problems


def _timeouts(autograded: Path) -> list[str]:
    """Graded cells of an autograded notebook whose code was stopped by a time limit."""
    if not autograded.is_file():
        return []
    nb = json.loads(autograded.read_text(encoding="utf-8"))
    found = []
    for gid, cell in _cells_by_id(nb).items():
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            text = f"{out.get('ename', '')} {out.get('evalue', '')}"
            if any(marker in text for marker in TIMEOUT_MARKERS):
                found.append(f"{gid}: stopped by the time limit")
                break
    return found


def _nbgrader_error(lines: list[str]) -> str:
    """The exception line of nbgrader's log of a notebook it could not grade, for a one-line reason."""
    for line in reversed(lines):
        text = line.strip()
        head = text.split(":", 1)[0]
        if ":" in text and head.replace(".", "").isidentifier() and head.endswith(("Error", "Exception")):
            return f"nbgrader could not grade it: {text[:160]}"
    return "nbgrader could not grade it (run `nbgrader autograde` in the course directory for details)"


def _nbgrader(course_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course_dir, capture_output=True,
                          text=True, env=env)


def _forget(course_dir: Path, student: str, assignment: str) -> None:
    """Remove every earlier copy and grade of one submission (it is superseded by this run's)."""
    from nbgrader.api import Gradebook, MissingEntry

    for folder in ("submitted", "autograded", "feedback"):
        shutil.rmtree(course_dir / folder / student / assignment, ignore_errors=True)
    with Gradebook(_db_url(course_dir)) as gb:
        try:
            gb.remove_submission(assignment, student)
        except MissingEntry:
            pass


def _db_url(course_dir: Path) -> str:
    return "sqlite:///" + str((course_dir / "gradebook.db").resolve())


def _load_status(course_dir: Path) -> dict:
    path = course_dir / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_gradebook(course_dir: Path, csv_path: Path) -> list[dict]:
    """Write one row per student and assignment: score (blank when not graded), status, problems."""
    from nbgrader.api import Gradebook, MissingEntry

    status = _load_status(course_dir)
    rows = []
    with Gradebook(_db_url(course_dir)) as gb:
        students = sorted(s.id for s in gb.students)
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            for student in students:
                entry = status.get(f"{student}/{assignment.name}")
                try:
                    score = f"{gb.find_submission(assignment.name, student).score:g}"
                    state = "graded"
                except MissingEntry:
                    score, state = "", "no submission"
                if entry and entry["status"] != "graded":
                    score, state = "", f"not graded: {entry['reason']}"
                rows.append({"assignment": assignment.name, "student_id": student, "score": score,
                             "max_score": f"{assignment.max_score:g}", "status": state,
                             "problems": "; ".join(entry["problems"]) if entry else ""})
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=GRADEBOOK_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _others(course_dir: Path, students: list[str]) -> list[str]:
    """Students with a folder in submitted/ who are not in ``students`` (left out of a batch)."""
    folder = course_dir / "submitted"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in students) if folder.is_dir() else []


def _autograde_batch(course_dir: Path, assignment: str, batch: list[Submission], extra: list[str], bar,
                     grader_timeout: float | None = None) -> None:
    """One nbgrader run over this run's copies of ``assignment``; mark who could not be graded and why."""
    students = [s.student for s in batch]
    cmd = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--force", *extra,
           f"--CourseDirectory.student_id_exclude={','.join(_others(course_dir, students))}"]
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if grader_timeout:  # read by the graders in each student's kernel
        from course_lib.grading.core import GRADER_TIMEOUT_ENV

        env[GRADER_TIMEOUT_ENV] = f"{grader_timeout:g}"
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=course_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env) as proc:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if "] Autograding " in line or "There was an error processing assignment: " in line:
                bar.update(1)
                bar.set_postfix_str(Path(line.split()[-1]).parent.parent.name if "Autograding" in line else "")
    for sub in batch:
        autograded = course_dir / "autograded" / sub.student / assignment / f"{assignment}.ipynb"
        failed = f"for student '{sub.student}'" in "\n".join(lines)
        if failed or not autograded.is_file():
            marker = f"/submitted/{sub.student}/{assignment}"
            start = next((i for i, ln in enumerate(lines) if "error processing" in ln and marker in ln), None)
            segment = lines[start + 1:] if start is not None else lines
            end = next((i for i, ln in enumerate(segment) if ln.startswith("[AutogradeApp")
                        and "Traceback" not in ln), len(segment))
            _forget(course_dir, sub.student, assignment)
            sub.status, sub.reason = "not graded", _nbgrader_error(segment[:end])
        else:
            sub.problems += _timeouts(autograded)


def autograde(course_dir: Path, submissions: Path, csv_path: Path | None = None, timeout: int | None = None,
              feedback: bool = True, progress: bool = True, grader_timeout: float | None = None) -> AutogradeReport:
    """Autograde ``submissions/<student>/<NN_name>.ipynb`` in ``course_dir``; write the gradebook CSV.

    ``course_dir`` must come from :func:`release`. Each submission is checked before nbgrader sees
    it (readable JSON, a notebook of the right assignment, read-only cells intact); nbgrader then
    grades each assignment in one run, and a notebook it fails on is reported on its own, so one
    broken notebook never costs anyone else's grade. A submission that cannot be
    graded replaces any earlier copy (a resubmission is picked up on the next run) and is marked
    "not graded: <reason>" in the gradebook. ``timeout`` (seconds per cell) overrides the course
    directory's limit; ``grader_timeout`` (seconds) replaces the graders' own limit on one call of a
    learner's function (30 s), which is what stops code that loops forever. With ``feedback``,
    nbgrader's HTML feedback is generated into ``course_dir/feedback/``. Returns an :class:`AutogradeReport`.
    """
    from nbgrader.api import Gradebook
    from tqdm.auto import tqdm

    course_dir, submissions = Path(course_dir), Path(submissions)
    if not (course_dir / "nbgrader_config.py").is_file() or not (course_dir / "release").is_dir():
        raise FileNotFoundError(f"{course_dir} is not a course directory made by `course release`")
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions folder {submissions}")
    released = {p.name: json.loads((p / f"{p.name}.ipynb").read_text(encoding="utf-8"))
                for p in sorted((course_dir / "release").iterdir()) if (p / f"{p.name}.ipynb").is_file()}
    graded_ids = {name: _graded_ids(nb) for name, nb in released.items()}
    try:  # the modules not released here, to recognise a notebook handed in under the wrong name
        for path in solution_notebooks():
            graded_ids.setdefault(path.stem, _graded_ids(json.loads(path.read_text(encoding="utf-8"))))
    except FileNotFoundError:
        pass
    students = sorted(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise FileNotFoundError(f"no student folders in {submissions} "
                                f"(expected {submissions}/<student>/<NN_name>.ipynb)")
    todo = [Submission(s, nb.stem, nb) for s in students for nb in sorted((submissions / s).glob("*.ipynb"))]
    with Gradebook(_db_url(course_dir)) as gb:
        for student in students:
            gb.update_or_create_student(student)
    status = _load_status(course_dir)
    ready: dict[str, list[Submission]] = {}
    for sub in todo:
        if sub.assignment not in released:
            sub.status, sub.reason = "not graded", f"not a released assignment (expected one of: {', '.join(released)})"
            continue
        nb, reason = _read_submission(sub.path)
        if nb is not None:
            reason, sub.problems = inspect_submission(nb, released[sub.assignment], sub.assignment, graded_ids)
        _forget(course_dir, sub.student, sub.assignment)
        if reason:
            sub.status, sub.reason = "not graded", reason
            continue
        dest = course_dir / "submitted" / sub.student / sub.assignment
        dest.mkdir(parents=True)
        shutil.copy2(sub.path, dest / f"{sub.assignment}.ipynb")
        ready.setdefault(sub.assignment, []).append(sub)
    extra = [f"--Execute.timeout={timeout}"] if timeout else []
    with tqdm(total=sum(len(v) for v in ready.values()), desc="autograding", unit="notebook",
              disable=not progress) as bar:
        for assignment, batch in ready.items():
            _autograde_batch(course_dir, assignment, batch, extra, bar, grader_timeout)
    for sub in todo:
        status[f"{sub.student}/{sub.assignment}"] = {"status": sub.status, "reason": sub.reason,
                                                    "problems": sub.problems}
    (course_dir / STATUS_FILE).write_text(json.dumps(status, indent=1, sort_keys=True) + "\n")
    if feedback:
        for assignment, batch in ready.items():
            graded = [s.student for s in batch if s.graded]
            if graded:
                _nbgrader(course_dir, "generate_feedback", assignment, "--force",
                          f"--CourseDirectory.student_id_exclude={','.join(_others(course_dir, graded))}")
    csv_path = Path(csv_path) if csv_path else course_dir / "grades.csv"
    rows = {(r["student_id"], r["assignment"]): r for r in write_gradebook(course_dir, csv_path)}
    for sub in todo:
        row = rows.get((sub.student, sub.assignment))
        if sub.graded and row and row["score"] != "":
            sub.score, sub.max_score = float(row["score"]), float(row["max_score"])
    return AutogradeReport(csv_path, todo)
