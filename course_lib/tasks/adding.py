"""A variant of the adding problem of Hochreiter & Schmidhuber (1997): a long-lag regression task.

Each step carries two channels: a value drawn uniformly from [0, 1] and a marker. Exactly two steps
are marked: one among the first ``first_window`` steps, the other in the second half. The target is
the sum of the two marked values, read off after the last step. (The 1997 task draws values from
[-1, 1] and scales the target; the idea -- carry one marked value across a long lag -- is the same.)
Solving the task means carrying the first marked value from the first tenth of the sequence to its
end, across about 0.9·T steps of distractors, so T sets the time lag that the memory must bridge.

Two baselines bound what a model that does *not* bridge the lag can reach (:func:`adding_baselines`):
predicting the mean, 1, gives MSE Var(u_1 + u_2) = 2/12 = 1/6; the best predictor that uses only the
second, nearby marked value, u_2 + 1/2, gives MSE Var(u_1) = 1/12. An MSE below 1/12 therefore means
the model carries information about the first value.
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


MSE_PREDICT_MEAN = 1 / 6
"""MSE of always predicting E[y] = 1: the variance of a sum of two independent U[0, 1] values."""
MSE_SECOND_VALUE_ONLY = 1 / 12
"""MSE of the best predictor that sees only the second marked value, u_2 + 1/2: the variance of u_1."""


def adding_baselines(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predictions of the two baselines for inputs ``x`` (batch, T, 2) of :func:`adding_problem`.

    ``"predict the mean"``: the constant E[y] = 1. ``"second value only"``: u_2 + E[u_1] = u_2 + 1/2,
    where u_2 is the value at the *last* marked step -- the best a model can do without carrying the
    first marked value across the lag.
    """
    if x.dim() != 3 or x.shape[-1] != 2:
        raise ValueError(f"expected x of shape (batch, T, 2) from adding_problem, got {tuple(x.shape)}")
    values, markers = x[..., 0], x[..., 1]
    T = x.shape[1]
    last_mark = T - 1 - markers.flip(1).argmax(dim=1)  # (batch,): index of the second marked step
    second = values.gather(1, last_mark.unsqueeze(1)).squeeze(1)
    return {"predict the mean": torch.ones_like(second), "second value only": second + 0.5}


def adding_accuracy(pred: torch.Tensor, y: torch.Tensor, threshold: float = 0.04) -> float:
    """Fraction of sequences whose prediction is within ``threshold`` of the target (the 1997 criterion)."""
    return float(((pred - y).abs() < threshold).float().mean())
