"""MQAR: layout, targets that follow from the tokens, seeding, baselines, loss and accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.tasks.mqar import IGNORE, mqar, mqar_accuracy, mqar_baselines, mqar_loss, mqar_vocab_size


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_mqar_layout_and_answers_follow_from_the_tokens():
    NK, NV, N, Q = 10, 7, 5, 6
    tokens, targets = mqar(50, N, Q, NK, NV, _gen())
    assert tokens.shape == targets.shape == (50, 2 * N + Q) and tokens.dtype == targets.dtype == torch.int64
    assert (targets[:, :2 * N] == IGNORE).all()
    for b in range(50):
        keys, values = tokens[b, 0:2 * N:2], tokens[b, 1:2 * N:2] - NK
        assert ((keys >= 0) & (keys < NK)).all() and len(set(keys.tolist())) == N  # distinct keys
        assert ((values >= 0) & (values < NV)).all()
        lookup = dict(zip(keys.tolist(), values.tolist(), strict=True))
        for j in range(Q):
            query = int(tokens[b, 2 * N + j])
            assert query in lookup and int(targets[b, 2 * N + j]) == lookup[query]
    assert int(tokens.max()) < mqar_vocab_size(NK, NV)


def test_mqar_is_seeded():
    a, b = mqar(8, 4, 3, generator=_gen(3)), mqar(8, 4, 3, generator=_gen(3))
    c = mqar(8, 4, 3, generator=_gen(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("kwargs", [dict(n_pairs=0, n_queries=2), dict(n_pairs=17, n_queries=2),
                                    dict(n_pairs=4, n_queries=0)])
def test_mqar_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        mqar(4, **kwargs, n_keys=16)


def test_mqar_loss_and_accuracy_score_only_query_positions():
    NV, N, Q = 6, 3, 4
    tokens, targets = mqar(20, N, Q, 8, NV, _gen(1))
    logits = torch.zeros(20, 2 * N + Q, NV)
    logits.scatter_(2, targets.clamp_min(0)[..., None], 5.0)  # confident and right at query positions
    logits[:, :2 * N] = torch.randn(20, 2 * N, NV, generator=_gen(2)) * 10  # anything at ignored positions
    assert mqar_accuracy(logits, targets) == 1.0
    expected = -torch.log_softmax(torch.tensor([5.0] + [0.0] * (NV - 1)), 0)[0]
    assert abs(float(mqar_loss(logits, targets)) - float(expected)) < 1e-6
    uniform = torch.zeros(20, 2 * N + Q, NV)
    assert abs(float(mqar_loss(uniform, targets)) - math.log(NV)) < 1e-6


def test_mqar_most_frequent_value_baseline_by_hand():
    # One sequence: pairs (k0, v1) (k1, v1) (k2, v2); queries k0, k2 -> answers v1, v2; the guess v1 is right once.
    NK, NV = 3, 3
    tokens = torch.tensor([[0, NK + 1, 1, NK + 1, 2, NK + 2, 0, 2]])
    targets = torch.tensor([[IGNORE] * 6 + [1, 2]])
    base = mqar_baselines(tokens, targets, NK, NV)
    assert base["chance"] == pytest.approx(1 / 3)
    assert base["most frequent value"] == pytest.approx(0.5)
