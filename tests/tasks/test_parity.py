"""The parity task: labels are prefix parities, lengths as asked, seeded, and accuracy is measured at the end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.tasks.parity import CHANCE, parity, parity_accuracy, parity_loss, parity_sampler


def test_parity_labels_are_prefix_parities():
    x, y = parity(16, 9, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 9) and x.dtype == torch.int64
    for b in range(16):
        running = 0
        for t in range(9):
            running ^= int(x[b, t])
            assert int(y[b, t]) == running


def test_parity_is_seeded_and_balanced():
    a = parity(4, 5, torch.Generator().manual_seed(3))
    b = parity(4, 5, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    _, y = parity(4000, 30, torch.Generator().manual_seed(1))
    assert abs(float(y[:, -1].float().mean()) - CHANCE) < 0.03


def test_parity_sampler_lengths_stay_in_range():
    sample = parity_sampler(3, 6)
    gen = torch.Generator().manual_seed(0)
    lengths = {sample(2, gen)[0].shape[1] for _ in range(200)}
    assert lengths == {3, 4, 5, 6}
    with pytest.raises(ValueError):
        parity_sampler(5, 4)
    with pytest.raises(ValueError):
        parity(0, 3)


class _Oracle(nn.Module):
    """Computes the parity exactly: logits favour the true prefix parity."""

    def forward(self, x):
        y = torch.cumsum(x, 1) % 2
        return torch.nn.functional.one_hot(y, 2).float() * 10.0


def test_parity_accuracy_of_an_oracle_and_of_a_constant():
    assert parity_accuracy(_Oracle(), lengths=[40, 64], n_per_length=32) == 1.0

    class Constant(nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, 2) + torch.tensor([1.0, 0.0])

    acc = parity_accuracy(Constant(), lengths=range(40, 65), n_per_length=64)
    assert abs(acc - CHANCE) < 0.05


def test_parity_loss_is_cross_entropy_over_every_position():
    x, y = parity(3, 4, torch.Generator().manual_seed(0))
    logits = torch.randn(3, 4, 2)
    expected = torch.nn.functional.cross_entropy(logits.permute(0, 2, 1), y)
    assert torch.allclose(parity_loss(logits, y), expected)
