"""The Energy Transformer idea (Hoover et al. 2023) in a few lines: tokens descend one energy.

A transformer block *computes* an update; the Energy Transformer *derives* it. Tokens x (…, S, D)
are layer-normalised to g = LN(x) (no learned scale, so the Jacobian of LN is symmetric and
positive semi-definite), and one scalar energy is written down::

    E_ATT = −(1/β) Σ_h Σ_C log Σ_{B≠C} exp(β k_{hB} · q_{hC}),   q_{hC} = W_Q[h]ᵀ g_C,  k_{hB} = W_K[h]ᵀ g_B
    E_HN  = −½ Σ_μ Σ_C ReLU(ξ_μ · g_C)²
    E     = E_ATT + E_HN

Each token moves against the gradient of E with respect to its normalised self:
x ← x − α ∂E/∂g. Because dE = (∂E/∂g)ᵀ J_LN dx with J_LN symmetric PSD, E never increases for a
small enough step. The gradient of E_ATT is an attention update (each query token is pulled
towards a softmax-weighted sum of the keys, and each key towards the queries that attend to it);
E_HN is a Hopfield network in place of the MLP.
"""

from __future__ import annotations

import torch


def layer_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """g = (x − mean) / sqrt(var + eps) over the last axis, no learned scale or shift."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


def et_energy(g: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, Xi: torch.Tensor, beta: float) -> torch.Tensor:
    """E = E_ATT + E_HN of normalised tokens g (…, S, D): (…,).

    W_Q, W_K (H, D, Y) per-head projections; Xi (M, D) the memories of the Hopfield part.
    """
    S = g.shape[-2]
    q = torch.einsum("...sd,hdy->...hsy", g, W_Q)  # (..., H, S, Y)
    k = torch.einsum("...sd,hdy->...hsy", g, W_K)  # (..., H, S, Y)
    scores = beta * q @ k.transpose(-2, -1)  # (..., H, S_query C, S_key B)
    # A token does not attend to itself: B ≠ C.
    self_mask = torch.eye(S, dtype=torch.bool, device=g.device)
    scores = scores.masked_fill(self_mask, float("-inf"))
    # $$E_{ATT} = -\frac{1}{\beta} \sum_h \sum_C \log \sum_{B \ne C} e^{\beta\, k_{hB} \cdot q_{hC}}$$
    e_att = -torch.logsumexp(scores, dim=-1).sum(dim=(-2, -1)) / beta
    # $$E_{HN} = -\tfrac12 \sum_\mu \sum_C \mathrm{ReLU}(\xi_\mu \cdot g_C)^2$$
    e_hn = -0.5 * torch.relu(g @ Xi.transpose(-2, -1)).pow(2).sum(dim=(-2, -1))
    return e_att + e_hn


def et_descent(x: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, Xi: torch.Tensor, beta: float = 0.5,
               step: float = 0.05, n_steps: int = 100) -> tuple[torch.Tensor, list[float]]:
    """Iterate x ← x − step · ∂E/∂g at g = LN(x); returns the final tokens and E (summed over the batch) per step.

    The list has ``n_steps + 1`` energies, the first one at the start.
    """
    energies = []
    x = x.detach().clone()
    for _ in range(n_steps + 1):
        g = layer_norm(x).detach().requires_grad_(True)
        E = et_energy(g, W_Q, W_K, Xi, beta).sum()
        energies.append(float(E.detach()))
        if len(energies) == n_steps + 1:
            break
        (grad_g,) = torch.autograd.grad(E, g)
        # $$x \leftarrow x - \alpha\, \partial E / \partial g$$
        x = x - step * grad_g
    return x, energies


def et_example(S: int = 12, D: int = 16, H: int = 2, Y: int = 8, M: int = 24, seed: int = 0):
    """Random tokens and parameters for a demo: ``(x (S, D), W_Q, W_K (H, D, Y), Xi (M, D))``, float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(S, D, generator=g, dtype=torch.float64)
    W_Q = torch.randn(H, D, Y, generator=g, dtype=torch.float64) / D**0.5
    W_K = torch.randn(H, D, Y, generator=g, dtype=torch.float64) / D**0.5
    Xi = torch.randn(M, D, generator=g, dtype=torch.float64) / D**0.5
    return x, W_Q, W_K, Xi
