"""Value at the maximum: a stream task in which the memory must revise what it stored.

Each step carries a key score s_t ~ U(0, 1) and a value v_t, one of ``n_values`` symbols (one-hot).
After the last step the model must name the value that came with the **largest** score. Reading
left to right, the right answer changes every time a new running maximum appears: whatever the
memory stored must then be replaced by the new value — a storage decision revised. The number of
such revisions in a sequence of length S is 1 + 1/2 + … + 1/S on average (≈ 3 for S = 12).

Baselines: chance is 1/n_values; "the last value" (what a memory that always overwrites returns)
is right with probability 1/S + (1 − 1/S)/n_values; :func:`threshold_policy` is the best rule that
decides at write time without comparing with what is stored (keep values whose score exceeds τ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def value_at_max(batch: int, length: int, n_values: int = 4, generator: torch.Generator | None = None):
    """-> x (batch, length, 1 + n_values) float32, y (batch,) the value at the largest score,
    revisions (batch,) how many times the running maximum changed (the first step counts)."""
    if batch < 1 or length < 1 or n_values < 2:
        raise ValueError(f"need batch >= 1, length >= 1, n_values >= 2; got {batch}, {length}, {n_values}")
    s = torch.rand(batch, length, generator=generator)
    v = torch.randint(0, n_values, (batch, length), generator=generator)
    x = torch.cat([s.unsqueeze(-1), F.one_hot(v, n_values).float()], dim=-1)  # (B, S, 1 + n_values)
    y = v.gather(1, s.argmax(dim=1, keepdim=True)).squeeze(1)  # (B,)
    running = torch.cummax(s, dim=1).values
    revisions = (s >= running).sum(dim=1)  # steps at which s_t is a new running maximum
    return x, y, revisions


def value_at_max_baselines(length: int, n_values: int) -> dict[str, float]:
    """Accuracy of guessing (chance) and of answering with the last value seen."""
    return {"chance": 1 / n_values, "last value": 1 / length + (1 - 1 / length) / n_values}


def threshold_policy(x: torch.Tensor, y: torch.Tensor, thresholds: int = 100) -> tuple[float, float]:
    """The best storage rule that never compares with the memory: keep the last value whose score
    exceeds a fixed threshold τ (the last value if none does). -> (accuracy, τ) for the best τ on (x, y)."""
    s, v = x[..., 0], x[..., 1:].argmax(-1)  # (B, S)
    S = s.shape[1]
    steps = torch.arange(S)
    best = (-1.0, 0.0)
    for tau in torch.linspace(0.0, 1.0, thresholds + 1)[:-1].tolist():
        above = s > tau
        last_above = torch.where(above.any(1), (above * steps).argmax(1), torch.full_like(y, S - 1))
        acc = float((v.gather(1, last_above.unsqueeze(1)).squeeze(1) == y).float().mean())
        best = max(best, (acc, tau))
    return best
