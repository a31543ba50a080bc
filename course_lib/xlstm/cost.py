"""Measured cost of the mLSTM forms: wall-clock time and peak tensor memory against sequence length.

Peak memory on a CPU has no allocator counter like ``torch.cuda.max_memory_allocated``, so
:class:`PeakTensorMemory` counts it itself: every tensor that a torch operation returns is recorded
by its storage, and released when the last tensor using that storage is freed; the peak of the live
total is the measurement. It counts what the operations allocate (intermediates and outputs), not the
inputs that existed before, nor scratch space inside a single kernel.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from course_lib.xlstm.mlstm import MLSTM_FORMS


class PeakTensorMemory(TorchDispatchMode):
    """Context manager: ``peak`` is the largest number of bytes held at once by tensors created inside."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors using it]
        self.now = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self._live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0:  # an empty tensor
                continue
            if key in self._live:
                self._live[key][1] += 1
            else:
                self._live[key] = [storage.nbytes(), 1]
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            weakref.finalize(t, self._release, key)
        return out


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of the tensors that ``fn()`` allocates (CPU), without autograd."""
    with torch.no_grad(), PeakTensorMemory() as meter:
        fn()
    return meter.peak


def best_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of ``fn()`` (after one warm-up run), in seconds, without autograd."""
    with torch.no_grad():
        fn()
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    return best


def mlstm_inputs(S: int, B: int = 1, NH: int = 4, DQK: int = 64, DV: int = 64, dtype=torch.float32,
                 seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded q, k, v ~ N(0, 1), i ~ N(0, 1), f ~ N(3, 1) of sequence length ``S``."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(B, NH, S, DQK, generator=g), torch.randn(B, NH, S, DQK, generator=g)
    v = torch.randn(B, NH, S, DV, generator=g)
    i, f = torch.randn(B, NH, S, generator=g), torch.randn(B, NH, S, generator=g) + 3.0
    return tuple(t.to(dtype) for t in (q, k, v, i, f))


def measure_mlstm_forms(lengths: Sequence[int], B: int = 1, NH: int = 4, D: int = 64, chunk_size: int = 64,
                        max_recurrent: int | None = None, repeats: int = 3) -> list[dict]:
    """Time (best of ``repeats``) and peak tensor memory of each form at each sequence length.

    Returns rows ``{"form", "S", "seconds", "peak_bytes"}``. The recurrent form (a Python loop of S
    steps) is measured only up to ``max_recurrent`` when given.
    """
    rows = []
    for S in lengths:
        inputs = mlstm_inputs(S, B, NH, D, D)
        for name, form in MLSTM_FORMS.items():
            if name == "recurrent" and max_recurrent is not None and S > max_recurrent:
                continue
            kw = {"chunk_size": chunk_size} if name == "chunkwise" else {}

            def run(form=form, kw=kw, inputs=inputs):
                return form(*inputs, **kw)

            rows.append({"form": name, "S": S, "seconds": best_seconds(run, repeats),
                         "peak_bytes": peak_memory_bytes(run)})
    return rows


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Slope of log y against log x by least squares: y ∝ x^slope."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("need at least two (x, y) pairs of equal count")
    lx = torch.tensor([math.log(x) for x in xs], dtype=torch.float64)
    ly = torch.tensor([math.log(y) for y in ys], dtype=torch.float64)
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())
