"""Flash attention in Triton: a tiled forward kernel with an online softmax, and its backward.

Naive attention writes the (Sq, Sk) score matrix to memory, reads it back for the softmax, writes
the weights and reads them again for the product with V: about 4·Sq·Sk elements of memory traffic
per head, against 2·Sq·D + 2·Sk·D for Q, K, V and O. The kernels below never store the scores:
one program owns BLOCK_M queries, walks over the keys BLOCK_N at a time, and keeps per query only a
running max m, a running sum l and an output accumulator (module 03's online softmax). It writes
O and the log-sum-exp ``lse`` of each row, from which the backward recomputes the weights tile by
tile (the FlashAttention-2 way) instead of storing them.

Conventions are those of ``F.scaled_dot_product_attention`` and of the course's reference:
tensors (B, NH, S, D), scale 1/sqrt(D) by default, ``is_causal`` top-left aligned (query i sees
keys j <= i, also when Sq != Sk). On a machine without a GPU the kernels run on CPU tensors through
Triton's interpreter (``course_lib._triton``), with the same results.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from course_lib._triton import TRITON_MODE, accumulation_dtype

LOG2E = 1.4426950408889634  # exp(x) = exp2(x · log2 e): exp2 is the fast instruction on a GPU


def _blocks(D: int, DV: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV): small tiles in the interpreter, larger ones on a GPU."""
    if TRITON_MODE == "gpu":
        block_m, block_n = (128, 64) if max(D, DV) <= 64 else (64, 64)
    else:
        block_m = block_n = 16
    return block_m, block_n, max(16, triton.next_power_of_2(D)), max(16, triton.next_power_of_2(DV))


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be (B, NH, S, D); got shapes {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: "
                         "q and k share B, NH and D; k and v share B, NH and Sk")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must have one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"unsupported dtype {q.dtype}")


def _rows(t: torch.Tensor) -> torch.Tensor:
    """The same tensor with unit stride along the feature axis (a copy only if it has none)."""
    return t if t.stride(-1) == 1 else t.contiguous()


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------


@triton.jit
def _flash_fwd_kernel(Q, K, V, O, LSE, sq_b, sq_h, sq_s, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s, so_b, so_h, so_s,
                      NH, Sq, Sk, D, DV, qk_scale,
                      CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NH
    h = pid_bh % NH
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q_base = Q + b * sq_b + h * sq_h
    k_base = K + b * sk_b + h * sk_h
    v_base = V + b * sv_b + h * sv_h
    acc_ty = LSE.dtype.element_ty

    # [BLOCK_M, BLOCK_D] queries of this program, zero beyond Sq and D.
    q = tl.load(q_base + offs_m[:, None] * sq_s + offs_d[None, :],
                mask=(offs_m[:, None] < Sq) & (offs_d[None, :] < D), other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=acc_ty)  # running max of the scores (log2 units)
    l_i = tl.zeros([BLOCK_M], dtype=acc_ty)  # running sum of exp2(score - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=acc_ty)  # running sum of exp2(score - m_i) v

    # Causal: keys after the last query of this tile are masked for every row, so stop there.
    if CAUSAL:
        hi = tl.minimum(Sk, (pid_m + 1) * BLOCK_M)
    else:
        hi = Sk
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        # [BLOCK_N, BLOCK_D] keys and [BLOCK_N, BLOCK_DV] values of this tile.
        k = tl.load(k_base + cols[:, None] * sk_s + offs_d[None, :],
                    mask=(cols[:, None] < Sk) & (offs_d[None, :] < D), other=0.0)
        v = tl.load(v_base + cols[:, None] * sv_s + offs_dv[None, :],
                    mask=(cols[:, None] < Sk) & (offs_dv[None, :] < DV), other=0.0)
        # [BLOCK_M, BLOCK_N] scores in log2 units: s = q kᵀ · scale · log2(e).
        s = tl.dot(q, tl.trans(k), input_precision="ieee").to(acc_ty) * qk_scale
        allowed = cols[None, :] < Sk
        if CAUSAL:
            allowed = allowed & (cols[None, :] <= offs_m[:, None])
        s = tl.where(allowed, s, float("-inf"))
        # Online softmax: new max, rescale what was accumulated under the old one, add this tile.
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee").to(acc_ty)
        m_i = m_new

    out = acc / l_i[:, None]
    tl.store(O + b * so_b + h * so_h + offs_m[:, None] * so_s + offs_dv[None, :], out.to(O.dtype.element_ty),
             mask=(offs_m[:, None] < Sq) & (offs_dv[None, :] < DV))
    # lse in natural-log units: (m + log2 l) / log2(e).
    tl.store(LSE + pid_bh * Sq + offs_m, (m_i + tl.log2(l_i)) / 1.4426950408889634, mask=offs_m < Sq)


def _flash_forward(q, k, v, is_causal, scale):
    B, NH, Sq, D = q.shape
    Sk, DV = k.shape[2], v.shape[3]
    q, k, v = _rows(q), _rows(k), _rows(v)
    out = torch.empty(B, NH, Sq, DV, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, NH, Sq, dtype=accumulation_dtype(q.dtype), device=q.device)
    if Sq == 0 or Sk == 0:
        return out.zero_(), lse.fill_(-math.inf)
    block_m, block_n, block_d, block_dv = _blocks(D, DV)
    grid = (triton.cdiv(Sq, block_m), B * NH)
    _flash_fwd_kernel[grid](q, k, v, out, lse, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3],
                            *out.stride()[:3], NH, Sq, Sk, D, DV, scale * LOG2E, CAUSAL=is_causal,
                            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, BLOCK_DV=block_dv)
    return out, lse


# --------------------------------------------------------------------------------------------
# Backward (recompute the weights from lse, tile by tile)
# --------------------------------------------------------------------------------------------


@triton.jit
def _flash_bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV_, s_qb, s_qh, s_qs, s_kb, s_kh, s_ks, s_vb, s_vh, s_vs,
                           s_ob, s_oh, s_os, NH, Sq, Sk, D, DV, scale,
                           CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    # One program owns BLOCK_N keys and walks over the queries: dV = Pᵀ dO, dK = scale · dSᵀ Q.
    # DK shares K's strides (s_k*), DV_ shares V's (s_v*); DO has its own (s_o*).
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NH
    h = pid_bh % NH
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    acc_ty = LSE.dtype.element_ty
    q_base = b * s_qb + h * s_qh
    k_off = b * s_kb + h * s_kh + offs_n[:, None] * s_ks + offs_d[None, :]
    v_off = b * s_vb + h * s_vh + offs_n[:, None] * s_vs + offs_dv[None, :]
    k_mask = (offs_n[:, None] < Sk) & (offs_d[None, :] < D)
    v_mask = (offs_n[:, None] < Sk) & (offs_dv[None, :] < DV)
    # [BLOCK_N, BLOCK_D] keys and [BLOCK_N, BLOCK_DV] values, resident for the whole loop.
    k = tl.load(K + k_off, mask=k_mask, other=0.0)
    v = tl.load(V + v_off, mask=v_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=acc_ty)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=acc_ty)
    # Causal: queries before the first key of this tile cannot see any of its keys.
    if CAUSAL:
        lo = (pid_n * BLOCK_N // BLOCK_M) * BLOCK_M
    else:
        lo = 0
    for start_m in range(lo, Sq, BLOCK_M):
        rows = start_m + offs_m
        # [BLOCK_M, BLOCK_D] queries, [BLOCK_M, BLOCK_DV] output gradients, [BLOCK_M] lse and delta.
        q = tl.load(Q + q_base + rows[:, None] * s_qs + offs_d[None, :],
                    mask=(rows[:, None] < Sq) & (offs_d[None, :] < D), other=0.0)
        do = tl.load(DO + b * s_ob + h * s_oh + rows[:, None] * s_os + offs_dv[None, :],
                     mask=(rows[:, None] < Sq) & (offs_dv[None, :] < DV), other=0.0)
        lse = tl.load(LSE + pid_bh * Sq + rows, mask=rows < Sq, other=0.0)
        delta = tl.load(DELTA + pid_bh * Sq + rows, mask=rows < Sq, other=0.0)
        # [BLOCK_M, BLOCK_N] weights recomputed: P = exp(scale · q kᵀ − lse).
        s = tl.dot(q, tl.trans(k), input_precision="ieee").to(acc_ty) * scale
        allowed = (rows[:, None] < Sq) & (offs_n[None, :] < Sk)
        if CAUSAL:
            allowed = allowed & (offs_n[None, :] <= rows[:, None])
        p = tl.where(allowed, tl.exp(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision="ieee").to(acc_ty)
        # dP = dO Vᵀ;  dS = P ⊙ (dP − delta), delta_i = Σ_j P_ij dP_ij = dO_i · O_i.
        dp = tl.dot(do, tl.trans(v), input_precision="ieee").to(acc_ty)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision="ieee").to(acc_ty)
    tl.store(DK + k_off, (dk * scale).to(DK.dtype.element_ty), mask=k_mask)
    tl.store(DV_ + v_off, dv.to(DV_.dtype.element_ty), mask=v_mask)


@triton.jit
def _flash_bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, s_qb, s_qh, s_qs, s_kb, s_kh, s_ks, s_vb, s_vh, s_vs,
                         s_ob, s_oh, s_os, NH, Sq, Sk, D, DV, scale,
                         CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    # One program owns BLOCK_M queries and walks over the keys: dQ = scale · dS K.
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // NH
    h = pid_bh % NH
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    acc_ty = LSE.dtype.element_ty
    q_off = b * s_qb + h * s_qh + offs_m[:, None] * s_qs + offs_d[None, :]
    q_mask = (offs_m[:, None] < Sq) & (offs_d[None, :] < D)
    # [BLOCK_M, BLOCK_D] queries and [BLOCK_M, BLOCK_DV] output gradients, resident for the loop.
    q = tl.load(Q + q_off, mask=q_mask, other=0.0)
    do = tl.load(DO + b * s_ob + h * s_oh + offs_m[:, None] * s_os + offs_dv[None, :],
                 mask=(offs_m[:, None] < Sq) & (offs_dv[None, :] < DV), other=0.0)
    lse = tl.load(LSE + pid_bh * Sq + offs_m, mask=offs_m < Sq, other=0.0)
    delta = tl.load(DELTA + pid_bh * Sq + offs_m, mask=offs_m < Sq, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=acc_ty)
    if CAUSAL:
        hi = tl.minimum(Sk, (pid_m + 1) * BLOCK_M)
    else:
        hi = Sk
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        # [BLOCK_N, BLOCK_D] keys and [BLOCK_N, BLOCK_DV] values of this tile.
        k = tl.load(K + b * s_kb + h * s_kh + cols[:, None] * s_ks + offs_d[None, :],
                    mask=(cols[:, None] < Sk) & (offs_d[None, :] < D), other=0.0)
        v = tl.load(V + b * s_vb + h * s_vh + cols[:, None] * s_vs + offs_dv[None, :],
                    mask=(cols[:, None] < Sk) & (offs_dv[None, :] < DV), other=0.0)
        # [BLOCK_M, BLOCK_N] weights and their gradient, as in the dK/dV kernel.
        s = tl.dot(q, tl.trans(k), input_precision="ieee").to(acc_ty) * scale
        allowed = (offs_m[:, None] < Sq) & (cols[None, :] < Sk)
        if CAUSAL:
            allowed = allowed & (cols[None, :] <= offs_m[:, None])
        p = tl.where(allowed, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision="ieee").to(acc_ty)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision="ieee").to(acc_ty)
    tl.store(DQ + q_off, (dq * scale).to(DQ.dtype.element_ty), mask=q_mask)


def _flash_backward(q, k, v, out, lse, dout, dlse, is_causal, scale):
    B, NH, Sq, D = q.shape
    Sk, DV = k.shape[2], v.shape[3]
    # Contiguous inputs, so that each gradient buffer (empty_like) shares its input's strides.
    q, k, v, dout = q.contiguous(), k.contiguous(), v.contiguous(), dout.contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    # delta_i = Σ_d dO_id O_id (one number per query), in the accumulation dtype. A gradient through lse
    # adds dlse_i · P_ij to dS_ij (∂lse_i/∂s_ij = P_ij), which is the same as subtracting dlse_i from delta_i.
    delta = (dout.to(lse.dtype) * out.to(lse.dtype)).sum(-1)
    if dlse is not None:
        delta = delta - dlse.to(lse.dtype)
    delta = delta.contiguous()
    block_m, block_n, block_d, block_dv = _blocks(D, DV)
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *dout.stride()[:3])
    consts = dict(CAUSAL=is_causal, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, BLOCK_DV=block_dv)
    _flash_bwd_dkdv_kernel[(triton.cdiv(Sk, block_n), B * NH)](
        q, k, v, dout, lse, delta, dk, dv, *strides, NH, Sq, Sk, D, DV, scale, **consts)
    _flash_bwd_dq_kernel[(triton.cdiv(Sq, block_m), B * NH)](
        q, k, v, dout, lse, delta, dq, *strides, NH, Sq, Sk, D, DV, scale, **consts)
    return dq, dk, dv


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, is_causal, scale):
        out, lse = _flash_forward(q, k, v, is_causal, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.is_causal, ctx.scale = is_causal, scale
        return out, lse.float()

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _flash_backward(q, k, v, out, lse, dout, dlse, ctx.is_causal, ctx.scale)
        return dq, dk, dv, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
                    scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention by tiles with an online softmax; returns ``(out, lse)``.

    Same semantics as :func:`course_lib.attention.scaled_dot_product_attention` without masks other
    than ``is_causal`` (top-left aligned): q (B, NH, Sq, D), k (B, NH, Sk, D), v (B, NH, Sk, DV) ->
    out (B, NH, Sq, DV) in the input dtype and lse (B, NH, Sq), the natural-log logsumexp of the
    scaled, masked scores, always float32. Differentiable in q, k and v, through ``out`` and through
    ``lse`` (backward kernels that recompute the weights from lse).
    """
    _check(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return _FlashAttention.apply(q, k, v, bool(is_causal), scale)
