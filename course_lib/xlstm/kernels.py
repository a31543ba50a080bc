"""The chunkwise mLSTM forward in Triton: one kernel for the states between chunks, one for the outputs.

The recurrent form reads and writes the (DQK, DV) memory C at every step: S·DQK·DV elements of
traffic per head for a sequence of length S. The parallel form never stores C but builds an
(S, S) decay matrix. The chunkwise form sits between them, and it maps onto two kernels:

1. ``_mlstm_chunk_states_kernel`` runs the recurrence *between* chunks only: per chunk it reads
   L keys and values and updates C once (``C_{k+1} = e^{g+m_k-m_{k+1}} C_k + Σ_t e^{a_t-m_{k+1}} k_t v_tᵀ``),
   writing the state that enters every chunk -- S/L state updates instead of S.
2. ``_mlstm_chunk_outputs_kernel`` then treats every chunk independently (all chunks in parallel):
   the carried state's contribution plus masked, gated attention inside the chunk.

The equations and variable names are those of :func:`course_lib.xlstm.mlstm.mlstm_chunkwise` (and
REFERENCES.md): b_t the in-chunk cumulative log forget gate, g = b_L, a_t = g − b_t + ĩ_t, the
stabiliser m. The cheap O(S) preparation (log σ(f̃) and its in-chunk cumulative sum) stays in PyTorch.
On a machine without a GPU both kernels run through Triton's interpreter on CPU tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from course_lib._triton import TRITON_MODE, accumulation_dtype


@triton.jit
def _mlstm_chunk_states_kernel(K, V, B_, I, C_IN, N_IN, M_IN, C_ALL, N_ALL, M_ALL,
                               S, NC, DQK, DV, L: tl.constexpr, BLOCK_DQK: tl.constexpr,
                               BLOCK_DV: tl.constexpr):
    # Program (bh, j) owns columns j·BLOCK_DV … of C for one (batch, head) and walks over the chunks.
    # K (BH, S, DQK), V (BH, S, DV), B_ and I (BH, S) contiguous; C_ALL (BH, NC+1, DQK, DV),
    # N_ALL (BH, NC+1, DQK), M_ALL (BH, NC+1): the state entering chunk k, and the final state at k = NC.
    bh = tl.program_id(0)
    j = tl.program_id(1)
    offs_l = tl.arange(0, L)
    offs_k = tl.arange(0, BLOCK_DQK)
    offs_v = j * BLOCK_DV + tl.arange(0, BLOCK_DV)
    kmask = offs_k < DQK
    vmask = offs_v < DV
    acc_ty = M_ALL.dtype.element_ty
    # [BLOCK_DQK, BLOCK_DV] memory, [BLOCK_DQK] normaliser, scalar stabiliser: the initial state.
    c = tl.load(C_IN + bh * DQK * DV + offs_k[:, None] * DV + offs_v[None, :],
                mask=kmask[:, None] & vmask[None, :], other=0.0).to(acc_ty)
    n = tl.load(N_IN + bh * DQK + offs_k, mask=kmask, other=0.0).to(acc_ty)
    m = tl.load(M_IN + bh).to(acc_ty)
    for k in range(0, NC):
        # Store the state entering chunk k (every column tile stores its part of C; tile 0 stores n, m).
        tl.store(C_ALL + (bh * (NC + 1) + k) * DQK * DV + offs_k[:, None] * DV + offs_v[None, :],
                 c, mask=kmask[:, None] & vmask[None, :])
        if j == 0:
            tl.store(N_ALL + (bh * (NC + 1) + k) * DQK + offs_k, n, mask=kmask)
            tl.store(M_ALL + bh * (NC + 1) + k, m)
        t = k * L + offs_l
        tmask = t < S
        # [L] in-chunk cumulative log forget gate and input-gate pre-activations (ragged tail masked).
        b = tl.load(B_ + bh * S + t, mask=tmask, other=0.0).to(acc_ty)
        i = tl.load(I + bh * S + t, mask=tmask, other=float("-inf")).to(acc_ty)
        # g = b at the chunk's last real step (b is constant past it: the tail loads as 0 → use max over t).
        g = tl.sum(tl.where(t == tl.minimum(S, (k + 1) * L) - 1, b, 0.0), 0)
        # a_t = g − b_t + ĩ_t; m_{k+1} = max(g + m_k, max_t a_t)
        a = tl.where(tmask, g - b + i, float("-inf"))
        m_next = tl.maximum(g + m, tl.max(a, 0))
        # [L, BLOCK_DQK] keys and [L, BLOCK_DV] values of the chunk.
        kc = tl.load(K + (bh * S + t[:, None]) * DQK + offs_k[None, :], mask=tmask[:, None] & kmask[None, :],
                     other=0.0)
        vc = tl.load(V + (bh * S + t[:, None]) * DV + offs_v[None, :], mask=tmask[:, None] & vmask[None, :],
                     other=0.0)
        w = tl.exp(a - m_next)  # [L] weight of each write at the chunk end (0 on the ragged tail)
        decay = tl.exp(g + m - m_next)
        kw = kc.to(acc_ty) * w[:, None]
        # [BLOCK_DQK, BLOCK_DV] C_{k+1} = decay · C_k + (k ⊙ w)ᵀ v; the product runs in the input dtype
        # (tensor cores for bf16/fp16) and accumulates in acc_ty.
        c = decay * c + tl.dot(tl.trans(kw.to(vc.dtype)), vc, input_precision="ieee").to(acc_ty)
        n = decay * n + tl.sum(kw, 0)
        m = m_next
    tl.store(C_ALL + (bh * (NC + 1) + NC) * DQK * DV + offs_k[:, None] * DV + offs_v[None, :], c,
             mask=kmask[:, None] & vmask[None, :])
    if j == 0:
        tl.store(N_ALL + (bh * (NC + 1) + NC) * DQK + offs_k, n, mask=kmask)
        tl.store(M_ALL + bh * (NC + 1) + NC, m)


@triton.jit
def _mlstm_chunk_outputs_kernel(Q, K, V, B_, I, C_ALL, N_ALL, M_ALL, H, S, NC, DQK, DV, q_scale, eps,
                                L: tl.constexpr, BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr):
    # Program (k, bh, j): outputs of chunk k, columns j·BLOCK_DV …, for one (batch, head).
    k = tl.program_id(0)
    bh = tl.program_id(1)
    j = tl.program_id(2)
    offs_l = tl.arange(0, L)
    offs_k = tl.arange(0, BLOCK_DQK)
    offs_v = j * BLOCK_DV + tl.arange(0, BLOCK_DV)
    kmask = offs_k < DQK
    vmask = offs_v < DV
    acc_ty = M_ALL.dtype.element_ty
    t = k * L + offs_l
    tmask = t < S
    # [L, BLOCK_DQK] queries and keys, [L, BLOCK_DV] values of the chunk, in the input dtype: the matrix
    # products below run in it (tensor cores for bf16/fp16) and accumulate in acc_ty; q_scale is applied after.
    q = tl.load(Q + (bh * S + t[:, None]) * DQK + offs_k[None, :], mask=tmask[:, None] & kmask[None, :], other=0.0)
    kc = tl.load(K + (bh * S + t[:, None]) * DQK + offs_k[None, :], mask=tmask[:, None] & kmask[None, :],
                 other=0.0)
    vc = tl.load(V + (bh * S + t[:, None]) * DV + offs_v[None, :], mask=tmask[:, None] & vmask[None, :],
                 other=0.0)
    b = tl.load(B_ + bh * S + t, mask=tmask, other=0.0).to(acc_ty)
    i = tl.load(I + bh * S + t, mask=tmask, other=float("-inf")).to(acc_ty)
    # The state entering chunk k: [BLOCK_DQK, BLOCK_DV] C_k, [BLOCK_DQK] n_k, scalar m_k.
    c = tl.load(C_ALL + (bh * (NC + 1) + k) * DQK * DV + offs_k[:, None] * DV + offs_v[None, :],
                mask=kmask[:, None] & vmask[None, :], other=0.0)
    n = tl.load(N_ALL + (bh * (NC + 1) + k) * DQK + offs_k, mask=kmask, other=0.0)
    m_k = tl.load(M_ALL + bh * (NC + 1) + k)
    # [L, L] log D_ts = b_t − b_s + ĩ_s for s ≤ t (−inf above the diagonal and on the ragged tail).
    causal = (offs_l[None, :] <= offs_l[:, None]) & tmask[None, :]
    log_d = tl.where(causal, b[:, None] - b[None, :] + i[None, :], float("-inf"))
    # m_t = max(b_t + m_k, max_s log D_ts)
    m_t = tl.maximum(b + m_k, tl.max(log_d, 1))
    inter = tl.exp(b + m_k - m_t)  # [L] weight of the carried state
    # [L, L] gated scores inside the chunk: (q̂_t · k_s) e^{log D_ts − m_t}, q̂ = q · q_scale
    s = tl.dot(q, tl.trans(kc), input_precision="ieee").to(acc_ty) * q_scale * tl.exp(log_d - m_t[:, None])
    # num_t = inter_t q̂_tᵀ C_k + Σ_s s_ts v_s ;  den_t = inter_t q̂_tᵀ n_k + Σ_s s_ts
    qc = tl.dot(q, c.to(q.dtype), input_precision="ieee").to(acc_ty) * q_scale  # [L, BLOCK_DV] q̂ᵀ C_k
    num = inter[:, None] * qc + tl.dot(s.to(vc.dtype), vc, input_precision="ieee").to(acc_ty)
    den = inter * tl.sum(q.to(acc_ty) * n[None, :], 1) * q_scale + tl.sum(s, 1)
    # h_t = num_t / (max(|den_t|, e^{−m_t}) + eps)
    h = num / (tl.maximum(tl.abs(den), tl.exp(-m_t)) + eps)[:, None]
    tl.store(H + (bh * S + t[:, None]) * DV + offs_v[None, :], h.to(H.dtype.element_ty),
             mask=tmask[:, None] & vmask[None, :])


def mlstm_chunkwise_triton(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False,
                           chunk_size=64, eps=1e-6):
    """Same arguments and results as :func:`course_lib.xlstm.mlstm.mlstm_chunkwise`, as two Triton kernels.

    ``chunk_size`` must be a power of two ≥ 16 (a tile of the kernels); any sequence length works
    (the last chunk is masked, not padded). Forward only: no gradients flow through the kernels.
    States are accumulated in float32 (float64 for float64 inputs) and returned in the input dtype.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 16 \
            or chunk_size & (chunk_size - 1):
        raise ValueError(f"mlstm_chunkwise_triton needs chunk_size a power of two >= 16, got {chunk_size!r}")
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3] or i.shape != q.shape[:3] \
            or f.shape != q.shape[:3]:
        raise ValueError(f"expected q, k (B, NH, S, DQK), v (B, NH, S, DV), i, f (B, NH, S); got q "
                         f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, i {tuple(i.shape)}, "
                         f"f {tuple(f.shape)}")
    B, NH, S, DQK = q.shape
    DV = v.shape[-1]
    acc = accumulation_dtype(q.dtype)
    L = chunk_size
    NC = triton.cdiv(S, L)
    BH = B * NH
    # O(S) preparation in PyTorch: b_t = Σ_{s ≤ t in chunk} log σ(f̃_s), padded to whole chunks then cut.
    logf = F.logsigmoid(f.to(acc)).reshape(BH, S)
    pad = NC * L - S
    b = F.pad(logf, (0, pad)).reshape(BH, NC, L).cumsum(-1).reshape(BH, NC * L)[:, :S].contiguous()
    ii = i.to(acc).reshape(BH, S).contiguous()
    qq, kk, vv = (t.reshape(BH, S, t.shape[-1]).contiguous() for t in (q, k, v))
    c0 = (torch.zeros(BH, DQK, DV, dtype=acc, device=q.device) if c_initial is None
          else c_initial.to(acc).reshape(BH, DQK, DV).contiguous())
    n0 = (torch.zeros(BH, DQK, dtype=acc, device=q.device) if n_initial is None
          else n_initial.to(acc).reshape(BH, DQK).contiguous())
    m0 = (torch.zeros(BH, dtype=acc, device=q.device) if m_initial is None
          else m_initial.to(acc).reshape(BH).contiguous())
    c_all = torch.empty(BH, NC + 1, DQK, DV, dtype=acc, device=q.device)
    n_all = torch.empty(BH, NC + 1, DQK, dtype=acc, device=q.device)
    m_all = torch.empty(BH, NC + 1, dtype=acc, device=q.device)
    block_dqk = max(16, triton.next_power_of_2(DQK))
    block_dv = max(16, min(64 if TRITON_MODE == "gpu" else 128, triton.next_power_of_2(DV)))
    grid_states = (BH, triton.cdiv(DV, block_dv))
    warps = 8 if block_dqk >= 128 else 4  # the states kernel holds a (DQK, BLOCK_DV) tile of C in registers
    _mlstm_chunk_states_kernel[grid_states](kk, vv, b, ii, c0, n0, m0, c_all, n_all, m_all, S, NC, DQK, DV,
                                            L=L, BLOCK_DQK=block_dqk, BLOCK_DV=block_dv, num_warps=warps)
    h = torch.empty(BH, S, DV, dtype=q.dtype, device=q.device)
    if S > 0:
        grid_out = (NC, BH, triton.cdiv(DV, block_dv))
        _mlstm_chunk_outputs_kernel[grid_out](qq, kk, vv, b, ii, c_all, n_all, m_all, h, S, NC, DQK, DV,
                                              1.0 / math.sqrt(DQK), eps, L=L, BLOCK_DQK=block_dqk,
                                              BLOCK_DV=block_dv, num_warps=warps)
    h = h.reshape(B, NH, S, DV)
    if not return_last_states:
        return h
    states = (c_all[:, NC].reshape(B, NH, DQK, DV).to(q.dtype), n_all[:, NC].reshape(B, NH, DQK).to(q.dtype),
              m_all[:, NC].reshape(B, NH, 1).to(q.dtype))
    return h, states
