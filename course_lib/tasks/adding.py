"""The adding problem (Hochreiter & Schmidhuber, 1997): a long-lag regression task.

Each step carries two channels: a value drawn uniformly from [0, 1] and a marker. Exactly two steps
are marked: one among the first ``first_window`` steps, the other in the second half. The target is
the sum of the two marked values, read off after the last step. Predicting the mean (1.0) gives a
mean squared error of about 1/6; solving the task means carrying the first marked value from the
first tenth of the sequence to its end, across about 0.9·T steps of distractors, so T sets the time
lag that the memory must bridge.
"""

from __future__ import annotations

import torch


def adding_problem(batch: int, T: int, generator: torch.Generator | None = None,
                   first_window: int | None = None, dtype: torch.dtype = torch.float32):
    """Return ``x`` (batch, T, 2) and the target ``y`` (batch,)."""
    if T < 2:
        raise ValueError("the adding problem needs T >= 2")
    first_window = max(1, T // 10) if first_window is None else first_window
    values = torch.rand(batch, T, generator=generator, dtype=dtype)
    first = torch.randint(0, first_window, (batch,), generator=generator)
    second = torch.randint(T // 2, T, (batch,), generator=generator)
    markers = torch.zeros(batch, T, dtype=dtype)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)  # (batch, T, 2)
    y = (values * markers).sum(dim=1)  # (batch,)
    return x, y


def adding_accuracy(pred: torch.Tensor, y: torch.Tensor, threshold: float = 0.04) -> float:
    """Fraction of sequences whose prediction is within ``threshold`` of the target (the 1997 criterion)."""
    return float(((pred - y).abs() < threshold).float().mean())
