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
