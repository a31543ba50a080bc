"""The multiple-instance task: the planted pattern is in the positive bags and only there; seeded."""

from __future__ import annotations

import torch

from course_lib.tasks.mil import mil_accuracy, mil_bags, planted_pattern


def test_mil_bags_plant_the_pattern_in_positive_bags_only():
    bags, labels = mil_bags(400, bag_size=16, d=8, noise=0.1, generator=torch.Generator().manual_seed(2))
    assert bags.shape == (400, 16, 8) and labels.shape == (400,)
    assert 0.4 < float(labels.mean()) < 0.6
    p = planted_pattern(8)
    closest = (bags - p).norm(dim=-1).amin(dim=1)  # (400,) distance of the nearest instance to p
    assert bool((closest[labels == 1] < 0.6).all())
    assert bool((closest[labels == 0] > 0.6).all())
    assert mil_accuracy(torch.where(labels == 1, 1.0, -1.0), labels) == 1.0
    again, _ = mil_bags(400, bag_size=16, d=8, noise=0.1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(bags, again)


def test_mil_bags_rejects_bad_sizes():
    import pytest

    with pytest.raises(ValueError, match="bag_size"):
        mil_bags(4, bag_size=0)
