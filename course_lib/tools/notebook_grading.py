"""``course check``: run exercise notebooks in a fresh kernel and report their graded cells."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class GradedCell:
    grade_id: str
    points: float
    passed: bool
    feedback: str


def run_notebook(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute ``path`` top to bottom in a fresh kernel, keeping going after errors."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def graded_cells(nb: nbformat.NotebookNode) -> list[GradedCell]:
    """The nbgrader test cells of an executed notebook, passed when they raised nothing."""
    cells = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            err = errors[0]
            text = ANSI.sub("", f"{err.get('ename')}: {err.get('evalue')}")
        else:
            text = "passed"
        cells.append(GradedCell(meta.get("grade_id", "?"), float(meta.get("points", 0)), not errors, text))
    return cells


def grade_notebooks(folder: Path, modules: Iterable[str] | None = None, timeout: int = 600) -> bool:
    """Print a report for each notebook in ``folder``; True when every graded cell passed."""
    wanted = set(modules or [])
    paths = [p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb")) if not wanted or p.name[:2] in wanted]
    if not paths:
        raise FileNotFoundError(f"no notebooks for modules {sorted(wanted) or 'any'} in {folder}")
    all_passed = True
    for path in paths:
        print(f"== {path.name}: running in a fresh kernel ...", flush=True)
        cells = graded_cells(run_notebook(path, timeout))
        earned = sum(c.points for c in cells if c.passed)
        total = sum(c.points for c in cells)
        for c in cells:
            mark = "PASS" if c.passed else "FAIL"
            first = c.feedback.splitlines()[0:3] if not c.passed else []
            print(f"  {mark} {c.grade_id:<36} {c.points:g} pt")
            for line in first:
                print(f"         {line}")
        print(f"  {earned:g}/{total:g} points\n")
        all_passed &= all(c.passed for c in cells)
    return all_passed
