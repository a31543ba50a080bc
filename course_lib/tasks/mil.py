"""A multiple-instance task: is the planted pattern somewhere in the bag?

Each example is a bag of ``bag_size`` instance vectors in ℝᵈ; its label says whether **one** of
them is (a noisy copy of) a fixed, secret pattern p. All other instances are Gaussian noise. Half
the bags are positive. The label depends on one instance out of many, so a model must find it:
averaging the bag dilutes the planted instance by 1/bag_size, while a content-based look-up (a
learned query that matches p) picks it out. Generated from a seed; nothing is downloaded.
"""

from __future__ import annotations

import torch


def planted_pattern(d: int, seed: int = 0) -> torch.Tensor:
    """The secret pattern p (d,): a random direction of norm √d, fixed by ``seed``."""
    g = torch.Generator().manual_seed(10_000 + seed)
    p = torch.randn(d, generator=g)
    return p / p.norm() * d**0.5


def mil_bags(batch: int, bag_size: int = 32, d: int = 16, noise: float = 0.3, pattern_seed: int = 0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bags (batch, bag_size, d) float32, labels (batch,) float32 in {0, 1})``.

    Instances are N(0, I); a positive bag has one instance, at a random position, replaced by
    p + noise·N(0, I) with p = :func:`planted_pattern`. Labels are balanced in expectation.
    """
    if bag_size < 1 or d < 1:
        raise ValueError(f"bag_size and d must be positive, got {bag_size}, {d}")
    bags = torch.randn(batch, bag_size, d, generator=generator)
    labels = (torch.rand(batch, generator=generator) < 0.5).float()
    where = torch.randint(0, bag_size, (batch,), generator=generator)
    planted = planted_pattern(d, pattern_seed) + noise * torch.randn(batch, d, generator=generator)
    rows = labels.bool().nonzero().squeeze(-1)
    bags[rows, where[rows]] = planted[rows]
    return bags, labels


def mil_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of bags whose sign of the logit matches the label."""
    return float(((logits > 0).float() == labels).float().mean())
