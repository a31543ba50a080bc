"""Choose how Triton kernels run: compiled on a CUDA GPU, interpreted on the CPU otherwise.

Triton reads ``TRITON_INTERPRET`` when a kernel is decorated with ``@triton.jit``, so the switch
must happen before any module that defines kernels is imported. ``course_lib/__init__.py`` imports
this module first, which is why it is the one import-time side effect of the package.
A value the user set explicitly is respected.
"""

import importlib.util
import os

import torch


def _decide_mode() -> str:
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return "gpu"
    # No GPU (or the user asked for the interpreter): kernels take CPU tensors.
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
