"""``course bench``: time every notebook (and the test suite) on this machine; write a results table.

Budgets (from the course design): each notebook under 2 minutes on a 2-core CPU; the whole test
suite under 15 minutes. Numbers are wall-clock seconds of one run, in a fresh kernel per notebook.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat

NOTEBOOK_BUDGET_S = 120.0
SUITE_BUDGET_S = 15 * 60.0
START = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def time_notebook(path: Path, timeout: int = 600) -> tuple[float, str]:
    """Seconds to execute ``path`` top to bottom in a fresh kernel, and "ok" or the error.

    A cell that runs past ``timeout`` seconds is stopped and named in the status.
    """
    from course_lib.tools.notebook_grading import NotebookTimeout, execute_notebook

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        execute_notebook(nb, path, timeout)
        status = "ok"
    except NotebookTimeout as exc:
        status = f"stopped: {str(exc).split(': ', 1)[1]}"
    except Exception as exc:  # noqa: BLE001 - reported in the table
        status = f"error: {type(exc).__name__}"
    return time.perf_counter() - start, status


def machine_line() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def run_bench(root: Path, notebooks: bool = True, tests: bool = False, kernels: bool = True,
              out: Path | None = None, timeout: int = 600) -> int:
    """Measure what is asked for and merge it into ``out`` (rows not measured this time are kept)."""
    from tqdm.auto import tqdm

    out = out or root / "benchmarks" / "RESULTS.md"
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no folder {out.parent} for the results file (create it first)")
    today = time.strftime("%Y-%m-%d")
    rows: dict[str, tuple[str, str, str, str]] = {}
    failures = 0
    comparisons = []
    if kernels:
        from course_lib.tools.kernel_bench import run_comparisons

        print("timing the course's implementations against torch ...", flush=True)
        comparisons = run_comparisons()
        for c in comparisons:
            print(f"{c.name:<14} {c.ours:<48} {c.ours_ms:9.2f} ms  {c.theirs:<32} {c.theirs_ms:9.2f} ms  "
                  f"{c.ratio:6.2f}x  (max diff {c.max_abs_err:.1e})", flush=True)
        from course_lib.tools.kernel_bench import mlstm_scaling, mlstm_scaling_table

        print("timing the three mLSTM forms against S ...", flush=True)
        scaling = mlstm_scaling_table(mlstm_scaling())
        print("\n".join(scaling), flush=True)
    if notebooks:
        paths = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
            (root / "solutions").glob("[0-9][0-9]_*.ipynb"))
        bar = tqdm(paths, desc="notebooks", unit="notebook")
        for path in bar:
            name = f"{path.parent.name}/{path.name}"
            bar.set_postfix_str(name)
            seconds, status = time_notebook(path, timeout)
            within = seconds <= NOTEBOOK_BUDGET_S and status == "ok"
            failures += not within
            rows[name] = _row(seconds, NOTEBOOK_BUDGET_S, status, within, today)
            bar.write(f"{name:<40} {seconds:7.1f} s  {status}")
    if tests:
        print("running the whole test suite (`course test`) ...", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", "course_lib.cli", "test"], cwd=root)
        seconds = time.perf_counter() - start
        within = seconds <= SUITE_BUDGET_S and rc == 0
        failures += not within
        rows[SUITE_ROW] = _row(seconds, SUITE_BUDGET_S, "ok" if rc == 0 else f"exit {rc}", within, today)
        print(f"test suite {seconds:.1f} s (exit {rc})", flush=True)
    old_rows, old_comparisons = _read_block(out)
    merged = {**old_rows, **rows}
    table = [START, f"Measured on: {machine_line()}", ""]
    if merged:
        table += ["Run times (wall-clock seconds, one run, fresh kernel per notebook; `measured` is the date of "
                  "the run that produced the row, rows not re-measured are kept):", "",
                  "| what | seconds | budget | status | measured |", "|---|---:|---:|---|---|"]
        table += [f"| {name} | {' | '.join(cells)} |" for name, cells in sorted(merged.items(), key=_row_order)]
        table.append("")
    if comparisons:
        from course_lib.tools.kernel_bench import comparison_table

        device = "GPU" if comparisons[0].device == "cuda" else "CPU"
        table += [f"Course implementations against torch on the {device} (median of 7 runs; ratio = course / torch, "
                  f"below 1 is faster than torch; measured {today}):", "", *comparison_table(comparisons), "",
                  f"The three mLSTM forms against the sequence length S (median time, counted peak memory of the "
                  f"tensors; fitted power-law exponents below; measured {today}):", "", *scaling, ""]
    elif old_comparisons:
        table += [*old_comparisons, ""]
    table.append(END)
    _write_section(out, "\n".join(table))
    print(f"wrote {out}")
    return 0 if failures == 0 else 1


SUITE_ROW = "test suite (`course test`, 2 workers)"


def _row(seconds: float, budget: float, status: str, within: bool, date: str) -> tuple[str, str, str, str]:
    return (f"{seconds:.1f}", f"{budget:.0f}", status + ("" if within else " (over budget)"), date)


def _row_order(item: tuple[str, tuple]) -> tuple[int, str]:
    name = item[0]
    return (2 if name == SUITE_ROW else 0 if name.startswith("notebooks/") else 1, name)


def _read_block(path: Path) -> tuple[dict[str, tuple[str, str, str, str]], list[str]]:
    """The run-time rows and the comparison section of an existing results block (to merge into)."""
    if not path.is_file():
        return {}, []
    text = path.read_text()
    if START not in text or END not in text:
        return {}, []
    block = text.split(START, 1)[1].split(END, 1)[0]
    measured = re.search(r"Measured (\d{4}-\d{2}-\d{2})", block)
    default_date = measured.group(1) if measured else "earlier"
    rows: dict[str, tuple[str, str, str, str]] = {}
    comparisons: list[str] = []
    in_comparisons = False
    for line in block.splitlines():
        if line.startswith("Course implementations against torch"):
            in_comparisons = True
        if in_comparisons:
            comparisons.append(line)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) in (4, 5) and cells[0] != "what" and cells[1].replace(".", "").isdigit():
            rows[cells[0]] = (cells[1], cells[2], cells[3], cells[4] if len(cells) == 5 else default_date)
    while comparisons and not comparisons[-1].strip():
        comparisons.pop()
    return rows, comparisons


def _write_section(path: Path, section: str) -> None:
    """Replace the generated block of ``path`` (kept between markers), leaving hand-written text alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
