"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology"; xLSTM §4.1), generated from a seed.

A sequence lists ``n_pairs`` key–value pairs, then asks for ``n_queries`` of the keys again::

    k_1 v_1 k_2 v_2 … k_N v_N  q_1 q_2 … q_Q        at q_j the answer is the v_i with k_i = q_j

Unlike single-query recall (:mod:`course_lib.tasks.recall`), every query position is scored, so a
model must keep *all* pairs available at once, and answer several look-ups in a row from the same
memory. Keys are distinct within a sequence (drawn from ``n_keys`` key tokens); values are drawn
with replacement from ``n_values`` value tokens; queries are drawn with replacement from the
sequence's keys. Token ids: keys 0 … n_keys − 1, values n_keys … n_keys + n_values − 1. Targets
are value indices 0 … n_values − 1 at query positions and ``IGNORE`` (−100, the default
``ignore_index`` of ``F.cross_entropy``) elsewhere.

Chance is 1/n_values. The best guess that ignores the keys predicts the sequence's most frequent
value (:func:`mqar_baselines`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def mqar_vocab_size(n_keys: int, n_values: int) -> int:
    """Number of distinct tokens in :func:`mqar` sequences."""
    return n_keys + n_values


def mqar(batch: int, n_pairs: int, n_queries: int, n_keys: int = 16, n_values: int = 16,
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``tokens`` (batch, 2·n_pairs + n_queries) int64 and ``targets`` of the same shape.

    ``targets`` holds the value index at every query position and ``IGNORE`` elsewhere.
    """
    if not 1 <= n_pairs <= n_keys:
        raise ValueError(f"need 1 <= n_pairs <= n_keys, got n_pairs={n_pairs}, n_keys={n_keys}")
    if n_queries < 1 or n_values < 1 or batch < 1:
        raise ValueError(f"batch, n_queries and n_values must be positive, got {batch}, {n_queries}, {n_values}")
    keys = torch.rand(batch, n_keys, generator=generator).argsort(dim=1)[:, :n_pairs]  # (B, N) distinct
    values = torch.randint(0, n_values, (batch, n_pairs), generator=generator)  # (B, N)
    which = torch.randint(0, n_pairs, (batch, n_queries), generator=generator)  # (B, Q) which pair is asked
    queries = keys.gather(1, which)  # (B, Q)
    answers = values.gather(1, which)  # (B, Q)
    pairs = torch.stack([keys, values + n_keys], dim=2).reshape(batch, 2 * n_pairs)  # k_1 v_1 k_2 v_2 …
    tokens = torch.cat([pairs, queries], dim=1)  # (B, 2N + Q)
    targets = torch.full_like(tokens, IGNORE)
    targets[:, 2 * n_pairs:] = answers
    return tokens, targets


def mqar_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the query positions only; logits (B, S, n_values), targets (B, S)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


@torch.no_grad()
def mqar_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of query positions whose arg-max prediction is the answer."""
    scored = targets != IGNORE
    return float((logits.argmax(dim=-1)[scored] == targets[scored]).float().mean())


def mqar_baselines(tokens: torch.Tensor, targets: torch.Tensor, n_keys: int, n_values: int) -> dict[str, float]:
    """Accuracy of the predictors that use no key → value association.

    ``"chance"``: 1/n_values. ``"most frequent value"``: answer every query with the value that
    occurs most often among the sequence's pairs (ties broken towards the smaller index).
    """
    n_pairs = int((targets[0] == IGNORE).sum()) // 2
    values = tokens[:, 1:2 * n_pairs:2] - n_keys  # (B, N)
    counts = torch.zeros(len(values), n_values).scatter_add_(1, values, torch.ones(values.shape))
    guess = counts.argmax(dim=1, keepdim=True)  # (B, 1)
    scored = targets[:, 2 * n_pairs:]
    return {"chance": 1.0 / n_values, "most frequent value": float((scored == guess).float().mean())}
