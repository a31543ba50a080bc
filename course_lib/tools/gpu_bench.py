"""``course bench kernels``: the course's Triton kernels against torch and the public kernels, on a GPU.

On a CUDA GPU it measures, in one run on that GPU (bf16, median of CUDA-event timings):

* ``flash_attention`` forward, and forward + backward, against
  ``torch.nn.functional.scaled_dot_product_attention`` (torch picks its fastest backend), for
  S in 512 … 16384, D in {64, 128}, causal and not, at a constant number of tokens per batch;
* ``mlstm_chunkwise_triton`` (forward) against the PyTorch chunkwise form ``mlstm_chunkwise`` and,
  when the optional ``mlstm_kernels`` package is installed, against its ``chunkwise--triton_xl_chunk``
  kernel;

prints TFLOP/s and the ratios, and writes them with the GPU's name between markers in
``benchmarks/RESULTS.md`` (other text in the file is kept). Without a GPU it says so, runs a short
correctness check of both kernels through Triton's interpreter, and exits with status 0: timing the
interpreter would measure NumPy, and GPU numbers are never estimated.
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

BEGIN, END = "<!-- bench-gpu:begin -->", "<!-- bench-gpu:end -->"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"
NO_RESULTS = ("No GPU measurements are recorded yet: `./course bench kernels` on a machine with a CUDA GPU "
              "writes them to benchmarks/RESULTS.md.")


def recorded_gpu_results(path: Path = RESULTS) -> str:
    """The GPU tables recorded in the results file, or a sentence saying that there are none."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
        if block:
            return block
    return NO_RESULTS


def write_gpu_results(block: str, path: Path = RESULTS) -> None:
    """Replace (or append) the GPU block of the results file, keeping everything else."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    new = f"{BEGIN}\n{block.strip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + new + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Triton kernels on a GPU\n\n" + new + "\n"
    path.write_text(text)


def _cuda_ms(fn: Callable[[], object], repeats: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _check_on_gpu(ours: torch.Tensor, plain: torch.Tensor, reference: torch.Tensor, what: str) -> str:
    """The tolerance rule before any timing: |ours - ref| <= 2 |plain - ref| (+ one bf16 ulp); a failure is recorded."""
    ours_err = float((ours.double() - reference).abs().max())
    plain_err = float((plain.double() - reference).abs().max())
    ok = ours_err <= 2 * plain_err + 2 ** -8
    return "ok" if ok else f"WRONG ({what}: error {ours_err:.2e} vs torch {plain_err:.2e})"


def _attention_case(B: int, heads: int, S: int, D: int, causal: bool) -> list[str]:
    import torch.nn.functional as F

    from course_lib.attention.kernels import flash_attention

    q, k, v = (torch.randn(B, heads, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    grad = torch.randn_like(q)
    # Correctness on this GPU first, on the first batch entry and head, against float64 attention.
    q1, k1, v1 = (t[:1, :1].detach() for t in (q, k, v))
    reference = F.scaled_dot_product_attention(q1.double(), k1.double(), v1.double(), is_causal=causal)
    status = _check_on_gpu(flash_attention(q1, k1, v1, is_causal=causal)[0],
                           F.scaled_dot_product_attention(q1, k1, v1, is_causal=causal), reference, "forward")
    flops = 4.0 * B * heads * S * S * D / (2 if causal else 1)
    ours_f = _cuda_ms(lambda: flash_attention(q, k, v, is_causal=causal))
    torch_f = _cuda_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    ours_fb = _cuda_ms(lambda: torch.autograd.grad(flash_attention(q, k, v, is_causal=causal)[0], (q, k, v), grad))
    torch_fb = _cuda_ms(lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                                    (q, k, v), grad))
    shape = f"B={B}, NH={heads}, S={S}, D={D}, causal={causal}"
    # Backward = 2.5 x forward FLOPs (the FlashAttention papers' convention), so fwd+bwd = 3.5 x.
    return [f"| attention | fwd | {shape} | {flops / ours_f / 1e9:.0f} | {flops / torch_f / 1e9:.0f} | — | "
            f"{torch_f / ours_f:.2f}× | — | {status} |",
            f"| attention | fwd+bwd | {shape} | {3.5 * flops / ours_fb / 1e9:.0f} | "
            f"{3.5 * flops / torch_fb / 1e9:.0f} | — | {torch_fb / ours_fb:.2f}× | — | {status} |"]


def _attention_rows(tokens: int = 16384, heads: int = 16) -> list[str]:
    return [row for D in (64, 128) for causal in (False, True) for S in (512, 1024, 2048, 4096, 8192, 16384)
            for row in _attention_case(max(1, tokens // S), heads, S, D, causal)]


def _public_mlstm_kernel() -> Callable | None:
    try:
        from mlstm_kernels.torch import get_mlstm_kernel
    except ImportError:
        return None
    return get_mlstm_kernel("chunkwise--triton_xl_chunk")


def _mlstm_case(B: int, heads: int, S: int, D: int, public: Callable | None, L: int = 64) -> str:
    from course_lib.xlstm.kernels import mlstm_chunkwise_triton
    from course_lib.xlstm.mlstm import mlstm_chunkwise

    q, k, v = (torch.randn(B, heads, S, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    i, f = (torch.randn(B, heads, S, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    # Correctness on this GPU first (first batch entry and head) against the float64 chunkwise form.
    one = [t[:1, :1] for t in (q, k, v, i, f)]
    status = _check_on_gpu(mlstm_chunkwise_triton(*one, chunk_size=L), mlstm_chunkwise(*one, chunk_size=L),
                           mlstm_chunkwise(*(t.double() for t in one), chunk_size=L), "forward")
    # Per chunk: intra-chunk Q Kᵀ and S V (2·2·L·L·D), Q C and the state update (2·2·L·D·D).
    flops = B * heads * (S / L) * (4.0 * L * L * D + 4.0 * L * D * D)
    ours = _cuda_ms(lambda: mlstm_chunkwise_triton(q, k, v, i, f, chunk_size=L))
    plain = _cuda_ms(lambda: mlstm_chunkwise(q, k, v, i, f, chunk_size=L))
    if public is not None:
        public_ms = _cuda_ms(lambda: public(q=q, k=k, v=v, i=i, f=f, chunk_size=L))
        public_tflops, public_ratio = f"{flops / public_ms / 1e9:.0f}", f"{public_ms / ours:.2f}×"
    else:
        public_tflops, public_ratio = "not installed", "—"
    return (f"| mLSTM chunkwise | fwd | B={B}, NH={heads}, S={S}, D={D}, L={L} | {flops / ours / 1e9:.0f} | "
            f"{flops / plain / 1e9:.0f} | {public_tflops} | {plain / ours:.2f}× | {public_ratio} | {status} |")


def _mlstm_rows(tokens: int = 16384, heads: int = 8) -> list[str]:
    public = _public_mlstm_kernel()
    return [_mlstm_case(max(1, tokens // S), heads, S, D, public) for D in (64, 128)
            for S in (512, 1024, 2048, 4096, 8192, 16384)]


def _interpreter_check() -> list[str]:
    """A short correctness run of both kernels in the interpreter: max errors against float64 references."""
    from course_lib.attention.kernels import flash_attention
    from course_lib.attention.reference import scaled_dot_product_attention
    from course_lib.xlstm.kernels import mlstm_chunkwise_triton
    from course_lib.xlstm.mlstm import mlstm_recurrent

    gen = torch.Generator().manual_seed(0)
    lines = []
    q, k, v = (torch.randn(1, 2, 37, 32, generator=gen, dtype=torch.float64) for _ in range(3))
    for causal in (False, True):
        err = float((flash_attention(q, k, v, is_causal=causal)[0]
                     - scaled_dot_product_attention(q, k, v, is_causal=causal)[0]).abs().max())
        lines.append(f"flash_attention (S=37, D=32, causal={causal}) against float64 attention: max error {err:.1e}")
    args = dict(q=q, k=k, v=v, i=torch.randn(1, 2, 37, generator=gen, dtype=torch.float64),
                f=torch.randn(1, 2, 37, generator=gen, dtype=torch.float64) + 3)
    err = float((mlstm_chunkwise_triton(**args, chunk_size=16) - mlstm_recurrent(**args)).abs().max())
    lines.append(f"mlstm_chunkwise_triton (S=37, L=16) against the float64 recurrence: max error {err:.1e}")
    return lines


def _targets(rows: list[str]) -> list[str]:
    """Whether the targets are met: flash fwd >= 0.8x SDPA at S >= 4k; mLSTM >= 1.0x torch and >= 0.5x public."""
    def cells(row: str) -> list[str]:
        return [c.strip() for c in row.strip("|").split("|")]

    def ratio(text: str) -> float:
        return float(text.rstrip("×")) if text.rstrip("×").replace(".", "", 1).isdigit() else float("nan")

    flash = [ratio(cells(r)[6]) for r in rows if cells(r)[:2] == ["attention", "fwd"]
             and int(cells(r)[2].split("S=")[1].split(",")[0]) >= 4096]
    mlstm_torch = [ratio(cells(r)[6]) for r in rows if cells(r)[0] == "mLSTM chunkwise"]
    mlstm_public = [ratio(cells(r)[7]) for r in rows if cells(r)[0] == "mLSTM chunkwise"]
    lines = [f"Target flash attention forward >= 0.8x torch SDPA at S >= 4k: worst {min(flash):.2f}x -> "
             f"{'met' if min(flash) >= 0.8 else 'NOT met'}",
             f"Target chunkwise mLSTM >= 1.0x the torch chunkwise form: worst {min(mlstm_torch):.2f}x -> "
             f"{'met' if min(mlstm_torch) >= 1.0 else 'NOT met'}"]
    public = [r for r in mlstm_public if r == r]
    lines.append(f"Target chunkwise mLSTM within 2x of mlstm_kernels: worst {min(public):.2f}x -> "
                 f"{'met' if min(public) >= 0.5 else 'NOT met'}" if public
                 else "Target chunkwise mLSTM within 2x of mlstm_kernels: not measured (mlstm_kernels not installed)")
    return lines


def run_gpu_bench(write: bool = True, path: Path = RESULTS) -> int:
    """Measure on the GPU and record the tables; without a GPU, check correctness and say so."""
    if not torch.cuda.is_available():
        print("course bench kernels: no CUDA GPU on this machine, so there is nothing to time (the Triton "
              "interpreter measures NumPy, not a GPU). Correctness check in the interpreter instead:", flush=True)
        for line in _interpreter_check():
            print("  " + line, flush=True)
        print(recorded_gpu_results(path))
        return 0
    name = torch.cuda.get_device_name()
    print(f"course bench kernels: timing on {name} (bf16) ...", flush=True)
    header = ["| kernel | pass | shape | course TFLOP/s | torch TFLOP/s | mlstm_kernels TFLOP/s | "
              "course speed / torch | course speed / mlstm_kernels | correct on this GPU |",
              "|---|---|---|---:|---:|---:|---:|---:|---|"]
    rows = _attention_rows()
    rows += _mlstm_rows()
    targets = _targets(rows)
    block = "\n".join([
        f"Measured {date.today().isoformat()} on: {name}; {platform.machine()}; torch {torch.__version__}, "
        f"triton {__import__('triton').__version__}. Ratios above 1 mean the course kernel is faster. torch's "
        "column for the mLSTM is the PyTorch chunkwise form (course_lib.xlstm.mlstm_chunkwise).", "", *header, *rows,
        "", *targets])
    print(block)
    if write:
        write_gpu_results(block, path)
        print(f"written to {path}")
    return 0
