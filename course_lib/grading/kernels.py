"""Module 07 graders: Triton kernels, graded on a CPU through Triton's interpreter.

The learner hands in a ``@triton.jit`` kernel with a fixed signature; the grader launches it on its
own buffers, built so that the classic kernel bugs become visible by public means only:

* every input row sits inside a larger buffer whose guard cells (after each row, and after the last
  row) hold NaN -- a load without its mask reads a NaN and the output shows it;
* every output buffer is poisoned with NaN before the launch -- a tile the kernel never writes stays
  NaN ("never written");
* the guard cells of every output buffer hold a sentinel -- a store without its mask overwrites one;
* most sizes are not multiples of the block size (a few are, so both cases are covered), and input
  and output rows have different strides.

On a machine with a CUDA GPU the kernels are compiled and the buffers live on the GPU (float64 cases
run in float32 there); the checks themselves run on CPU copies.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from course_lib._triton import TRITON_MODE, kernel_device
from course_lib.grading.core import Grader, dtype_name, exercise, mistake

SENTINEL = 4321.0  # written into the guard cells of output buffers; a store without a mask overwrites it


def _is_kernel(fn: Any) -> bool:
    return hasattr(fn, "arg_names") and callable(getattr(fn, "run", None)) and hasattr(fn, "__getitem__")


def _check_kernel(g: Grader, fn: Any, params: list[str]) -> None:
    """The object is a ``@triton.jit`` kernel whose parameters are exactly ``params``."""
    if not _is_kernel(fn):
        what = "a plain Python function" if inspect.isfunction(fn) else type(fn).__name__
        g.fail("signature", "is a Triton kernel",
               f"expected a kernel decorated with @triton.jit, got {what}: put @triton.jit on the line above def")
    names = list(fn.arg_names)
    if names != params:
        g.fail("signature", "kernel parameters",
               f"your kernel takes ({', '.join(names)}); the exercise launches it with ({', '.join(params)}) "
               "in this order: keep these names and this order")
    g.ok("signature", f"a Triton kernel with parameters ({', '.join(params)})")


def _case_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 cases run in float32 on a GPU (compiled kernels there are graded in the GPU's dtypes)."""
    return torch.float32 if dtype == torch.float64 and TRITON_MODE == "gpu" else dtype


def _rows(buf: torch.Tensor, R: int, C: int, guard: int) -> torch.Tensor:
    """The (R, C) view of rows of stride C + guard at the start of ``buf``."""
    return buf[: R * (C + guard)].view(R, C + guard)[:, :C]


def _guarded(x: torch.Tensor, guard: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(buffer, view) on the kernel device: ``x`` (R, C) in rows of stride C + guard, NaN in every guard cell."""
    R, C = x.shape
    buf = torch.full(((R + 1) * (C + guard),), math.nan, dtype=x.dtype, device=kernel_device())
    view = _rows(buf, R, C, guard)
    view.copy_(x)
    return buf, view


def _output(shape: tuple[int, int], guard: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(buffer, view) on the kernel device: a NaN-poisoned (R, C) view; the guard cells hold SENTINEL."""
    R, C = shape
    buf = torch.full(((R + 1) * (C + guard),), SENTINEL, dtype=dtype, device=kernel_device())
    view = _rows(buf, R, C, guard)
    view.fill_(math.nan)
    return buf, view


def _guard_untouched(g: Grader, buf: torch.Tensor, view: torch.Tensor, name: str, case: str, hint: str) -> None:
    R, C = view.shape
    stride = view.stride(0)
    buf = buf.cpu()
    inside = torch.zeros_like(buf, dtype=torch.bool)
    for r in range(R):
        inside[r * stride: r * stride + C] = True
    changed = (buf != SENTINEL) & ~inside
    if bool(changed.any()):
        first = int(changed.nonzero()[0])
        row, col = divmod(first, stride)
        g.fail("properties", f"writes only inside {name} ({case})",
               f"your kernel wrote {int(changed.sum())} value(s) outside {name}, the first at row {row}, column "
               f"{col} (the row has {C} columns): {hint}")
    g.ok("properties", f"writes only inside {name} ({case})")


def _all_written(g: Grader, out: torch.Tensor, name: str, case: str, hint: str) -> None:
    unwritten = torch.isnan(out.cpu())
    if bool(unwritten.any()):
        idx = unwritten.nonzero()[0].tolist()
        g.fail("finite", f"every element of {name} written ({case})",
               f"{int(unwritten.sum())} of {out.numel()} elements of {name} are NaN, the first at {idx}: either "
               f"your kernel never wrote them or it read a NaN guard cell past the end of a row ({hint})")


def _unsolved(fn: Any) -> bool:
    """The exercise stub: its body raises NotImplementedError (compiled Triton cannot even compile a raise)."""
    try:
        source = inspect.getsource(getattr(fn, "fn", fn))
    except (OSError, TypeError):
        return False
    return "raise NotImplementedError" in source


def _launch(g: Grader, case: str, launch: Callable[[], None], fn: Any = None) -> None:
    """Run the launch closure through Grader.call (errors, time limit) -- the kernel returns nothing."""

    def run_kernel():
        if fn is not None and _unsolved(fn):
            raise NotImplementedError()
        try:
            launch()
        except Exception as exc:  # noqa: BLE001 - the interpreter wraps the learner's errors
            cause = exc.__cause__
            if isinstance(cause, NotImplementedError):
                raise NotImplementedError() from None
            if cause is not None and type(exc).__name__ == "InterpreterError":
                # Report the learner's own error (e.g. a shape mismatch in tl.dot), not the wrapper.
                raise cause from None
            raise
        if TRITON_MODE == "gpu":
            torch.cuda.synchronize()

    g.call(run_kernel, case)


# --------------------------------------------------------------------------------------------
# softmax_rows_kernel
# --------------------------------------------------------------------------------------------

SOFTMAX_PARAMS = ["X", "Y", "n_cols", "x_stride", "y_stride", "BLOCK"]


def softmax_rows_reference(x: torch.Tensor) -> torch.Tensor:
    """Softmax of every row of x (R, C)."""
    return torch.softmax(x, dim=-1)


@mistake("softmax_rows_kernel", "the row maximum is not subtracted before exp (exp overflows to inf for large "
                                "scores, and inf / inf is NaN)", native_dtype=True)
def _softmax_no_max(x):
    e = torch.exp(x)
    return e / e.sum(-1, keepdim=True)


@mistake("softmax_rows_kernel", "the masked-off columns are loaded as 0 instead of -inf, so every padding column "
                                "adds exp(0 - max) to the sum")
def _softmax_pad_zero(x, BLOCK=None):
    C = x.shape[-1]
    BLOCK = BLOCK or 1 << max(C - 1, 0).bit_length()
    padded = F.pad(x, (0, BLOCK - C), value=0.0)
    m = padded.amax(-1, keepdim=True)
    e = torch.exp(padded - m)
    return (e / e.sum(-1, keepdim=True))[..., :C]


@mistake("softmax_rows_kernel", "the sum is taken over the whole column block instead of over each row")
def _softmax_sum_all(x):
    e = torch.exp(x - x.amax(-1, keepdim=True))
    return e / e.sum()


@exercise("softmax_rows_kernel", module="07", title="A row-softmax kernel with masks", points=2, difficulty="medium",
          minutes=20, timeout_s=60.0,
          signature="@triton.jit softmax_rows_kernel(X, Y, n_cols, x_stride, y_stride, BLOCK: tl.constexpr); "
                    "grid (n_rows,): program r writes softmax(X[r, :n_cols]) to Y[r, :n_cols]; BLOCK >= n_cols")
def grade_softmax_rows_kernel(g: Grader, fn) -> None:
    _check_kernel(g, fn, SOFTMAX_PARAMS)
    # (rows, columns, dtype, offset): an offset of 100 makes exp(x) overflow in float32 (above ~88.7).
    cases = [(3, 5, torch.float32, 0.0), (2, 16, torch.float64, 0.0), (4, 33, torch.float32, 0.0),
             (1, 1, torch.float64, 0.0), (2, 100, torch.float32, 0.0), (3, 7, torch.float32, 100.0)]
    for R, C, dtype, offset in cases:
        dtype = _case_dtype(dtype)
        BLOCK = 1 << max(C - 1, 0).bit_length()
        x = (torch.randn(R, C, generator=g.gen, dtype=torch.float64) * 5.0 + offset).to(dtype)
        label = "large scores (x around 100)" if offset else "ragged" if C != BLOCK else "n_cols == BLOCK"
        case = f"X: ({R}, {C}) {dtype_name(dtype)}, BLOCK={BLOCK}, {label}"
        xbuf, xv = _guarded(x, BLOCK)
        # Y's rows have a different stride from X's: using x_stride for Y writes to the wrong places.
        ybuf, yv = _output((R, C), BLOCK + 3, dtype)
        _launch(g, case, lambda xv=xv, yv=yv, C=C, BLOCK=BLOCK, R=R: fn[(R,)](
            xv, yv, C, xv.stride(0), yv.stride(0), BLOCK=BLOCK), fn)
        _guard_untouched(g, ybuf, yv, "Y's rows", case, "store with mask=cols < n_cols, at Y + r * y_stride")
        if not offset:
            _all_written(g, yv, "Y", case, "load with mask=cols < n_cols, other=-float('inf'); "
                                           "store with the same mask")
        g.check_tensor(yv.cpu(), softmax_rows_reference(x.double()), "Y", case, dtype=dtype, args=dict(x=x))


# --------------------------------------------------------------------------------------------
# online_lse_kernel
# --------------------------------------------------------------------------------------------

LSE_PARAMS = ["X", "OUT", "n_cols", "x_stride", "CAUSAL", "BLOCK"]


def online_lse_reference(x: torch.Tensor, BLOCK: int, CAUSAL: bool = False) -> torch.Tensor:
    """logsumexp of every row of x (R, C) -> (R,); with CAUSAL row r covers columns j <= r only."""
    if CAUSAL:
        R, C = x.shape
        x = x.masked_fill(torch.arange(C)[None, :] > torch.arange(R)[:, None], -math.inf)
    return torch.logsumexp(x, dim=-1)


def _walk(x: torch.Tensor, BLOCK: int, CAUSAL: bool, *, rescale: bool = True, log: bool = True,
          stop_early: bool = False, causal_short: bool = False) -> torch.Tensor:
    """The tile loop of the kernel in PyTorch, row by row, with switches for the catalogued mistakes."""
    R, C = x.shape
    out = torch.empty(R, dtype=x.dtype)
    for r in range(R):
        end = min(C, r + 1) if CAUSAL else C  # the columns this row may see
        stop = (r if causal_short else r + 1) if CAUSAL else (C - BLOCK if stop_early else C)
        m, s = torch.tensor(-math.inf, dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype)
        for start in range(0, max(stop, 0), BLOCK):
            t = x[r, start:min(start + BLOCK, end)]
            if t.numel() == 0:
                continue
            m_new = torch.maximum(m, t.max())
            s = (s * torch.exp(m - m_new) if rescale else s) + torch.exp(t - m_new).sum()
            m = m_new
        out[r] = m + (torch.log(s) if log else s)
    return out


@mistake("online_lse_kernel", "the running sum is not rescaled by exp(m_old - m_new) when the maximum grows")
def _lse_no_rescale(x, BLOCK, CAUSAL=False):
    return _walk(x, BLOCK, CAUSAL, rescale=False)


@mistake("online_lse_kernel", "the loop stops one tile early (range(0, n_cols - BLOCK, BLOCK) or similar): the "
                              "last tile of every row is never read")
def _lse_one_tile_short(x, BLOCK, CAUSAL=False):
    if CAUSAL:
        raise ValueError("the non-causal loop bound")
    return _walk(x, BLOCK, CAUSAL, stop_early=True)


@mistake("online_lse_kernel", "the causal loop stops one tile early (range(0, r, BLOCK) instead of "
                              "range(0, r + 1, BLOCK)): a row whose diagonal starts a tile never reads that tile, "
                              "and row 0 reads nothing")
def _lse_causal_one_tile_short(x, BLOCK, CAUSAL=False):
    if not CAUSAL:
        raise ValueError("only for CAUSAL=True")
    return _walk(x, BLOCK, CAUSAL, causal_short=True)


@mistake("online_lse_kernel", "the causal mask is missing: every row reads all n_cols columns")
def _lse_causal_ignored(x, BLOCK, CAUSAL=False):
    if not CAUSAL:
        raise ValueError("only for CAUSAL=True")
    return torch.logsumexp(x, dim=-1)


@mistake("online_lse_kernel", "the result is m + l instead of m + log(l)")
def _lse_no_log(x, BLOCK, CAUSAL=False):
    return _walk(x, BLOCK, CAUSAL, log=False)


@mistake("online_lse_kernel", "the running sum is accumulated in float16 (the input dtype) instead of float32",
         native_dtype=True)
def _lse_fp16_accumulator(x, BLOCK, CAUSAL=False):
    if x.dtype != torch.float16 or CAUSAL:
        raise ValueError("only for float16 inputs")
    m = torch.full(x.shape[:-1], -math.inf, dtype=torch.float32)
    s = torch.zeros(x.shape[:-1], dtype=torch.float16)
    for t in _tiles(x.float(), BLOCK):
        m_new = torch.maximum(m, t.amax(-1))
        # Each tile is summed in float32, but the running sum is rounded to float16 after every tile.
        s = (s.float() * torch.exp(m - m_new) + torch.exp(t - m_new[..., None]).sum(-1)).half()
        m = m_new
    return (m + torch.log(s.float())).double()


def _tiles(x: torch.Tensor, BLOCK: int):
    C = x.shape[-1]
    return [x[..., j * BLOCK: min((j + 1) * BLOCK, C)] for j in range(math.ceil(C / BLOCK))]


@exercise("online_lse_kernel", module="07", title="One tile at a time: an online log-sum-exp kernel", points=2,
          difficulty="medium", minutes=25, timeout_s=60.0,
          signature="@triton.jit online_lse_kernel(X, OUT, n_cols, x_stride, CAUSAL: tl.constexpr, BLOCK: "
                    "tl.constexpr); grid (n_rows,): program r reads X[r, :n_cols] (only columns j <= r when CAUSAL) "
                    "BLOCK columns at a time, keeps a running max m and a rescaled running sum l (float32), skips "
                    "tiles beyond column r when CAUSAL, and writes OUT[r] = m + log(l)")
def grade_online_lse_kernel(g: Grader, fn) -> None:
    _check_kernel(g, fn, LSE_PARAMS)
    cases = [(3, 37, 16, torch.float32, 3.0, False), (2, 64, 16, torch.float64, 3.0, False),
             (4, 5, 16, torch.float32, 1.0, False), (2, 100, 32, torch.float64, 5.0, False),
             (1, 1, 16, torch.float64, 1.0, False), (2, 4000, 16, torch.float16, 0.05, False),
             (40, 40, 16, torch.float64, 3.0, True), (37, 50, 16, torch.float32, 3.0, True)]
    for R, C, BLOCK, dtype, spread, causal in cases:
        dtype = _case_dtype(dtype)
        # A rising trend along the row makes the maximum grow tile after tile: rescaling matters.
        trend = torch.linspace(0, spread * 4, C, dtype=torch.float64)
        x = (torch.randn(R, C, generator=g.gen, dtype=torch.float64) * spread + trend).to(dtype)
        case = f"X: ({R}, {C}) {dtype_name(dtype)}, BLOCK={BLOCK}, CAUSAL={causal}" + (
            ", long float16 rows (accumulate in float32)" if dtype == torch.float16 else "")
        xbuf, xv = _guarded(x, BLOCK)
        # OUT: R contiguous values (one per row), followed by guard cells.
        obuf, ov = _output((1, R), BLOCK, torch.float32 if dtype == torch.float16 else dtype)
        _launch(g, case, lambda xv=xv, ov=ov, C=C, BLOCK=BLOCK, R=R, causal=causal: fn[(R,)](
            xv, ov[0], C, xv.stride(0), CAUSAL=causal, BLOCK=BLOCK), fn)
        _guard_untouched(g, obuf, ov, "OUT", case, "each program stores one value, at OUT + r")
        out = ov[0].cpu()
        if bool(torch.isnan(out).any()):
            _all_written(g, ov, "OUT", case, "load with mask=cols < n_cols, other=-float('inf')")
        # float16 inputs, float32 accumulation: the result is good to ~1e-5 (a float16 sum drifts by ~1e-3).
        tol = dict(atol=2e-4, rtol=0.0) if dtype == torch.float16 else None
        g.check_tensor(out, online_lse_reference(x.double(), BLOCK, causal), "OUT", case, dtype=out.dtype, tol=tol,
                       args=dict(x=x, BLOCK=BLOCK, CAUSAL=causal))


# --------------------------------------------------------------------------------------------
# mlstm_intra_chunk_kernel
# --------------------------------------------------------------------------------------------

INTRA_PARAMS = ["Q", "K", "V", "B", "I", "H", "S", "D", "DV", "q_scale", "eps", "L", "BLOCK_D", "BLOCK_DV"]


def mlstm_intra_chunk_reference(q, k, v, i, f, L, eps=1e-6):
    """Chunk outputs with nothing carried in: each chunk of L steps is an mLSTM started from zero states.

    q, k (S, D), v (S, DV), i, f (S,) for one head -> h (S, DV).
    """
    from course_lib.xlstm.mlstm import mlstm_recurrent

    hs = []
    for start in range(0, q.shape[0], L):
        sl = slice(start, start + L)
        hs.append(mlstm_recurrent(q[None, None, sl], k[None, None, sl], v[None, None, sl], i[None, None, sl],
                                  f[None, None, sl], eps=eps)[0, 0])
    return torch.cat(hs, dim=0)


def _intra_chunk(q, k, v, i, f, L, eps, *, mask_upper=True, bound=True, scale_q=True, keep_tail=True):
    """The intra-chunk output in PyTorch, with switches for the catalogued mistakes."""
    S, D = q.shape
    hs = []
    for start in range(0, S, L):
        if not keep_tail and start + L > S:
            hs.append(torch.full((S - start, v.shape[-1]), math.nan, dtype=v.dtype))
            continue
        sl = slice(start, min(start + L, S))
        qc, kc, vc, ic = q[sl], k[sl], v[sl], i[sl]
        b = F.logsigmoid(f[sl]).cumsum(0)
        log_d = b[:, None] - b[None, :] + ic[None, :]
        if mask_upper:
            n = log_d.shape[0]
            log_d = log_d.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), -math.inf)
        m = torch.maximum(b, log_d.amax(-1))  # m_k = 0: the carried term is exp(b_t - m_t) * 0
        s = (qc @ kc.T) * (D ** -0.5 if scale_q else 1.0) * torch.exp(log_d - m[:, None])
        den = s.sum(-1)
        den = torch.maximum(den.abs(), torch.exp(-m)) if bound else den.abs()
        hs.append((s @ vc) / (den + eps)[:, None])
    return torch.cat(hs, dim=0)


@mistake("mlstm_intra_chunk_kernel", "log D is not masked above the diagonal: step t also reads keys and values "
                                     "written after it")
def _intra_unmasked(q, k, v, i, f, L, eps=1e-6):
    return _intra_chunk(q, k, v, i, f, L, eps, mask_upper=False)


@mistake("mlstm_intra_chunk_kernel", "the normaliser is |den| without the lower bound exp(-m_t) (the paper's "
                                     "max(|n^T q|, 1))")
def _intra_no_bound(q, k, v, i, f, L, eps=1e-6):
    return _intra_chunk(q, k, v, i, f, L, eps, bound=False)


@mistake("mlstm_intra_chunk_kernel", "q is not scaled by q_scale = DQK^-1/2")
def _intra_unscaled(q, k, v, i, f, L, eps=1e-6):
    return _intra_chunk(q, k, v, i, f, L, eps, scale_q=False)


@mistake("mlstm_intra_chunk_kernel", "the last, shorter chunk is skipped "
                                     "(the kernel only handles chunks of a full L steps): "
                                     "its outputs are never written")
def _intra_tail_dropped(q, k, v, i, f, L, eps=1e-6):
    return _intra_chunk(q, k, v, i, f, L, eps, keep_tail=False)


@exercise("mlstm_intra_chunk_kernel", module="07", title="The intra-chunk mLSTM output as a kernel", points=3,
          difficulty="hard", minutes=40, timeout_s=90.0,
          signature="@triton.jit mlstm_intra_chunk_kernel(Q, K, V, B, I, H, S, D, DV, q_scale, eps, L: tl.constexpr, "
                    "BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr); grid (cdiv(S, L),): program c writes "
                    "h_t = Σ_{s<=t} (q̂_t·k_s) e^{log D_ts - m_t} v_s / (max(|Σ_s (q̂_t·k_s) e^{log D_ts - m_t}|, "
                    "e^{-m_t}) + eps) for the steps t of chunk c, with log D_ts = b_t - b_s + i_s, "
                    "m_t = max(b_t, max_s log D_ts), B = in-chunk cumulative log-sigmoid forget gate")
def grade_mlstm_intra_chunk_kernel(g: Grader, fn) -> None:
    _check_kernel(g, fn, INTRA_PARAMS)
    cases = [(16, 16, 16, 16, torch.float64), (37, 16, 16, 24, torch.float32), (40, 32, 16, 16, torch.float64),
             (5, 16, 32, 16, torch.float32), (70, 32, 8, 8, torch.float64)]
    for S, L, D, DV, dtype in cases:
        dtype = _case_dtype(dtype)
        BLOCK_D, BLOCK_DV = max(16, 1 << (D - 1).bit_length()), max(16, 1 << (DV - 1).bit_length())
        q, k = (g.randn(S, D) for _ in range(2))
        v = g.randn(S, DV)
        i = g.randn(S)
        f = g.randn(S) + 3.0
        b = torch.cat([F.logsigmoid(f[s: s + L]).cumsum(0) for s in range(0, S, L)])
        args = dict(q=q.to(dtype), k=k.to(dtype), v=v.to(dtype), i=i.to(dtype), f=f.to(dtype), L=L)
        case = f"S={S}, L={L}, D={D}, DV={DV}, {dtype_name(dtype)}" + (" (ragged last chunk)" if S % L else "")
        # Rows as one contiguous block: the kernel indexes row t at t * D (or t * DV); the guard comes after.
        flat = {name: torch.cat([t.to(dtype).reshape(-1), torch.full((L * max(D, DV),), math.nan, dtype=dtype)])
                .to(kernel_device()) for name, t in dict(q=q, k=k, v=v, b=b, i=i).items()}
        hbuf = torch.full((S * DV + L * DV,), SENTINEL, dtype=dtype, device=kernel_device())
        hbuf[: S * DV] = math.nan
        _launch(g, case, lambda flat=flat, hbuf=hbuf, S=S, D=D, DV=DV, L=L, BD=BLOCK_D, BDV=BLOCK_DV: fn[
            (math.ceil(S / L),)](flat["q"], flat["k"], flat["v"], flat["b"], flat["i"], hbuf, S, D, DV, D ** -0.5,
                                 1e-6, L=L, BLOCK_D=BD, BLOCK_DV=BDV), fn)
        hbuf = hbuf.cpu()
        outside = hbuf[S * DV:]
        if bool((outside != SENTINEL).any()):
            g.fail("properties", f"writes only inside H ({case})",
                   f"your kernel wrote {int((outside != SENTINEL).sum())} value(s) past the last row of H: the "
                   "store needs mask=(t < S) on the rows (and cols < DV on the columns)")
        g.ok("properties", f"writes only inside H ({case})")
        h = hbuf[: S * DV].view(S, DV).clone()
        g.check_tensor(h, mlstm_intra_chunk_reference(q, k, v, i, f, L), "H", case, dtype=dtype, args=args)


# --------------------------------------------------------------------------------------------
# flash_attention_intensity (a derivation, checked numerically)
# --------------------------------------------------------------------------------------------


def _intensity(S, D, bytes_per_element, BLOCK_M, *, flops_per_mac=2, kv_reads=None, v_once=False, naive=False):
    flops = 2 * flops_per_mac * S * S * D  # two products, Q Kᵀ and P V, of S·S·D multiply-adds each
    tiles = math.ceil(S / BLOCK_M) if kv_reads is None else kv_reads
    if naive:
        elements = 4 * S * S + 4 * S * D
    else:
        # Q read once, O written once; every program of BLOCK_M queries reads all of K and V.
        elements = 2 * S * D + S * D * tiles + S * D * (1 if v_once else tiles)
    return torch.tensor(flops / (elements * bytes_per_element), dtype=torch.float64)


def flash_attention_intensity_reference(S, D, bytes_per_element, BLOCK_M):
    """FLOPs per byte of the tiled forward kernel for one head (Sq = Sk = S), K and V re-read per query tile."""
    return _intensity(S, D, bytes_per_element, BLOCK_M)


@mistake("flash_attention_intensity", "K and V are counted once (the ideal with perfect cache reuse) instead of "
                                      "once per tile of BLOCK_M queries")
def _intensity_kv_once(S, D, bytes_per_element, BLOCK_M):
    return _intensity(S, D, bytes_per_element, BLOCK_M, kv_reads=1)


@mistake("flash_attention_intensity", "only K is re-read for every query tile; V is counted once")
def _intensity_v_once(S, D, bytes_per_element, BLOCK_M):
    return _intensity(S, D, bytes_per_element, BLOCK_M, v_once=True)


@mistake("flash_attention_intensity", "the number of query tiles is S // BLOCK_M: the last, partial tile (which "
                                      "also reads all of K and V) is forgotten")
def _intensity_floor_tiles(S, D, bytes_per_element, BLOCK_M):
    if S % BLOCK_M == 0:
        raise ValueError("floor and ceiling agree")
    return _intensity(S, D, bytes_per_element, BLOCK_M, kv_reads=S // BLOCK_M)


@mistake("flash_attention_intensity", "the naive traffic is counted (the S×S scores and weights written and read "
                                      "back), which a tiled kernel never stores")
def _intensity_naive(S, D, bytes_per_element, BLOCK_M):
    return _intensity(S, D, bytes_per_element, BLOCK_M, naive=True)


@mistake("flash_attention_intensity", "the FLOPs are half the right count: a multiply-add counted as one FLOP "
                                      "instead of two, or only one of the two products (Q Kᵀ, P V) counted")
def _intensity_half_flops(S, D, bytes_per_element, BLOCK_M):
    return _intensity(S, D, bytes_per_element, BLOCK_M, flops_per_mac=1)


@exercise("flash_attention_intensity", module="07", title="Predict, then derive: the arithmetic intensity of the "
                                                          "tiled kernel", points=1, difficulty="easy", minutes=15,
          signature="flash_attention_intensity(S, D, bytes_per_element, BLOCK_M) -> float: FLOPs per byte of the "
                    "flash forward kernel for one head (Sq = Sk = S, not causal; a multiply-add is 2 FLOPs; Q read "
                    "and O written once; each program of BLOCK_M queries reads all of K and V; lse ignored)")
def grade_flash_attention_intensity(g: Grader, fn) -> None:
    g.check_signature(fn, ["S", "D", "bytes_per_element", "BLOCK_M"])
    for S, D, nbytes, block in [(4096, 64, 2, 128), (1000, 64, 2, 64), (513, 128, 2, 128), (2048, 128, 4, 64),
                                (100, 16, 4, 32)]:
        case = f"S={S}, D={D}, bytes_per_element={nbytes}, BLOCK_M={block}"
        out = g.call(fn, case, S, D, nbytes, block)
        if isinstance(out, torch.Tensor) and out.numel() == 1:
            out = out.item()
        g.expect(isinstance(out, (int, float)) and not isinstance(out, bool), "types", f"returns a number ({case})",
                 f"expected a Python float, got {type(out).__name__}")
        g.check_tensor(torch.tensor(float(out), dtype=torch.float64),
                       flash_attention_intensity_reference(S, D, nbytes, block), "intensity", case,
                       tol=dict(atol=1e-9, rtol=1e-9), args=dict(S=S, D=D, bytes_per_element=nbytes, BLOCK_M=block))
