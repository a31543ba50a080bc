"""The mLSTM: a matrix memory C (a sum of key–value outer products) read out by a query.

One step, with gate pre-activations ĩ, f̃ (xLSTM paper §2.3 and App. A.3), unstabilised::

    C_t = f_t C_{t-1} + i_t k_t v_tᵀ      (DQK, DV)  a covariance (key–value) update
    n_t = f_t n_{t-1} + i_t k_t           (DQK,)    the normaliser: the keys written so far, weighted
    h_t = C_tᵀ q̂_t / max(|n_tᵀ q̂_t|, 1)   (DV,)     retrieval: the values whose keys match q̂_t
    i_t = exp(ĩ_t),   f_t = σ(f̃_t),   q̂_t = q_t / √DQK

Three forms compute the same h:

- :func:`mlstm_recurrent` — the step above in a loop: O(S) time, O(1) state (C, n, m) per head.
- :func:`mlstm_parallel` — every output at once as gated, normalised attention with a decay
  matrix D (S, S): O(S²) time and memory, no loop.
- :func:`mlstm_chunkwise` — chunks of L steps: attention-like inside a chunk, the recurrence
  between chunks (the form that fast kernels use).

Conventions are those of the public ``mlstm_kernels`` package, so results can be compared with it:
shapes q, k (B, NH, S, DQK), v (B, NH, S, DV), i, f (B, NH, S) pre-activations; the forget gate
enters as log σ(f̃) (``F.logsigmoid``); q is scaled by DQK^-½ inside; states (C, n, m) are
(B, NH, DQK, DV), (B, NH, DQK), (B, NH, 1) in *stabilised units* (C and n times e^{−m}); m_0 = 0
for the recurrent and chunkwise forms; eps is added *after* the max in the denominator. Output h
(B, NH, S, DV) is before the output gate. Gradients are exact (plain autograd, nothing detached);
:func:`mlstm_parallel_stopgrad` shows what fast public kernels do instead.

Why a stabiliser: exp(ĩ) overflows float32 above ĩ ≈ 88. With m_t = max(log f_t + m_{t-1}, ĩ_t)
the stored states are C_t e^{−m_t}, n_t e^{−m_t}; every exponent is then ≤ 0, and in these units
the bound 1 of max(|nᵀq̂|, 1) becomes e^{−m_t}.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


# ---------------------------------------------------------------------------------------------------
# Checks


def _check_sequence_inputs(q, k, v, i, f) -> tuple[int, int, int, int, int]:
    """Validate the shapes of a sequence call; return (B, NH, S, DQK, DV)."""
    if q.dim() != 4:
        raise ValueError(f"q must have shape (B, NH, S, DQK), got {tuple(q.shape)}")
    B, NH, S, DQK = q.shape
    if tuple(k.shape) != (B, NH, S, DQK):
        raise ValueError(f"k must have the shape of q {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.dim() != 4 or tuple(v.shape[:3]) != (B, NH, S):
        raise ValueError(f"v must have shape (B, NH, S, DV) = ({B}, {NH}, {S}, DV), got {tuple(v.shape)}")
    for name, gate in (("i", i), ("f", f)):
        if tuple(gate.shape) != (B, NH, S):
            raise ValueError(f"{name} must have shape (B, NH, S) = ({B}, {NH}, {S}), got {tuple(gate.shape)}")
    return B, NH, S, DQK, v.shape[-1]


def _initial_states(B, NH, DQK, DV, c_initial, n_initial, m_initial, like: torch.Tensor) -> State:
    """Zeros for C and n and m_0 = 0 where not given; shapes checked."""
    c = like.new_zeros(B, NH, DQK, DV) if c_initial is None else c_initial
    n = like.new_zeros(B, NH, DQK) if n_initial is None else n_initial
    m = like.new_zeros(B, NH, 1) if m_initial is None else m_initial
    for name, t, shape in (("c_initial", c, (B, NH, DQK, DV)), ("n_initial", n, (B, NH, DQK)),
                           ("m_initial", m, (B, NH, 1))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    return c, n, m


# ---------------------------------------------------------------------------------------------------
# 1. The recurrent form


def mlstm_step(q, k, v, i, f, c, n, m, eps=1e-6):
    """One mLSTM step in stabilised units; returns ``(h, (c, n, m))``.

    q, k (B, NH, DQK), v (B, NH, DV), i, f, m (B, NH, 1), c (B, NH, DQK, DV), n (B, NH, DQK);
    h (B, NH, DV).
    """
    if q.dim() != 3 or tuple(k.shape) != tuple(q.shape) or v.dim() != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"q, k must be (B, NH, DQK) and v (B, NH, DV); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    B, NH, DQK = q.shape
    for name, t, shape in (("i", i, (B, NH, 1)), ("f", f, (B, NH, 1)), ("m", m, (B, NH, 1)),
                           ("c", c, (B, NH, DQK, v.shape[-1])), ("n", n, (B, NH, DQK))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    log_f = F.logsigmoid(f)  # (B, NH, 1)
    # $$m_t = \max(\log\sigma(\tilde f_t) + m_{t-1},\ \tilde\imath_t)$$  keeps every exponent below ≤ 0
    m_new = torch.maximum(log_f + m, i)
    # $$f'_t = \exp(\log\sigma(\tilde f_t) + m_{t-1} - m_t), \quad i'_t = \exp(\tilde\imath_t - m_t)$$
    f_s = torch.exp(log_f + m - m_new)  # (B, NH, 1)
    i_s = torch.exp(i - m_new)  # (B, NH, 1)
    # $$C_t = f'_t C_{t-1} + i'_t\, k_t v_t^\top$$
    c_new = f_s[..., None] * c + i_s[..., None] * (k[..., :, None] * v[..., None, :])  # (B, NH, DQK, DV)
    # $$n_t = f'_t n_{t-1} + i'_t k_t$$
    n_new = f_s * n + i_s * k  # (B, NH, DQK)
    # $$\hat q_t = q_t / \sqrt{D_{QK}}$$
    q_hat = q / math.sqrt(DQK)
    # $$h_t = \frac{C_t^\top \hat q_t}{\max(|n_t^\top \hat q_t|,\ e^{-m_t}) + \epsilon}$$
    num = (q_hat[..., :, None] * c_new).sum(-2)  # (B, NH, DV)
    qn = (q_hat * n_new).sum(-1, keepdim=True)  # (B, NH, 1)
    den = torch.maximum(qn.abs(), torch.exp(-m_new)) + eps
    return num / den, (c_new, n_new, m_new)


def mlstm_recurrent(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False,
                    eps=1e-6):
    """The mLSTM over a sequence, one :func:`mlstm_step` at a time.

    q, k (B, NH, S, DQK), v (B, NH, S, DV), i, f (B, NH, S). Initial states default to zeros with
    m_0 = 0. Returns h (B, NH, S, DV), or ``(h, (C, n, m))`` with ``return_last_states``.
    """
    B, NH, S, DQK, DV = _check_sequence_inputs(q, k, v, i, f)
    c, n, m = _initial_states(B, NH, DQK, DV, c_initial, n_initial, m_initial, like=q)
    hs = []
    for t in range(S):
        h, (c, n, m) = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t, None], f[:, :, t, None],
                                  c, n, m, eps=eps)
        hs.append(h)
    h = torch.stack(hs, dim=2) if hs else v.new_zeros(B, NH, 0, DV)  # (B, NH, S, DV)
    return (h, (c, n, m)) if return_last_states else h


# ---------------------------------------------------------------------------------------------------
# 2. The parallel form


def log_decay_matrix(i, f):
    """log D (…, S, S): log D_ts = Σ_{s<r≤t} log σ(f̃_r) + ĩ_s for s ≤ t, −inf above the diagonal.

    Row t, column s is the log of how much of step s's write is left at step t. The sum over r is
    taken as a cumulative sum down each column of a masked matrix, not as the difference of two
    long cumulative sums (which cancels catastrophically for long sequences).
    """
    S = f.shape[-1]
    log_f = F.logsigmoid(f)  # (…, S)
    strictly_below = torch.ones(S, S, dtype=torch.bool, device=f.device).tril(-1)  # [t, s]: s < t
    # entry [t, s] = log σ(f̃_t) where s < t, else 0; summed down column s gives Σ_{s<r≤t} log σ(f̃_r)
    log_f_matrix = torch.where(strictly_below, log_f[..., :, None], torch.zeros_like(log_f)[..., :, None])
    # $$\log F_{ts} = \sum_{s<r\le t} \log\sigma(\tilde f_r)$$
    log_F = log_f_matrix.cumsum(dim=-2)  # (…, S, S)
    # $$\log D_{ts} = \log F_{ts} + \tilde\imath_s \ (s \le t), \qquad -\infty \ (s > t)$$
    on_or_below = torch.ones(S, S, dtype=torch.bool, device=f.device).tril()
    return (log_F + i[..., None, :]).masked_fill(~on_or_below, -math.inf)


def mlstm_parallel(q, k, v, i, f, eps=1e-6, return_stats=False):
    """Every output at once: gated, normalised attention with the decay matrix D.

    q, k (B, NH, S, DQK), v (B, NH, S, DV), i, f (B, NH, S); returns h (B, NH, S, DV), or
    ``(h, (n, m))`` with ``return_stats`` (each (B, NH, S); n before eps). The stabiliser is the
    per-row max of log D, so this form starts, in effect, from m_0 = −inf.
    """
    B, NH, S, DQK, DV = _check_sequence_inputs(q, k, v, i, f)
    log_D = log_decay_matrix(i, f)  # (B, NH, S, S)
    # $$m_t = \max_{s \le t} \log D_{ts}$$  one stabiliser per row (per query)
    m = log_D.amax(dim=-1, keepdim=True)  # (B, NH, S, 1)
    # $$D'_{ts} = \exp(\log D_{ts} - m_t)$$  zero above the diagonal
    D = torch.exp(log_D - m)  # (B, NH, S, S)
    # $$\tilde C = \frac{Q K^\top}{\sqrt{D_{QK}}} \odot D'$$
    C_tilde = (q @ k.transpose(-2, -1)) / math.sqrt(DQK) * D  # (B, NH, S, S)
    # $$n_t = \max\big(|\textstyle\sum_s \tilde C_{ts}|,\ e^{-m_t}\big)$$  the normaliser and its bound
    n = torch.maximum(C_tilde.sum(dim=-1, keepdim=True).abs(), torch.exp(-m))  # (B, NH, S, 1)
    # $$H = \frac{\tilde C}{n + \epsilon} V$$
    h = (C_tilde / (n + eps)) @ v  # (B, NH, S, DV)
    return (h, (n.squeeze(-1), m.squeeze(-1))) if return_stats else h


def mlstm_parallel_stopgrad(q, k, v, i, f, eps=1e-6):
    """:func:`mlstm_parallel` with the normaliser and the stabiliser treated as constants in backward.

    The forward pass is identical. This is what the fast public kernels' backward pass computes
    (n and m get no gradient): cheaper, but not the exact gradient. For the notebook's comparison.
    """
    _check_sequence_inputs(q, k, v, i, f)
    DQK = q.shape[-1]
    log_D = log_decay_matrix(i, f)
    m = log_D.amax(dim=-1, keepdim=True).detach()
    C_tilde = (q @ k.transpose(-2, -1)) / math.sqrt(DQK) * torch.exp(log_D - m)
    n = torch.maximum(C_tilde.sum(dim=-1, keepdim=True).abs(), torch.exp(-m)).detach()
    return (C_tilde / (n + eps)) @ v


# ---------------------------------------------------------------------------------------------------
# 3. The chunkwise form


def mlstm_chunkwise(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False,
                    chunk_size=64, eps=1e-6):
    """Chunks of ``chunk_size`` steps: the recurrence between chunks, attention inside each chunk.

    Same arguments and results as :func:`mlstm_recurrent` (states included). ``chunk_size`` is any
    positive integer; the last chunk may be shorter (a ragged chunk is handled, not padded).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    B, NH, S, DQK, DV = _check_sequence_inputs(q, k, v, i, f)
    c, n, m = _initial_states(B, NH, DQK, DV, c_initial, n_initial, m_initial, like=q)  # state of chunk 0
    q_hat = q / math.sqrt(DQK)
    hs = []
    for start in range(0, S, chunk_size):
        end = min(start + chunk_size, S)  # the last chunk may be shorter: L = end - start
        qc, kc, vc = q_hat[:, :, start:end], k[:, :, start:end], v[:, :, start:end]  # (B, NH, L, D)
        ic, fc = i[:, :, start:end], f[:, :, start:end]  # (B, NH, L)
        # $$b_t = \sum_{s \le t \text{ in chunk}} \log\sigma(\tilde f_s)$$  decay from the chunk start to t
        b = F.logsigmoid(fc).cumsum(dim=-1)  # (B, NH, L)

        # 3a. Outputs: the carried state C_k (decayed by b_t) plus attention inside the chunk.
        # $$\log D_{ts} = b_t - b_s + \tilde\imath_s \ (s \le t)$$
        log_D = log_decay_matrix(ic, fc)  # (B, NH, L, L)
        # $$m_t = \max(b_t + m_k,\ \max_s \log D_{ts})$$
        m_t = torch.maximum(b + m, log_D.amax(dim=-1))[..., None]  # (B, NH, L, 1)
        inter = torch.exp(b[..., None] + m[..., None] - m_t)  # (B, NH, L, 1) weight of the carried state
        S_intra = (qc @ kc.transpose(-2, -1)) * torch.exp(log_D - m_t)  # (B, NH, L, L)
        # $$\text{num}_t = e^{b_t + m_k - m_t} \hat q_t^\top C_k+\sum_s (\hat q_t \cdot k_s) e^{\log D_{ts}-m_t} v_s$$
        num = inter * (qc @ c) + S_intra @ vc  # (B, NH, L, DV)
        # $$\text{den}_t = e^{b_t + m_k - m_t} \hat q_t^\top n_k + \sum_s (\hat q_t \cdot k_s) e^{\log D_{ts} - m_t}$$
        den = inter * (qc @ n[..., None]) + S_intra.sum(dim=-1, keepdim=True)  # (B, NH, L, 1)
        # $$h_t = \text{num}_t / (\max(|\text{den}_t|, e^{-m_t}) + \epsilon)$$
        hs.append(num / (torch.maximum(den.abs(), torch.exp(-m_t)) + eps))

        # 3b. The state handed to the next chunk.
        g = b[..., -1:]  # (B, NH, 1) decay over the whole chunk
        # $$a_t = g - b_t + \tilde\imath_t$$  log weight of step t's write at the chunk end
        a = g - b + ic  # (B, NH, L)
        # $$m_{k+1} = \max(g + m_k,\ \max_t a_t)$$
        m_next = torch.maximum(g + m, a.amax(dim=-1, keepdim=True))  # (B, NH, 1)
        # $$C_{k+1} = e^{g + m_k - m_{k+1}} C_k + \sum_t e^{a_t - m_{k+1}} k_t v_t^\top$$  (n likewise)
        decay = torch.exp(g + m - m_next)  # (B, NH, 1)
        w = torch.exp(a - m_next)[..., None]  # (B, NH, L, 1)
        c = decay[..., None] * c + (kc * w).transpose(-2, -1) @ vc  # (B, NH, DQK, DV)
        n = decay * n + (kc * w).sum(dim=-2)  # (B, NH, DQK)
        m = m_next
    h = torch.cat(hs, dim=2) if hs else v.new_zeros(B, NH, 0, DV)  # (B, NH, S, DV)
    return (h, (c, n, m)) if return_last_states else h


# ---------------------------------------------------------------------------------------------------
# Registry


MLSTM_FORMS: dict[str, Callable[..., torch.Tensor]] = {
    "recurrent": mlstm_recurrent,
    "parallel": mlstm_parallel,
    "chunkwise": mlstm_chunkwise,
}
"""The equivalent forms by name; each is called as ``form(q, k, v, i, f, eps=...)`` -> h (B, NH, S, DV)."""
