"""Parity with length extrapolation: state tracking that needs memory mixing.

A sequence of bits x_1 … x_S; the label at position t is the parity of the prefix,
y_t = (x_1 + … + x_t) mod 2. The model is trained on short sequences (lengths 3–20 by default)
with a label at every position, and tested on the *last* position of much longer ones (40–64):
only a model that has learned the flip-flop rule "y_t = y_{t−1} XOR x_t", rather than a pattern
of the lengths it saw, extrapolates. Chance is 0.5. Everything is generated from a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.training import TrainConfig, TrainLog, train

TRAIN_LENGTHS = (3, 20)
TEST_LENGTHS = (40, 64)
CHANCE = 0.5


def parity(batch: int, length: int, generator: torch.Generator | None = None):
    """Random bits and their prefix parities: -> (x (batch, length) int64 in {0, 1}, y (batch, length))."""
    if batch < 1 or length < 1:
        raise ValueError(f"batch and length must be >= 1, got batch={batch}, length={length}")
    x = torch.randint(0, 2, (batch, length), generator=generator)
    # $$y_t = \Big(\sum_{s \le t} x_s\Big) \bmod 2$$
    y = torch.cumsum(x, dim=1) % 2
    return x, y


def parity_sampler(min_len: int = TRAIN_LENGTHS[0], max_len: int = TRAIN_LENGTHS[1]):
    """A ``sample(batch, generator)`` for :func:`course_lib.training.train`: one length per batch,
    uniform in [min_len, max_len]."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")

    def sample(batch: int, generator: torch.Generator):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=generator))
        return parity(batch, length, generator)

    return sample


def parity_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at every position: logits (B, S, 2), y (B, S)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def parity_accuracy(model: nn.Module, lengths: Sequence[int] = range(TEST_LENGTHS[0], TEST_LENGTHS[1] + 1),
                    n_per_length: int = 64, seed: int = 1234) -> float:
    """Accuracy of the prediction at the last position, averaged over sequences of the given lengths."""
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    correct = total = 0
    for length in lengths:
        x, y = parity(n_per_length, int(length), gen)
        pred = model(x)[:, -1].argmax(-1)
        correct += int((pred == y[:, -1]).sum())
        total += n_per_length
    model.train(was_training)
    return correct / total


def train_parity(model: nn.Module, config: TrainConfig, min_len: int = TRAIN_LENGTHS[0],
                 max_len: int = TRAIN_LENGTHS[1]) -> TrainLog:
    """Train ``model`` (tokens (B, S) -> logits (B, S, 2)) on prefix parity of lengths in [min_len, max_len]."""
    return train(model, parity_sampler(min_len, max_len), parity_loss, config)


def parity_table(models: dict[str, Callable[[], nn.Module]], config: TrainConfig, seeds: Sequence[int] = (0, 1, 2),
                 test_lengths: Sequence[int] = range(TEST_LENGTHS[0], TEST_LENGTHS[1] + 1),
                 n_per_length: int = 32) -> dict[str, dict[str, list[float]]]:
    """Train every model at every seed with the same budget.

    Returns ``{name: {"train": [...], "test": [...], "seconds": [...]}}``, one entry per seed.

    ``models`` maps a name to a constructor (called after seeding, so the initialisation is seeded
    too). "train" is the last-position accuracy on the training lengths, "test" on ``test_lengths``.
    """
    results: dict[str, dict[str, list[float]]] = {}
    for name, build in models.items():
        row = results.setdefault(name, {"train": [], "test": [], "seconds": []})
        for seed in seeds:
            torch.manual_seed(seed)
            model = build()
            log = train_parity(model, TrainConfig(**{**config.__dict__, "seed": seed}))
            row["train"].append(parity_accuracy(model, range(TRAIN_LENGTHS[0], TRAIN_LENGTHS[1] + 1), n_per_length,
                                                seed=10_000 + seed))
            row["test"].append(parity_accuracy(model, test_lengths, n_per_length, seed=20_000 + seed))
            row["seconds"].append(log.seconds)
    return results
