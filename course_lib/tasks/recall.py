"""Associative recall: look a key up in the sequence and answer with the value stored next to it.

A sequence lists ``n_pairs`` key–value pairs, then repeats one of the keys (the query)::

    k_1 v_1 k_2 v_2 … k_N v_N q        target: the v_i with k_i = q

Keys are distinct within a sequence and drawn from ``n_keys`` key tokens; values are drawn with
replacement from ``n_values`` value tokens. Token ids: keys 0 … n_keys − 1, values n_keys …
n_keys + n_values − 1; the target is the value's index in 0 … n_values − 1. Guessing gives
1/n_values. The answer can sit anywhere in the sequence, so a model must keep every pair (a
recurrent state of fixed size) or look back at all of them (attention).

A model that ignores the keys can still beat guessing: the answer is one of the sequence's values,
so predicting by how often each value occurs (:func:`bag_of_values_probs`) is the baseline that a
real key → value look-up must beat.
"""

from __future__ import annotations

import math

import torch


def recall_vocab_size(n_keys: int, n_values: int) -> int:
    """Number of distinct tokens in :func:`associative_recall` sequences."""
    return n_keys + n_values


def associative_recall(batch: int, n_pairs: int, n_keys: int = 16, n_values: int = 16,
                       generator: torch.Generator | None = None):
    """Return ``tokens`` (batch, 2·n_pairs + 1) int64 and ``target`` (batch,) int64 in [0, n_values)."""
    if not 1 <= n_pairs <= n_keys:
        raise ValueError(f"need 1 <= n_pairs <= n_keys, got n_pairs={n_pairs}, n_keys={n_keys}")
    # Distinct keys per sequence: the first n_pairs entries of a random permutation.
    keys = torch.rand(batch, n_keys, generator=generator).argsort(dim=1)[:, :n_pairs]  # (B, N)
    values = torch.randint(0, n_values, (batch, n_pairs), generator=generator)  # (B, N)
    which = torch.randint(0, n_pairs, (batch,), generator=generator)  # (B,)
    rows = torch.arange(batch)
    query = keys[rows, which]  # (B,)
    target = values[rows, which]  # (B,)
    pairs = torch.stack([keys, values + n_keys], dim=2).reshape(batch, 2 * n_pairs)  # k_1 v_1 k_2 v_2 …
    tokens = torch.cat([pairs, query[:, None]], dim=1)  # (B, 2N + 1)
    return tokens, target


def recall_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of sequences whose arg-max prediction is the target; ``logits`` (B, n_values)."""
    return float((logits.argmax(dim=-1) == target).float().mean())


def bag_of_values_probs(tokens: torch.Tensor, n_keys: int, n_values: int) -> torch.Tensor:
    """The best prediction that ignores the keys: each value's share among the sequence's N values.

    The query asks for one of the N pairs, each equally likely, so without using the keys the
    probability that value v is the answer is (number of pairs holding v) / N. Returns (B, n_values)
    probabilities; their arg-max is the most frequent value of the sequence.
    """
    values = tokens[:, 1:-1:2] - n_keys  # (B, N) value indices of the pairs
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= n_values):
        raise ValueError("tokens do not follow the associative_recall layout for these n_keys, n_values")
    counts = torch.zeros(values.shape[0], n_values).scatter_add_(1, values, torch.ones(values.shape))
    # $$p(v) = \frac{1}{N} \sum_{i=1}^{N} [v_i = v]$$
    return counts / values.shape[1]  # (B, n_values)


def recall_baselines(tokens: torch.Tensor, target: torch.Tensor, n_keys: int,
                     n_values: int) -> dict[str, tuple[float, float]]:
    """Accuracy and cross-entropy (nats) of the two predictors that use no key → value association.

    ``"chance"``: uniform over the values (accuracy 1/n_values, loss log n_values);
    ``"bag of values"``: :func:`bag_of_values_probs`, the most frequent value of the sequence.
    """
    probs = bag_of_values_probs(tokens, n_keys, n_values)  # (B, n_values); the target always occurs
    rows = torch.arange(len(target))
    bag = (float((probs.argmax(-1) == target).float().mean()), float(-probs[rows, target].log().mean()))
    return {"chance": (1.0 / n_values, math.log(n_values)), "bag of values": bag}


def describe_recall(tokens: torch.Tensor, n_keys: int) -> list[str]:
    """Human-readable tokens of one sequence: keys as ``K3``, values as ``v7``, the query as ``K3?``."""
    names = [f"K{int(t)}" if int(t) < n_keys else f"v{int(t) - n_keys}" for t in tokens]
    names[-1] += "?"
    return names
