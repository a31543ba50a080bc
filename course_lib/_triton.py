"""Choose how Triton kernels run: compiled on a CUDA GPU, interpreted on the CPU otherwise.

Triton reads ``TRITON_INTERPRET`` when a function is decorated with ``@triton.jit`` -- and Triton's
own helpers (``tl.max``, ``tl.sum``, ...) are decorated when ``triton`` is first imported -- so the
switch must happen before ``triton`` is imported at all. ``course_lib/__init__.py`` imports
this module first, which is why it is the one import-time side effect of the package.
A value the user set explicitly is respected.
"""

import importlib.util
import os
import sys
import warnings

import torch


def _decide_mode() -> str:
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return "gpu"
    # No GPU (or the user asked for the interpreter): kernels take CPU tensors.
    if "TRITON_INTERPRET" not in os.environ and "triton" in sys.modules:
        warnings.warn("triton was imported before course_lib on a machine without a GPU, so Triton's interpreter "
                      "cannot be switched on any more and kernels will fail with \"Cannot call @triton.jit'd "
                      "outside of the scope of a kernel\". Restart the kernel and import course_lib first.",
                      stacklevel=3)
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return "interpreter" if os.environ["TRITON_INTERPRET"] == "1" else "gpu"


TRITON_MODE: str = _decide_mode()
"""``"gpu"`` (compiled kernels on CUDA tensors) or ``"interpreter"`` (CPU tensors)."""


def triton_available() -> bool:
    """True when the ``triton`` package can be imported (it is Linux-only)."""
    return importlib.util.find_spec("triton") is not None


def kernel_device() -> torch.device:
    """The device on which kernel inputs should live in the current mode."""
    return torch.device("cuda" if TRITON_MODE == "gpu" else "cpu")


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the course's kernels accumulate in: float32, or float64 for float64 inputs (interpreter only)."""
    return torch.float64 if dtype == torch.float64 else torch.float32
