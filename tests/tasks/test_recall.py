import pytest
import torch

from course_lib.tasks.recall import associative_recall, describe_recall, recall_accuracy, recall_vocab_size


def test_associative_recall_layout_and_target():
    n_pairs, n_keys, n_values = 6, 10, 7
    tokens, target = associative_recall(300, n_pairs, n_keys, n_values, torch.Generator().manual_seed(0))
    assert tokens.shape == (300, 2 * n_pairs + 1) and tokens.dtype == torch.int64
    assert target.shape == (300,) and target.dtype == torch.int64
    keys, values, query = tokens[:, 0:-1:2], tokens[:, 1:-1:2], tokens[:, -1]
    assert bool(((keys >= 0) & (keys < n_keys)).all())
    assert bool(((values >= n_keys) & (values < recall_vocab_size(n_keys, n_values))).all())
    assert bool(((target >= 0) & (target < n_values)).all())
    for b in range(300):
        assert len(set(keys[b].tolist())) == n_pairs, "keys are distinct within a sequence"
        (where,) = (keys[b] == query[b]).nonzero(as_tuple=True)
        assert len(where) == 1, "the query is one of the sequence's keys"
        assert int(values[b, where[0]]) - n_keys == int(target[b]), "the target is the value after the key"


def test_associative_recall_is_reproducible_and_varied():
    a = associative_recall(64, 4, generator=torch.Generator().manual_seed(3))
    b = associative_recall(64, 4, generator=torch.Generator().manual_seed(3))
    c = associative_recall(64, 4, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_associative_recall_queries_every_position_and_value():
    tokens, target = associative_recall(4000, 5, 8, 6, torch.Generator().manual_seed(1))
    position = (tokens[:, 0:-1:2] == tokens[:, -1:]).float().argmax(dim=1)
    assert set(position.tolist()) == set(range(5))
    counts = torch.bincount(target, minlength=6).float() / 4000
    assert float(counts.min()) > 0.13 and float(counts.max()) < 0.2  # close to uniform: guessing gives 1/6


def test_associative_recall_rejects_more_pairs_than_keys():
    with pytest.raises(ValueError):
        associative_recall(2, 9, n_keys=8)


def test_recall_accuracy_and_description():
    logits = torch.tensor([[0.1, 2.0, 0.0], [3.0, 0.0, 0.0]])
    assert recall_accuracy(logits, torch.tensor([1, 1])) == 0.5
    assert describe_recall(torch.tensor([3, 12, 5, 10, 3]), n_keys=10) == ["K3", "v2", "K5", "v0", "K3?"]


def test_bag_of_values_probs_count_each_value_of_the_sequence():
    from course_lib.tasks.recall import bag_of_values_probs

    # K0 v1 K2 v1 K3 v0 K2?  (n_keys = 4): value 1 twice, value 0 once, value 2 never
    tokens = torch.tensor([[0, 5, 2, 5, 3, 4, 2]])
    probs = bag_of_values_probs(tokens, n_keys=4, n_values=3)
    assert torch.allclose(probs, torch.tensor([[1 / 3, 2 / 3, 0.0]]))
    with pytest.raises(ValueError):
        bag_of_values_probs(tokens, n_keys=5, n_values=3)


def test_recall_baselines_against_a_brute_force_count():
    import math

    from course_lib.tasks.recall import recall_baselines

    tokens, target = associative_recall(500, 6, 10, 7, torch.Generator().manual_seed(2))
    base = recall_baselines(tokens, target, 10, 7)
    assert base["chance"] == (1 / 7, math.log(7))
    hits, nats = 0, 0.0
    for b in range(500):
        values = [int(t) - 10 for t in tokens[b, 1:-1:2]]
        counts = [values.count(v) for v in range(7)]
        hits += counts.index(max(counts)) == int(target[b])
        nats -= math.log(counts[int(target[b])] / 6)
    assert abs(base["bag of values"][0] - hits / 500) < 1e-6
    assert abs(base["bag of values"][1] - nats / 500) < 1e-5
    # better than chance on both counts, though it never looks at a key
    assert base["bag of values"][0] > 1 / 7 and base["bag of values"][1] < math.log(7)
