"""What the course runs on: package versions, CPU count, and whether Triton kernels compile or interpret.

``environment_report()`` is shown in the first notebook and reused by ``course doctor``::

    report = environment_report()   # prints the table in a notebook or a terminal
    report.as_dict()                 # the same facts as a plain dict (for tests and tools)
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from dataclasses import asdict, dataclass, field

# The packages the course is built on, in the order they are reported; None = not installed.
PACKAGES = ("torch", "triton", "numpy", "jupyterlab", "ipywidgets", "plotly", "nbgrader")

NO_GPU = "no GPU: Triton kernels run in the interpreter (TRITON_INTERPRET=1)"


def package_version(name: str) -> str | None:
    """The installed version of ``name``, or None when it cannot be imported."""
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return None
    return str(getattr(module, "__version__", "installed"))


def _gpu_and_mode() -> tuple[str, str]:
    import torch

    import course_lib

    if torch.cuda.is_available():
        gpu = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    else:
        gpu = NO_GPU
    return gpu, course_lib.TRITON_MODE


@dataclass
class EnvironmentReport:
    """Versions and hardware; ``str(report)`` is the aligned table, ``as_dict()`` the raw facts."""

    python: str
    platform: str
    packages: dict[str, str | None] = field(default_factory=dict)
    cpu_count: int = 1
    gpu: str = NO_GPU
    triton_mode: str = "interpreter"

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def missing(self) -> list[str]:
        """Packages of :data:`PACKAGES` that are not installed (nbgrader is only needed by instructors)."""
        return [name for name, version in self.packages.items() if version is None]

    def __str__(self) -> str:
        rows = [("python", self.python), ("platform", self.platform)]
        rows += [(name, version or "not installed") for name, version in self.packages.items()]
        rows += [("CPU cores", str(self.cpu_count)), ("GPU", self.gpu), ("Triton mode", self.triton_mode)]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    __repr__ = __str__


def environment_report(show: bool = False) -> EnvironmentReport:
    """Collect the environment; with ``show=True`` also print it."""
    gpu, mode = _gpu_and_mode()
    report = EnvironmentReport(
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()}",
        packages={name: package_version(name) for name in PACKAGES},
        cpu_count=os.cpu_count() or 1,
        gpu=gpu,
        triton_mode=mode,
    )
    if show:
        print(report)
    return report
