"""``course bench``: time every notebook (and the test suite) on this machine; write a results table.

Budgets (from the course design): each notebook under 2 minutes on a 2-core CPU; the whole test
suite under 15 minutes. Numbers are wall-clock seconds of one run, in a fresh kernel per notebook.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK_BUDGET_S = 120.0
SUITE_BUDGET_S = 15 * 60.0
START = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def time_notebook(path: Path, timeout: int = 600) -> tuple[float, str]:
    """Seconds to execute ``path`` top to bottom in a fresh kernel, and "ok" or the error."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
        status = "ok"
    except Exception as exc:  # noqa: BLE001 - reported in the table
        status = f"error: {type(exc).__name__}"
    return time.perf_counter() - start, status


def machine_line() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def run_bench(root: Path, notebooks: bool = True, tests: bool = False, kernels: bool = True,
              out: Path | None = None) -> int:
    out = out or root / "benchmarks" / "RESULTS.md"
    rows = []
    failures = 0
    comparisons = []
    if kernels:
        from course_lib.tools.kernel_bench import run_comparisons

        comparisons = run_comparisons()
        for c in comparisons:
            print(f"{c.name:<14} {c.ours:<48} {c.ours_ms:9.2f} ms  {c.theirs:<32} {c.theirs_ms:9.2f} ms  "
                  f"{c.ratio:6.2f}x  (max diff {c.max_abs_err:.1e})", flush=True)
    if notebooks:
        paths = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
            (root / "solutions").glob("[0-9][0-9]_*.ipynb"))
        for path in paths:
            seconds, status = time_notebook(path)
            within = seconds <= NOTEBOOK_BUDGET_S and status == "ok"
            failures += not within
            rows.append((f"{path.parent.name}/{path.name}", seconds, NOTEBOOK_BUDGET_S, status, within))
            print(f"{rows[-1][0]:<40} {seconds:7.1f} s  {status}", flush=True)
    if tests:
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", "course_lib.cli", "test"], cwd=root)
        seconds = time.perf_counter() - start
        within = seconds <= SUITE_BUDGET_S and rc == 0
        failures += not within
        rows.append(("test suite (`course test`, 2 workers)", seconds, SUITE_BUDGET_S,
                     "ok" if rc == 0 else f"exit {rc}", within))
        print(f"test suite {seconds:.1f} s (exit {rc})", flush=True)
    table = [START, f"Measured {time.strftime('%Y-%m-%d')} on: {machine_line()}", ""]
    if rows:
        table += ["Run times (wall-clock seconds, one run, fresh kernel per notebook):", "",
                  "| what | seconds | budget | status |", "|---|---:|---:|---|"]
        for name, seconds, budget, status, within in rows:
            table.append(f"| {name} | {seconds:.1f} | {budget:.0f} | {status}{'' if within else ' (over budget)'} |")
        table.append("")
    if comparisons:
        from course_lib.tools.kernel_bench import comparison_table

        device = "GPU" if comparisons[0].device == "cuda" else "CPU"
        table += [f"Course implementations against torch on the {device} (median of 7 runs; ratio = course / torch, "
                  "below 1 is faster than torch):", "", *comparison_table(comparisons), ""]
    table.append(END)
    _write_section(out, "\n".join(table))
    print(f"wrote {out}")
    return 0 if failures == 0 else 1


def _write_section(path: Path, section: str) -> None:
    """Replace the generated block of ``path`` (kept between markers), leaving hand-written text alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
