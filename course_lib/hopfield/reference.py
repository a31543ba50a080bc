"""Hopfield networks in plain PyTorch: classical, dense (polynomial), and modern (continuous).

Conventions (the course's, batch first): stored patterns are the **rows** of ``X`` (…, N, d), state
patterns the rows of ``xi`` (…, S, d); the papers write the same maths with patterns as columns.

Modern Hopfield network (Ramsauer et al. 2020), for one state pattern ξ::

    lse(β, z) = β⁻¹ log Σ_μ exp(β z_μ)
    E(ξ)      = −lse(β, X ξ) + ½ ξᵀξ + β⁻¹ log N + ½ M²,     M = max_μ ‖x_μ‖
    ξ_new     = Xᵀ softmax(β X ξ)            (rows: ξ_new = softmax(β ξ Xᵀ) X)

Classical network (Hopfield 1982): Hebbian weights W = Σ_μ x_μ x_μᵀ with a zero diagonal, states in
{−1, +1}ᵈ, updates ξ_i ← sgn(Σ_j W_ij ξ_j), energy E = −½ ξᵀ W ξ.

Dense associative memory (Krotov & Hopfield 2016): E = −Σ_μ F(x_μᵀ ξ) with F(z) = zⁿ (n = 2 is the
classical network up to a constant) or F(z) = exp(z) (Demircigil et al. 2017).
"""

from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------------------------------------------
# Modern Hopfield network


def _check_patterns(xi: torch.Tensor, X: torch.Tensor) -> None:
    if xi.dim() < 1 or X.dim() < 2:
        raise ValueError(f"xi must be (..., S, d) and X (..., N, d); got shapes {tuple(xi.shape)} and {tuple(X.shape)}")
    if xi.shape[-1] != X.shape[-1]:
        raise ValueError(f"state patterns have d={xi.shape[-1]} but stored patterns d={X.shape[-1]}")


def lse(beta, z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The smooth maximum lse(β, z) = β⁻¹ log Σ_l exp(β z_l) over ``dim`` (→ max z as β → ∞)."""
    # $$\mathrm{lse}(\beta, z) = \beta^{-1} \log \sum_l e^{\beta z_l}$$
    return torch.logsumexp(beta * z, dim=dim) / beta


def hopfield_retrieve(xi: torch.Tensor, X: torch.Tensor, beta, n_steps: int = 1, return_weights: bool = False):
    """``n_steps`` updates ξ ← softmax(β ξ Xᵀ) X of the state patterns ``xi`` (…, S, d).

    ``X`` (…, N, d) holds the stored patterns; leading dimensions broadcast as in ``torch.matmul``.
    With ``return_weights=True`` returns ``(xi_new, weights)``, the weights (…, S, N) being those of
    the last update (each row a distribution over the stored patterns).
    """
    _check_patterns(xi, X)
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    for _ in range(n_steps):
        # $$p = \mathrm{softmax}(\beta\, \xi X^\top)$$  (one distribution over the N patterns per state)
        weights = torch.softmax(beta * (xi @ X.transpose(-2, -1)), dim=-1)  # (..., S, N)
        # $$\xi^{new} = p\, X$$
        xi = weights @ X  # (..., S, d)
    return (xi, weights) if return_weights else xi


def hopfield_energy(xi: torch.Tensor, X: torch.Tensor, beta) -> torch.Tensor:
    """The modern Hopfield energy of every state pattern: (…, S).

    E = −lse(β, X ξ) + ½ ξᵀξ + β⁻¹ log N + ½ M², with M the largest norm among the N stored patterns
    of the same leading index. E ≥ 0, and E never increases along :func:`hopfield_retrieve`.
    """
    _check_patterns(xi, X)
    N = X.shape[-2]
    scores = xi @ X.transpose(-2, -1)  # (..., S, N) overlaps x_μ · ξ
    # $$M = \max_\mu \|x_\mu\|$$  (per leading index: the max runs over the N patterns only)
    M = X.norm(dim=-1).amax(dim=-1, keepdim=True)  # (..., 1)
    # $$E = -\mathrm{lse}(\beta, X\xi) + \tfrac12 \xi^\top\xi + \beta^{-1}\log N + \tfrac12 M^2$$
    return -lse(beta, scores) + 0.5 * (xi * xi).sum(-1) + math.log(N) / beta + 0.5 * M**2


def update_as_attention(R: torch.Tensor, Y: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor,
                        W_V: torch.Tensor):
    """The Hopfield update with projections, written as attention: ``(Z, weights)``.

    State patterns R (…, S, d_r) are mapped to queries Q = R W_Q, stored patterns Y (…, N, d_y) to keys
    K = Y W_K and values V = K W_V = Y W_K W_V; with β = 1/√d_k one update of the state patterns Q
    in the space of the keys, followed by W_V, is Z = softmax(Q Kᵀ/√d_k) V (…, S, d_v).
    """
    from course_lib.attention import scaled_dot_product_attention

    # $$Q = R W_Q,\quad K = Y W_K,\quad V = Y W_K W_V$$
    Q = R @ W_Q  # (..., S, d_k)
    K = Y @ W_K  # (..., N, d_k)
    V = K @ W_V  # (..., N, d_v)
    # $$Z = \mathrm{softmax}(\beta\, Q K^\top) V,\quad \beta = 1/\sqrt{d_k}$$
    return scaled_dot_product_attention(Q, K, V, scale=1.0 / math.sqrt(K.shape[-1]))


# ---------------------------------------------------------------------------------------------------
# Retrieval statistics: how many patterns an update averages


def keys_for_mass(weights: torch.Tensor, mass: float = 0.9) -> torch.Tensor:
    """Smallest number k of keys whose largest weights sum to at least ``mass``: int64 (…,).

    ``weights`` (…, N) are distributions over the last axis. k = 1 is a single retrieved pattern,
    k ≈ N/2 or more a global average (Ramsauer et al. 2020 classify attention heads this way).
    """
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    top = weights.sort(dim=-1, descending=True).values.cumsum(dim=-1)  # (..., N)
    # A tiny slack so that round-off in the cumulative sum does not add a key when mass = 1.
    return ((top < mass - 1e-12).sum(dim=-1) + 1).clamp_max(weights.shape[-1])


def effective_patterns(weights: torch.Tensor) -> torch.Tensor:
    """The participation number 1 / Σ_μ p_μ² of distributions over the last axis (1 … N)."""
    # $$N_{eff} = 1 / \sum_\mu p_\mu^2$$
    return 1.0 / (weights * weights).sum(dim=-1)


# ---------------------------------------------------------------------------------------------------
# Classical Hopfield network


def _sgn(field: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """sgn with a tie rule: +1 where field > 0, −1 where field < 0, the previous state where field = 0."""
    return torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, previous)).to(previous.dtype)


def hebbian_weights(X: torch.Tensor) -> torch.Tensor:
    """Hebbian storage of the rows of X (…, N, d): W = Σ_μ x_μ x_μᵀ with a zero diagonal, (…, d, d)."""
    if X.dim() < 2:
        raise ValueError(f"X must be (..., N, d), got shape {tuple(X.shape)}")
    # $$W = \sum_\mu x_\mu x_\mu^\top = X^\top X$$
    W = X.transpose(-2, -1) @ X  # (..., d, d)
    # $$W_{ii} = 0$$  (no self-coupling: a unit must not reinforce its own state)
    eye = torch.eye(X.shape[-1], dtype=torch.bool, device=X.device)
    return W.masked_fill(eye, 0.0)


def classical_energy(xi: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """E = −½ ξᵀ W ξ for every state pattern (row) of xi (…, S, d): (…, S)."""
    # $$E(\xi) = -\tfrac12 \xi^\top W \xi$$
    return -0.5 * ((xi @ W) * xi).sum(dim=-1)


def classical_update(xi: torch.Tensor, W: torch.Tensor, n_steps: int = 1) -> torch.Tensor:
    """``n_steps`` synchronous sign updates ξ ← sgn(W ξ) of every state pattern (row) of xi (…, S, d).

    All units update at once from the same old state; a unit whose field is exactly 0 keeps its state.
    (Synchronous updates can end in a 2-cycle; :func:`classical_update_async` cannot.)
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    for _ in range(n_steps):
        # $$h = W \xi$$  (rows: h = ξ Wᵀ)
        field = xi @ W.transpose(-2, -1)  # (..., S, d)
        # $$\xi_i \leftarrow \mathrm{sgn}(h_i)$$
        xi = _sgn(field, xi)
    return xi


def classical_update_async(xi: torch.Tensor, W: torch.Tensor, n_sweeps: int = 1,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Asynchronous updates: units one at a time, ``n_sweeps`` passes over all d units.

    Units are visited in order 0 … d−1, or in a fresh random order per sweep when ``generator`` is
    given; all state patterns (rows) update in parallel. The energy never increases (W symmetric,
    zero diagonal), so the state ends in a fixed point when sweeps are repeated.
    """
    xi = xi.clone()
    d = xi.shape[-1]
    for _ in range(n_sweeps):
        order = torch.randperm(d, generator=generator) if generator is not None else torch.arange(d)
        for i in order.tolist():
            # $$\xi_i \leftarrow \mathrm{sgn}\big(\sum_j W_{ij} \xi_j\big)$$  using the newest values of the others
            field = xi @ W[..., i, :].unsqueeze(-1)  # (..., S, 1)
            xi[..., i:i + 1] = _sgn(field, xi[..., i:i + 1])
    return xi


# ---------------------------------------------------------------------------------------------------
# Dense associative memory (Krotov & Hopfield 2016)


def _interaction(n):
    if n == "exp":
        return torch.exp
    if isinstance(n, int) and n >= 1:
        return lambda z: z**n
    raise ValueError(f"n must be a positive integer (F(z) = z^n) or 'exp', got {n!r}")


def dense_energy(xi: torch.Tensor, X: torch.Tensor, n=3) -> torch.Tensor:
    """E = −Σ_μ F(x_μᵀ ξ) with F(z) = zⁿ (or exp): (…, S)."""
    _check_patterns(xi, X)
    # $$E(\xi) = -\sum_\mu F(x_\mu^\top \xi)$$
    return -_interaction(n)(xi @ X.transpose(-2, -1)).sum(dim=-1)


def dense_update(xi: torch.Tensor, X: torch.Tensor, n=3, n_steps: int = 1, chunk: int = 2**22) -> torch.Tensor:
    """``n_steps`` synchronous updates of a dense associative memory with F(z) = zⁿ (or exp).

    Every unit i compares the energy with ξ_i = +1 and ξ_i = −1, the other units fixed:

        ξ_i ← sgn(Σ_μ [F(x_μi + Σ_{j≠i} x_μj ξ_j) − F(−x_μi + Σ_{j≠i} x_μj ξ_j)])

    (ties keep the state). ``xi`` (…, S, d) in {−1, +1}, ``X`` (…, N, d). The (S, N, d) tensor of
    fields is built ``chunk`` elements at a time to bound memory.
    """
    _check_patterns(xi, X)
    F = _interaction(n)
    N, d = X.shape[-2:]
    rows = max(1, chunk // max(1, N * d))
    for _ in range(n_steps):
        parts = []
        for xs in xi.split(rows, dim=-2):
            # $$b_{\mu i} = \sum_{j \ne i} x_{\mu j} \xi_j = x_\mu \cdot \xi - x_{\mu i} \xi_i$$
            b = (xs @ X.transpose(-2, -1)).unsqueeze(-1) - X.unsqueeze(-3) * xs.unsqueeze(-2)  # (..., s, N, d)
            if n == "exp":
                # exp(b + x) − exp(b − x) = 2 sinh(x) e^b; x = ±1, so its sign is that of Σ_μ x_μi e^{b_μi − max b}.
                field = (X.unsqueeze(-3) * torch.exp(b - b.amax(dim=-2, keepdim=True))).sum(dim=-2)
            else:
                # $$h_i = \sum_\mu F(b_{\mu i} + x_{\mu i}) - F(b_{\mu i} - x_{\mu i})$$
                field = (F(b + X.unsqueeze(-3)) - F(b - X.unsqueeze(-3))).sum(dim=-2)  # (..., s, d)
            parts.append(_sgn(field, xs))
        xi = torch.cat(parts, dim=-2)
    return xi
