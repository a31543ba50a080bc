"""Scaled dot-product attention in plain PyTorch, and its online-softmax (blocked) form.

Conventions are those of ``torch.nn.functional.scaled_dot_product_attention``:

    weights = softmax(q kᵀ · scale + mask),   out = weights v,   scale = 1/√D by default

with q (B, NH, Sq, D), k (B, NH, Sk, D), v (B, NH, Sk, DV) (any leading dimensions work). A bool
mask is True where a query **may** attend; a float mask is added to the scores (−inf blocks).
``is_causal`` lets query i see keys j ≤ i (top-left aligned when Sq ≠ Sk).
"""

from __future__ import annotations

import math

import torch


def causal_mask(Sq: int, Sk: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool mask (Sq, Sk), True where query i may attend to key j, i.e. j ≤ i (top-left aligned)."""
    # $$M_{ij} = [\, j \le i \,]$$
    return torch.ones(Sq, Sk, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """Attention as ``F.scaled_dot_product_attention``, also returning the weights.

    q (..., Sq, D), k (..., Sk, D), v (..., Sk, DV); ``attn_mask`` broadcasts to (..., Sq, Sk).
    Returns ``(out (..., Sq, DV), weights (..., Sq, Sk))`` in the dtype of q; the weights are part
    of the autograd graph. With both ``attn_mask`` and ``is_causal`` a key must be allowed by both.
    Rows in which every key is masked are undefined (NaN).
    """
    Sq, D = q.shape[-2:]
    Sk = k.shape[-2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    # $$s_{ij} = \frac{q_i \cdot k_j}{\sqrt{D}}$$
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, NH, Sq, Sk)
    if is_causal:
        scores = scores.masked_fill(~causal_mask(Sq, Sk, device=q.device), -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            # The mask is cast to q's dtype so that float32 inputs give float32 outputs.
            scores = scores + attn_mask.to(q.dtype)
    # $$a_{ij} = \frac{e^{s_{ij}}}{\sum_{j'} e^{s_{ij'}}}$$
    weights = torch.softmax(scores, dim=-1)  # (B, NH, Sq, Sk)
    # $$o_i = \sum_j a_{ij} v_j$$
    out = weights @ v  # (B, NH, Sq, DV)
    return out, weights


def online_softmax_attention(q, k, v, block_size=16, is_causal=False, scale=None):
    """softmax(q kᵀ · scale) v computed over blocks of ``block_size`` keys, never all scores at once.

    Keeps, for every query, a running max m, a running sum l of exp(s − m) and a running,
    unnormalised output acc. When a block raises the max, the old l and acc are rescaled by
    exp(m_old − m_new) so that everything stays relative to the current max (this is the idea of
    flash attention). Returns ``(out (..., Sq, DV), lse (..., Sq))`` where lse = m + log l is the
    natural-log logsumexp of the scaled (and masked) scores, both in the dtype of q.
    """
    Sq, D = q.shape[-2:]
    Sk = k.shape[-2]
    if block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size}")
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    rows = torch.arange(Sq, device=q.device).unsqueeze(-1)  # (Sq, 1)
    m = q.new_full(q.shape[:-1] + (1,), -math.inf)  # (B, NH, Sq, 1) running max
    l = q.new_zeros(q.shape[:-1] + (1,))  # (B, NH, Sq, 1) running sum of exp(s - m)
    acc = q.new_zeros(q.shape[:-1] + v.shape[-1:])  # (B, NH, Sq, DV) running sum of exp(s - m) v
    for start in range(0, Sk, block_size):
        # 1. Scores of this block of keys.
        k_blk, v_blk = k[..., start:start + block_size, :], v[..., start:start + block_size, :]
        s = (q @ k_blk.transpose(-2, -1)) * scale  # (B, NH, Sq, L)
        if is_causal:
            cols = torch.arange(start, start + k_blk.shape[-2], device=q.device)  # global key index
            s = s.masked_fill(cols > rows, -math.inf)
        # 2. New running max. With top-left causal masking key 0 is visible to every query, so m is
        #    finite after the first block and exp(m - m_new) never sees (-inf) - (-inf).
        # $$m^{new} = \max(m, \max_j s_j)$$
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))  # (B, NH, Sq, 1)
        # 3. Rescale what was accumulated relative to the old max, add this block.
        # $$\alpha = e^{m - m^{new}},\quad l \leftarrow \alpha l + \sum_j e^{s_j - m^{new}}$$
        alpha = torch.exp(m - m_new)  # (B, NH, Sq, 1)
        p = torch.exp(s - m_new)  # (B, NH, Sq, L)
        l = alpha * l + p.sum(dim=-1, keepdim=True)
        # $$acc \leftarrow \alpha\, acc + \sum_j e^{s_j - m^{new}} v_j$$
        acc = alpha * acc + p @ v_blk  # (B, NH, Sq, DV)
        m = m_new
    # 4. Normalise once at the end.
    # $$o = acc / l,\quad \mathrm{lse} = m + \log l$$
    out = acc / l  # (B, NH, Sq, DV)
    lse = (m + torch.log(l)).squeeze(-1)  # (B, NH, Sq)
    return out, lse


def attention_score_gradients(q, k, grad_weights, scale=None):
    """Backward through weights = softmax(q kᵀ · scale), by hand: no autograd.

    For a loss L with upstream gradient u = ∂L/∂weights (``grad_weights``, (..., Sq, Sk)), returns
    ``(grad_scores, grad_q, grad_k)``: ∂L/∂s for the scaled scores s (..., Sq, Sk), ∂L/∂q (..., Sq, D)
    and ∂L/∂k (..., Sk, D), in the dtype of q.
    """
    Sq, D = q.shape[-2:]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    weights = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)  # (..., Sq, Sk)
    # Row by row, the softmax Jacobian is diag(α) − α αᵀ, so Jᵀu = α ⊙ (u − α·u).
    # $$\frac{\partial L}{\partial s_{ij}} = \alpha_{ij}\Big(u_{ij} - \sum_{j'} \alpha_{ij'} u_{ij'}\Big)$$
    grad_scores = weights * (grad_weights - (weights * grad_weights).sum(dim=-1, keepdim=True))  # (..., Sq, Sk)
    # $$\frac{\partial L}{\partial q_i} = \text{scale} \sum_j \frac{\partial L}{\partial s_{ij}}\, k_j,
    #   \qquad \frac{\partial L}{\partial k_j} = \text{scale} \sum_i \frac{\partial L}{\partial s_{ij}}\, q_i$$
    grad_q = scale * grad_scores @ k  # (..., Sq, D)
    grad_k = scale * grad_scores.transpose(-2, -1) @ q  # (..., Sk, D)
    return grad_scores, grad_q, grad_k


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, S, NH·DH) -> (B, NH, S, DH): head h owns the features h·DH … (h+1)·DH − 1."""
    B, S, E = x.shape
    if E % num_heads:
        raise ValueError(f"the feature size {E} is not divisible by num_heads={num_heads}")
    return x.view(B, S, num_heads, E // num_heads).transpose(1, 2)  # (B, NH, S, DH)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, NH, S, DH) -> (B, S, NH·DH), the inverse of :func:`split_heads` (heads concatenated in order)."""
    B, NH, S, DH = x.shape
    return x.transpose(1, 2).reshape(B, S, NH * DH)  # (B, S, NH·DH)


def attention_weights_bytes(B: int, NH: int, Sq: int, Sk: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the (B, NH, Sq, Sk) weight matrix that plain attention materialises."""
    return B * NH * Sq * Sk * torch.empty((), dtype=dtype).element_size()


def softmax_stats(scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """Saturation of softmax(scores) over the last axis: mean max weight and mean entropy (nats)."""
    w = torch.softmax(scores, dim=-1)
    entropy = -(w * torch.log(w.clamp_min(torch.finfo(w.dtype).tiny))).sum(-1)
    return {"max_weight": w.amax(-1).mean(), "entropy": entropy.mean()}


def scale_sweep(dims, n_keys: int = 64, n_queries: int = 256, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Why 1/√d: softmax saturation and gradient sizes against the head dimension d.

    For each d, random q, k ~ N(0, I_d) give raw scores q·k with standard deviation √d. For a random
    upstream gradient u on the weights (L = Σ_j α_j u_j), reports with and without the 1/√d scale,
    averaged over the queries:

    - ``score_std``: the standard deviation of the scores the softmax sees (an inverse temperature);
    - ``max_weight`` and ``entropy`` (nats) of the weights;
    - ``grad``: ‖∂L/∂s‖, the gradient that reaches the scores;
    - ``grad_q``: ‖∂L/∂q‖ = ‖scale · Σ_j (∂L/∂s_j) k_j‖, the gradient that reaches the query (and
      W_Q behind it); each k_j has norm ≈ √d, so this is not small when ‖∂L/∂s‖ is;
    - ``grad_typical``: the median over the keys of |∂L/∂s_j| = α_j |u_j − Σ_i α_i u_i|, what a
      typical key (not the one with the top score) gets: exponentially small once α saturates.
    """
    gen = torch.Generator().manual_seed(seed)
    keys = ("score_std", "max_weight", "entropy", "grad", "grad_q", "grad_typical")
    curves = {"q·k (no scale)": {key: [] for key in keys}, "q·k / √d": {key: [] for key in keys}}
    for d in dims:
        q = torch.randn(n_queries, 1, d, generator=gen, dtype=torch.float64)
        k = torch.randn(n_queries, n_keys, d, generator=gen, dtype=torch.float64)
        upstream = torch.randn(n_queries, n_keys, generator=gen, dtype=torch.float64)
        for label, scale in [("q·k (no scale)", 1.0), ("q·k / √d", 1.0 / math.sqrt(d))]:
            q_leaf = q.clone().requires_grad_(True)
            # $$s_j = \text{scale}\; q \cdot k_j$$
            scores = (q_leaf @ k.transpose(-2, -1)).squeeze(1) * scale  # (n_queries, n_keys)
            scores.retain_grad()
            stats = softmax_stats(scores.detach())
            (torch.softmax(scores, -1) * upstream).sum().backward()
            grad_s, grad_q = scores.grad, q_leaf.grad.squeeze(1)  # (n_queries, n_keys), (n_queries, d)
            c = curves[label]
            c["score_std"].append(float(scores.detach().std()))
            c["max_weight"].append(float(stats["max_weight"]))
            c["entropy"].append(float(stats["entropy"]))
            c["grad"].append(float(grad_s.norm(dim=-1).mean()))
            c["grad_q"].append(float(grad_q.norm(dim=-1).mean()))
            c["grad_typical"].append(float(grad_s.abs().median(dim=-1).values.mean()))
    return curves
