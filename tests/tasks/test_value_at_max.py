"""The value-at-the-maximum task: the label is the value at the largest score; revisions are counted."""

from __future__ import annotations

import pytest
import torch

from course_lib.tasks.value_at_max import value_at_max, value_at_max_baselines


def test_value_at_max_label_and_revisions_by_hand():
    x, y, revisions = value_at_max(64, 9, 5, torch.Generator().manual_seed(0))
    assert x.shape == (64, 9, 6) and y.shape == revisions.shape == (64,)
    for b in range(64):
        s, v = x[b, :, 0], x[b, :, 1:].argmax(-1)
        best, count = -1.0, 0
        for t in range(9):
            if float(s[t]) > best:
                best, count, answer = float(s[t]), count + 1, int(v[t])
        assert int(y[b]) == answer and int(revisions[b]) == count


def test_value_at_max_baselines_match_simulation():
    x, y, revisions = value_at_max(20000, 12, 4, torch.Generator().manual_seed(1))
    last = x[:, -1, 1:].argmax(-1)
    base = value_at_max_baselines(12, 4)
    assert abs(float((last == y).float().mean()) - base["last value"]) < 0.02
    assert abs(float(revisions.float().mean()) - sum(1 / k for k in range(1, 13))) < 0.05
    with pytest.raises(ValueError):
        value_at_max(2, 5, 1)


def test_threshold_policy_beats_the_last_value_and_picks_a_high_threshold():
    from course_lib.tasks.value_at_max import threshold_policy

    x, y, _ = value_at_max(4000, 12, 4, torch.Generator().manual_seed(2))
    acc, tau = threshold_policy(x, y)
    assert acc > value_at_max_baselines(12, 4)["last value"] + 0.2
    assert 0.7 < tau < 0.99
    # τ = 0 keeps every value: the last-value rule
    last = float((x[:, -1, 1:].argmax(-1) == y).float().mean())
    assert threshold_policy(x, y, thresholds=1) == (last, 0.0)
