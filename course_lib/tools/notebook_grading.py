"""``course check``: run exercise notebooks in a fresh kernel and report their graded cells."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class GradedCell:
    grade_id: str
    points: float
    passed: bool
    feedback: str


class NotebookTimeout(RuntimeError):
    """A cell ran past the time limit (or its kernel stopped answering); the message names notebook and cell."""


def _cell_label(nb: nbformat.NotebookNode, cell: nbformat.NotebookNode | None) -> str:
    if cell is None:
        return "a cell"
    index = next((i for i, c in enumerate(nb.cells) if c is cell), None)
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")[:60]
    return f"cell {index}" + (f" ({grade_id})" if grade_id else "") + (f": {first}" if first else "")


def kernel_manager(workdir: str) -> AsyncKernelManager:
    """A python3 kernel manager talking over local sockets in ``workdir`` on POSIX (no TCP ports opened,
    and no 'running over TCP without encryption' warning), over loopback TCP elsewhere."""
    if os.name == "posix":
        return AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(workdir, "kernel"))
    return AsyncKernelManager(kernel_name="python3")


def _kernel_state(km: AsyncKernelManager, cell: nbformat.NotebookNode | None) -> str:
    """What the kernel was doing when its cell timed out: never started it, computing, or waiting."""
    if cell is not None and "iopub.execute_input" not in cell.get("metadata", {}).get("execution", {}):
        return (" (the kernel never started this cell: it did not read the request -- a kernel bug, see "
                "ipykernel issue 1554; run it again)")
    try:
        import psutil

        process = psutil.Process(km.provisioner.pid)
        process.cpu_percent(None)
        busy = process.cpu_percent(1.0)
    except Exception:  # noqa: BLE001 - a diagnosis only; the timeout is reported either way
        return ""
    return f" (the kernel was computing, {busy:.0f}% CPU)" if busy >= 1.0 else " (the kernel was waiting, no CPU use)"


def execute_notebook(nb: nbformat.NotebookNode, path: Path, timeout: int = 600,
                     allow_errors: bool = False) -> nbformat.NotebookNode:
    """Execute ``nb`` (read from ``path``) top to bottom in a fresh kernel, in ``path``'s folder.

    A cell that runs longer than ``timeout`` seconds, or whose kernel stops answering, raises
    :class:`NotebookTimeout` naming the notebook and the cell, instead of waiting forever.
    """
    with tempfile.TemporaryDirectory(prefix="course-kernel-") as workdir:
        running: list[nbformat.NotebookNode] = []
        km = kernel_manager(workdir)
        client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=allow_errors,
                                shutdown_kernel="immediate",
                                resources={"metadata": {"path": str(path.parent)}},
                                on_cell_execute=lambda cell, cell_index: running.append(cell))
        try:
            client.execute()
        except CellTimeoutError:
            cell = running[-1] if running else None
            raise NotebookTimeout(f"{path.name}: {_cell_label(nb, cell)} did not finish within {timeout} s "
                                  f"and was stopped{_kernel_state(km, cell)}") from None
        except DeadKernelError:
            raise NotebookTimeout(f"{path.name}: the kernel died while running the notebook") from None
        finally:  # the client leaves a kernel it did not create running: stop it, busy or not
            if run_sync(km.is_alive)():
                run_sync(km.shutdown_kernel)(now=True)
    return nb


def run_notebook(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute ``path`` top to bottom in a fresh kernel, keeping going after errors."""
    return execute_notebook(nbformat.read(path, as_version=4), path, timeout, allow_errors=True)


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


def find_notebooks(folder: Path, modules: Iterable[str] | None = None) -> list[Path]:
    """``folder/NN_*.ipynb`` for the modules listed (all when none); an unknown module is an error."""
    wanted = set(modules or [])
    paths = [p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb")) if not wanted or p.name[:2] in wanted]
    missing = sorted(wanted - {p.name[:2] for p in paths})
    if missing or not paths:
        have = ", ".join(sorted(p.name[:2] for p in folder.glob("[0-9][0-9]_*.ipynb"))) or "none"
        raise FileNotFoundError(f"no notebooks for modules {missing or 'any'} in {folder} (modules there: {have})")
    return paths


def feedback_lines(cell: GradedCell) -> list[str]:
    """The failing sub-checks of a graded cell with their messages, as the notebook shows them."""
    lines = cell.feedback.splitlines()
    passed = [ln for ln in lines if ln.lstrip().startswith("PASS ")]
    shown = [ln for ln in lines if not ln.lstrip().startswith("PASS ")]
    if passed:
        shown.append(f"({len(passed)} sub-check(s) passed)")
    return shown


def grade_notebooks(paths: Iterable[Path], timeout: int = 600) -> bool:
    """Run each notebook in a fresh kernel and print its graded cells; True when every one passed."""
    all_passed = True
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no notebook {path}")
        print(f"== {path.name}: running in a fresh kernel ...", flush=True)
        try:
            cells = graded_cells(run_notebook(path, timeout))
        except NotebookTimeout as exc:
            print(f"  STOPPED {exc}\n", flush=True)
            all_passed = False
            continue
        if not cells:
            print("  no graded cells in this notebook (is it an exercise notebook?)\n")
            all_passed = False
            continue
        earned = sum(c.points for c in cells if c.passed)
        total = sum(c.points for c in cells)
        for c in cells:
            print(f"  {'PASS' if c.passed else 'FAIL'} {c.grade_id:<36} {c.points:g} pt")
            for line in ([] if c.passed else feedback_lines(c)):
                print(f"         {line}")
        print(f"  {earned:g}/{total:g} points\n", flush=True)
        all_passed &= all(c.passed for c in cells)
    return all_passed
