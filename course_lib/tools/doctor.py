"""``course doctor``: what is installed, what runs where, and how to fix what is missing."""

from __future__ import annotations

import importlib
import shutil
import sys

REQUIRED = ["torch", "numpy", "matplotlib", "plotly", "ipywidgets", "jupyterlab", "nbformat", "nbclient", "tqdm"]
OPTIONAL = {
    "triton": "Triton kernels (module 07 and the small kernels): pip install triton (Linux only)",
    "nbgrader": "exercise generation and autograding: pip install -e '.[dev]'",
    "nbval": "notebook tests: pip install -e '.[dev]'",
    "pytest": "the test suite: pip install -e '.[dev]'",
    "playwright": "the browser tests (slides, JupyterLab): pip install -e '.[dev]'",
}
BROWSER_TESTS_SKIPPED = ("without Chromium the browser tests (slides, JupyterLab) are skipped; to run them: "
                         "sudo apt-get install chromium, or as root COURSE_INSTALL_BROWSER=1 ./course test")


def _version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return getattr(mod, "__version__", "installed")


def run_doctor() -> int:
    problems = 0
    print(f"python      {sys.version.split()[0]}  ({sys.executable})")
    if sys.version_info < (3, 10):  # noqa: UP036 - doctor may run under a foreign interpreter
        print("  PROBLEM: the course needs Python >= 3.10")
        problems += 1
    for name in REQUIRED:
        v = _version(name)
        print(f"{name:<11} {v or 'MISSING'}")
        if v is None:
            problems += 1
            print("  fix: pip install -e .   (or ./course doctor, which sets up .venv)")
    for name, why in OPTIONAL.items():
        v = _version(name)
        print(f"{name:<11} {v or 'missing'}")
        if v is None:
            print(f"  optional, for {why}")
    import torch

    import course_lib

    if torch.cuda.is_available():
        print(f"GPU         {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}); Triton kernels compile for it")
    else:
        print("GPU         none: Triton kernels run on CPU tensors in Triton's interpreter (TRITON_INTERPRET=1, "
              "set automatically by course_lib)")
    print(f"triton mode {course_lib.TRITON_MODE}")
    if course_lib.triton_available():
        try:
            from course_lib.rnn.kernels import rnn_cell_triton
            from course_lib.rnn.reference import rnn_cell

            x, h = torch.randn(2, 3), torch.randn(2, 4)
            wi, wh = torch.randn(4, 3), torch.randn(4, 4)
            err = float((rnn_cell_triton(x, h, wi, wh) - rnn_cell(x, h, wi, wh)).abs().max())
            ok = err < 1e-5
            print(f"kernel test rnn_cell_triton vs reference: max error {err:.1e} {'OK' if ok else 'PROBLEM'}")
            problems += 0 if ok else 1
        except Exception as exc:  # noqa: BLE001
            print(f"kernel test FAILED: {type(exc).__name__}: {exc}")
            print("  fix: pip install 'triton>=3.4'; see REFERENCES on interpreter versions")
            problems += 1
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    print(f"chromium    {chromium or 'missing'}")
    if not chromium:
        print(f"  optional: {BROWSER_TESTS_SKIPPED}")
    print("\nAll essential pieces are in place." if not problems else f"\n{problems} problem(s) found.")
    return 0 if not problems else 1
