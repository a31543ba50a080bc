"""Associative recall: look a key up in the sequence and answer with the value stored next to it.

A sequence lists ``n_pairs`` key–value pairs, then repeats one of the keys (the query)::

    k_1 v_1 k_2 v_2 … k_N v_N q        target: the v_i with k_i = q

Keys are distinct within a sequence and drawn from ``n_keys`` key tokens; values are drawn with
replacement from ``n_values`` value tokens. Token ids: keys 0 … n_keys − 1, values n_keys …
n_keys + n_values − 1; the target is the value's index in 0 … n_values − 1. Guessing gives
1/n_values. The answer can sit anywhere in the sequence, so a model must keep every pair (a
recurrent state of fixed size) or look back at all of them (attention).
"""

from __future__ import annotations

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


def describe_recall(tokens: torch.Tensor, n_keys: int) -> list[str]:
    """Human-readable tokens of one sequence: keys as ``K3``, values as ``v7``, the query as ``K3?``."""
    names = [f"K{int(t)}" if int(t) < n_keys else f"v{int(t) - n_keys}" for t in tokens]
    names[-1] += "?"
    return names
