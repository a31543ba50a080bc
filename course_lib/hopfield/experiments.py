"""Seeded experiments of module 04: capacity of three Hopfield networks, and the regimes of β.

Each function draws from its own ``torch.Generator`` and returns plain numbers (lists, dicts), so
the notebook, the slides and the tests share one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from course_lib.hopfield.reference import (
    classical_update,
    classical_update_async,
    dense_update,
    effective_patterns,
    hebbian_weights,
    hopfield_energy,
    hopfield_retrieve,
    keys_for_mass,
)


def random_patterns(N: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """N random patterns in {−1, +1}ᵈ, float64 (N, d)."""
    return torch.randint(0, 2, (N, d), generator=generator).to(torch.float64) * 2 - 1


def flip_bits(patterns: torch.Tensor, n_flips: int, generator: torch.Generator) -> torch.Tensor:
    """Copies of ±1 patterns (…, d) with exactly ``n_flips`` randomly chosen entries negated per row."""
    d = patterns.shape[-1]
    if not 0 <= n_flips <= d:
        raise ValueError(f"n_flips must be in [0, {d}], got {n_flips}")
    which = torch.rand(patterns.shape, generator=generator).argsort(dim=-1)[..., :n_flips]  # (..., n_flips)
    sign = torch.ones_like(patterns).scatter(-1, which, -1.0)
    return patterns * sign


def corrupt(patterns: torch.Tensor, flip: float, generator: torch.Generator, exact: bool = False) -> torch.Tensor:
    """±1 patterns with each bit flipped with probability ``flip`` (or exactly round(flip·d) bits if ``exact``)."""
    if exact:
        return flip_bits(patterns, round(flip * patterns.shape[-1]), generator)
    mask = torch.rand(patterns.shape, generator=generator, dtype=torch.float64) < flip
    return torch.where(mask, -patterns, patterns)


def retrieval_comparison(d: int = 32, Ns: Sequence[int] = (4, 16, 64, 256, 1024, 4096), flip: float = 0.1,
                         n_queries: int = 200, beta: float = 1.0, dense_n: int = 3, seed: int = 0,
                         tol: float = 1e-2, exact_flips: bool = False, extra_betas: Sequence[float] = (),
                         nearest: bool = False) -> dict[str, list[float]]:
    """One update of three networks on the same patterns and the same corrupted queries.

    For each N: N random ±1 patterns of dimension d; ``n_queries`` queries, each a random stored
    pattern with every bit flipped with probability ``flip`` (exactly round(flip·d) bits with
    ``exact_flips``). Success: the updated state is the right pattern —
    exactly for the sign networks (classical: one synchronous update with Hebbian weights; dense:
    one synchronous update with F(z) = z^dense_n), within relative error ``tol`` for the modern
    network (one update with β). Returns ``{"N": Ns, "classical": …, "dense n=3": …, "modern": …}``.

    ``extra_betas`` adds one column ``"modern β=<b>"`` per value (the same queries, one update with
    that β). ``nearest=True`` adds ``"nearest neighbour"``: the fraction of queries whose own pattern
    has a strictly larger overlap than every other stored pattern — an upper bound for any memory
    that returns the closest pattern (an exact copy of the own pattern elsewhere in X does not count
as a rival). Neither option changes the random draws.
    """
    gen = torch.Generator().manual_seed(seed)
    extra = {f"modern β={b:g}": b for b in extra_betas}
    rates: dict[str, list[float]] = {"N": list(Ns), "classical": [], f"dense n={dense_n}": [], "modern": []}
    rates.update({name: [] for name in extra})
    if nearest:
        rates["nearest neighbour"] = []
    for N in Ns:
        X = random_patterns(N, d, gen)  # (N, d)
        index = torch.randint(0, N, (n_queries,), generator=gen)  # which pattern each query comes from
        target = X[index]  # (n_queries, d)
        query = corrupt(target, flip, gen, exact=exact_flips)
        exact = {"classical": classical_update(query, hebbian_weights(X)),
                 f"dense n={dense_n}": dense_update(query, X, n=dense_n)}
        for name, out in exact.items():
            rates[name].append(float((out == target).all(dim=-1).double().mean()))
        out = hopfield_retrieve(query, X, beta)
        rel = (out - target).norm(dim=-1) / target.norm(dim=-1)
        rates["modern"].append(float((rel < tol).double().mean()))
        for name, b in extra.items():
            out = hopfield_retrieve(query, X, b)
            rel = (out - target).norm(dim=-1) / target.norm(dim=-1)
            rates[name].append(float((rel < tol).double().mean()))
        if nearest:
            overlap = query @ X.T  # (n_queries, N)
            own = overlap.gather(-1, index[:, None])  # (n_queries, 1)
            same = (target @ X.T) == d  # (n_queries, N): the target itself and any exact copy of it
            others = overlap.masked_fill(same, float("-inf")).amax(dim=-1, keepdim=True)
            rates["nearest neighbour"].append(float((own > others).double().mean()))
    return rates


def classical_capacity_curve(d: int = 200, loads: Sequence[float] = (0.05, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25),
                             n_sets: int = 2, max_sweeps: int = 8, error_bits: float = 0.015,
                             seed: int = 0) -> dict[str, list[float]]:
    """Stability of the stored patterns of a classical network against the load N/d.

    For each load α: N = round(α·d) random patterns, Hebbian weights; every stored pattern is the
    start of asynchronous updates (up to ``max_sweeps`` sweeps, until nothing changes). Returns, per
    load, the fraction of patterns that end within ``error_bits`` (as a fraction of d) of where they
    started (``"retrieved"``) and the mean fraction of wrong bits (``"bit_error"``), averaged over
    ``n_sets`` pattern sets. The classical estimate: retrieval collapses near α ≈ 0.138.
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"load": list(loads), "N": [], "retrieved": [], "bit_error": []}
    for alpha in loads:
        N = max(1, round(alpha * d))
        ok, err = [], []
        for _ in range(n_sets):
            X = random_patterns(N, d, gen)
            W = hebbian_weights(X)
            state = X.clone()
            for _ in range(max_sweeps):
                new = classical_update_async(state, W, n_sweeps=1, generator=gen)
                if torch.equal(new, state):
                    break
                state = new
            wrong = (state != X).double().mean(dim=-1)  # (N,) fraction of wrong bits
            ok.append((wrong <= error_bits).double().mean())
            err.append(wrong.mean())
        out["N"].append(N)
        out["retrieved"].append(float(torch.stack(ok).mean()))
        out["bit_error"].append(float(torch.stack(err).mean()))
    return out


def gaussian_memory(N: int = 64, d: int = 64, norm: float = 8.0, noise: float = 0.5, seed: int = 0):
    """``(X, query, target)``: N Gaussian patterns of norm ``norm`` and a noisy copy of pattern 0.

    The query is x_0 + noise·(a random vector of norm ``norm``), so ``noise`` is the relative error.
    """
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=gen, dtype=torch.float64)
    X = norm * X / X.norm(dim=-1, keepdim=True)
    e = torch.randn(d, generator=gen, dtype=torch.float64)
    query = X[0] + noise * norm * e / e.norm()
    return X, query.unsqueeze(0), X[0]


def beta_regimes(X: torch.Tensor, query: torch.Tensor, target: torch.Tensor,
                 betas: Sequence[float] = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 10.0),
                 n_steps: int = 1, mass: float = 0.9) -> dict[str, list[float]]:
    """What one update (or ``n_steps``) returns as β varies: the three regimes, in numbers.

    Per β: ``k90`` (patterns carrying ``mass`` of the weight), ``n_eff`` (1/Σp²), the relative
    distances of the result to the mean of all patterns (``to_mean``) and to the target pattern
    (``to_target``), and the energy of the result.
    """
    mean = X.mean(dim=0)
    out: dict[str, list[float]] = {k: [] for k in ("beta", "k90", "n_eff", "to_mean", "to_target", "energy")}
    for beta in betas:
        new, p = hopfield_retrieve(query, X, beta, n_steps=n_steps, return_weights=True)  # (1, d), (1, N)
        out["beta"].append(float(beta))
        out["k90"].append(float(keys_for_mass(p, mass)[0]))
        out["n_eff"].append(float(effective_patterns(p)[0]))
        out["to_mean"].append(float((new[0] - mean).norm() / mean.norm().clamp_min(1e-12)))
        out["to_target"].append(float((new[0] - target).norm() / target.norm()))
        out["energy"].append(float(hopfield_energy(new, X, beta)[0]))
    return out


def energy_descent_check(n_starts: int = 500, N: int = 32, d: int = 16, n_steps: int = 10,
                         betas: Sequence[float] = (0.05, 0.5, 2.0, 8.0), seed: int = 0) -> dict[str, float]:
    """Largest energy increase along modern Hopfield updates from many random starts (float64).

    For each β: random patterns, ``n_starts`` random initial states, ``n_steps`` updates; returns the
    largest E(ξ_{t+1}) − E(ξ_t) seen (≤ 0 up to round-off), the largest energy magnitude seen (for
    scale) and the number of transitions checked.
    """
    gen = torch.Generator().manual_seed(seed)
    worst, scale, count = -math.inf, 0.0, 0
    for beta in betas:
        X = torch.randn(N, d, generator=gen, dtype=torch.float64) * 2.0
        xi = torch.randn(n_starts, d, generator=gen, dtype=torch.float64) * 3.0
        e = hopfield_energy(xi, X, beta)
        for _ in range(n_steps):
            xi = hopfield_retrieve(xi, X, beta)
            e_new = hopfield_energy(xi, X, beta)
            worst = max(worst, float((e_new - e).max()))
            scale = max(scale, float(e.abs().max()))
            count += e.numel()
            e = e_new
    return {"max_increase": worst, "max_energy": scale, "transitions": count}


def head_regimes(layer_weights: Sequence[torch.Tensor], mass: float = 0.9, min_keys: int = 8,
                 causal: bool = True) -> list[dict[str, object]]:
    """Classify attention heads by how many keys carry ``mass`` of each query's weight.

    ``layer_weights``: per layer, weights (B, NH, S, S) of a trained model. For every query with at
    least ``min_keys`` visible keys (query i sees i + 1 keys under a causal mask, all S otherwise),
    k = :func:`keys_for_mass`. Per head: the median k, the median of k / visible, and a class —
    ``"single pattern"`` if the median k ≤ 2, ``"global average"`` if the median k is at least half
    the visible keys, ``"metastable"`` in between (after Ramsauer et al. 2020).
    """
    rows = []
    for layer, w in enumerate(layer_weights):
        S = w.shape[-1]
        visible = torch.arange(1, S + 1) if causal else torch.full((S,), S)
        keep = visible >= min_keys  # (S,) queries with enough keys to tell the regimes apart
        k = keys_for_mass(w[..., keep, :], mass).double()  # (B, NH, S')
        frac = k / visible[keep].double()
        for head in range(w.shape[1]):
            med_k = float(k[:, head].median())
            med_frac = float(frac[:, head].median())
            label = "single pattern" if med_k <= 2 else ("global average" if med_frac >= 0.5 else "metastable")
            rows.append({"layer": layer + 1, "head": head + 1, "median_k": med_k, "median_fraction": med_frac,
                         "mean_k": float(k[:, head].mean()), "class": label})
    return rows
