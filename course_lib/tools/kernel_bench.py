"""Side-by-side timings of the course's implementations against the ``torch`` built-ins they reproduce.

Each comparison runs the course's code and torch's own op on the same seeded inputs on one device
(the GPU when there is one, else the CPU), checks that they agree, and reports the median time of
several runs and the ratio course / torch, measured in the same run. On a CPU the Triton kernels go
through Triton's interpreter, which is for correctness, not speed: their ratios there say nothing
about the GPU and are reported only with ``include_interpreted=True``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from course_lib._triton import TRITON_MODE


@dataclass
class Comparison:
    name: str
    shape: str
    ours: str
    theirs: str
    ours_ms: float
    theirs_ms: float
    max_abs_err: float
    device: str

    @property
    def ratio(self) -> float:
        return self.ours_ms / self.theirs_ms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall-clock milliseconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def compare(name: str, shape: str, ours: tuple[str, Callable], theirs: tuple[str, Callable],
            device: torch.device, repeats: int = 7) -> Comparison:
    with torch.inference_mode():
        a, b = ours[1](), theirs[1]()
        err = _err(a, b)
        ours_ms = median_ms(ours[1], device, repeats)
        theirs_ms = median_ms(theirs[1], device, repeats)
    return Comparison(name, shape, ours[0], theirs[0], ours_ms, theirs_ms, err, device.type)


def run_comparisons(device: torch.device | None = None, include_interpreted: bool = False,
                    small: bool = False) -> list[Comparison]:
    """All comparisons; ``small`` shrinks every size (for the tests)."""
    from course_lib.attention import online_softmax_attention, scaled_dot_product_attention
    from course_lib.lstm import lstm
    from course_lib.rnn import rnn_cell

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(0)
    dtype = torch.float32

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=dtype) * scale).to(device)

    results = []

    # RNN cell: reference (matmuls + tanh in eager torch) and the Triton kernel against torch.rnn_tanh_cell.
    B, I, H = (8, 16, 32) if small else (256, 512, 512)
    x, h = randn(B, I), randn(B, H)
    w_ih, w_hh, b_ih, b_hh = randn(H, I, scale=I**-0.5), randn(H, H, scale=H**-0.5), randn(H), randn(H)
    torch_cell = ("torch.rnn_tanh_cell", lambda: torch.rnn_tanh_cell(x, h, w_ih, w_hh, b_ih, b_hh))
    shape = f"B={B}, I={I}, H={H}, fp32"
    results.append(compare("RNN cell", shape, ("rnn.rnn_cell (reference)",
                                               lambda: rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh)), torch_cell, device))
    if TRITON_MODE == "gpu" or include_interpreted:
        from course_lib.rnn.kernels import rnn_cell_triton

        label = "rnn_cell_triton" + (" (interpreter)" if TRITON_MODE != "gpu" else "")
        results.append(compare("RNN cell", shape, (label, lambda: rnn_cell_triton(x, h, w_ih, w_hh, b_ih, b_hh)),
                               torch_cell, device))

    # LSTM over a sequence: the readable per-step loop against nn.LSTM (cuDNN on a GPU, oneDNN/MKL on a CPU).
    B, S, I, H = (4, 8, 8, 16) if small else (32, 128, 128, 256)
    x = randn(B, S, I)
    layer = torch.nn.LSTM(I, H, batch_first=True).to(device)
    w = {n: p.detach() for n, p in layer.named_parameters()}
    results.append(compare(
        "LSTM sequence", f"B={B}, S={S}, I={I}, H={H}, fp32",
        ("lstm.lstm (reference loop)", lambda: lstm(x, None, w["weight_ih_l0"], w["weight_hh_l0"], w["bias_ih_l0"],
                                                    w["bias_hh_l0"])[0]),
        ("torch.nn.LSTM", lambda: layer(x)[0]), device))

    # Attention: materialised weights, and the blocked online softmax, against F.scaled_dot_product_attention.
    B, NH, S, D = (1, 2, 64, 16) if small else (4, 8, 1024, 64)
    q, k, v = randn(B, NH, S, D), randn(B, NH, S, D), randn(B, NH, S, D)
    torch_sdpa = ("F.scaled_dot_product_attention", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    shape = f"B={B}, NH={NH}, S={S}, D={D}, causal, fp32"
    results.append(compare("attention", shape, ("attention.scaled_dot_product_attention",
                                                lambda: scaled_dot_product_attention(q, k, v, is_causal=True)[0]),
                           torch_sdpa, device))
    block = 16 if small else 128
    results.append(compare("attention", shape, (f"attention.online_softmax_attention (block {block})",
                                                lambda: online_softmax_attention(q, k, v, block, is_causal=True)[0]),
                           torch_sdpa, device))
    return results


def comparison_table(results: list[Comparison]) -> list[str]:
    lines = ["| what | shape | course implementation | torch | course ms | torch ms | ratio | max abs diff |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {r.shape} | {r.ours} | {r.theirs} | {r.ours_ms:.2f} | {r.theirs_ms:.2f} "
                     f"| {r.ratio:.2f}× | {r.max_abs_err:.1e} |")
    return lines


# ---------------------------------------------------------------------------------------------------
# mLSTM: the three forms against the sequence length (module 06)


@dataclass
class FormScaling:
    """Time and peak memory of one mLSTM form at one sequence length."""

    form: str
    S: int
    ms: float
    peak_mib: float
    device: str


def _peak_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of ``fn()`` beyond what was allocated before: the CUDA allocator's counter on a GPU,
    :class:`course_lib.xlstm.cost.PeakTensorMemory` (tensors counted by storage) on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with torch.inference_mode():
            fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from course_lib.xlstm.cost import peak_memory_bytes

    return peak_memory_bytes(fn) / 2**20


def mlstm_scaling(device: torch.device | None = None, small: bool = False, repeats: int = 3) -> list[FormScaling]:
    """Median time and peak memory of ``mlstm_recurrent``, ``mlstm_parallel`` and ``mlstm_chunkwise``
    against S (float32, chunk size 64; the recurrent form, a Python loop, only up to S = 1024)."""
    from course_lib.xlstm import MLSTM_FORMS
    from course_lib.xlstm.cost import mlstm_inputs

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if small:
        lengths, NH, D, chunk, max_recurrent = [16, 32], 1, 8, 8, 32
    elif device.type == "cuda":
        lengths, NH, D, chunk, max_recurrent = [256, 512, 1024, 2048, 4096, 8192], 8, 64, 64, 1024
    else:
        lengths, NH, D, chunk, max_recurrent = [256, 512, 1024, 2048], 4, 64, 64, 1024
    rows = []
    for S in lengths:
        q, k, v, i, f = (t.to(device) for t in mlstm_inputs(S, NH=NH, DQK=D, DV=D))
        for name, form in MLSTM_FORMS.items():
            if name == "recurrent" and S > max_recurrent:
                continue
            kw = {"chunk_size": chunk} if name == "chunkwise" else {}

            def run(form=form, kw=kw, q=q, k=k, v=v, i=i, f=f):
                return form(q, k, v, i, f, **kw)

            with torch.inference_mode():
                ms = median_ms(run, device, repeats=repeats, warmup=1)
            rows.append(FormScaling(name, S, ms, _peak_mib(run, device), device.type))
    return rows


def mlstm_scaling_table(rows: list[FormScaling]) -> list[str]:
    """A Markdown table (one row per S, time and memory of each form) and the fitted exponents."""
    from course_lib.xlstm.cost import fit_exponent

    forms = list(dict.fromkeys(r.form for r in rows))
    lines = ["| S | " + " | ".join(f"{f} ms | {f} MiB" for f in forms) + " |",
             "|---:|" + "---:|---:|" * len(forms)]
    for S in sorted({r.S for r in rows}):
        cells = []
        for f in forms:
            row = next((r for r in rows if r.form == f and r.S == S), None)
            cells += ["–", "–"] if row is None else [f"{row.ms:.2f}", f"{row.peak_mib:.2f}"]
        lines.append(f"| {S} | " + " | ".join(cells) + " |")
    fits = []
    for f in forms:
        mine = [r for r in rows if r.form == f]
        if len(mine) > 1:
            fits.append(f"{f}: time ∝ S^{fit_exponent([r.S for r in mine], [r.ms for r in mine]):.2f}, memory ∝ "
                        f"S^{fit_exponent([r.S for r in mine], [max(r.peak_mib, 1e-9) for r in mine]):.2f}")
    return [*lines, "", "Fitted exponents: " + "; ".join(fits) + "."]
