"""Hopfield layers: the modern Hopfield update as small ``nn.Module``s, built on attention.

- :class:`HopfieldPooling`: a learned state pattern (the query) retrieves from a set of stored
  patterns (the elements of a bag or sequence): one vector per set, a learned, content-based pooling.
- :class:`HopfieldLookup`: learned stored patterns (a memory of ``n_patterns`` rows); every input
  is a state pattern that retrieves from them (a differentiable dictionary look-up).

Both compute Z = softmax(β Q Kᵀ) V with :func:`course_lib.attention.scaled_dot_product_attention`
and ``scale = β`` (default β = 1/√d_k), i.e. one update of the modern Hopfield network of
:mod:`course_lib.hopfield.reference` in the projected space.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course_lib.attention import scaled_dot_product_attention


class HopfieldPooling(nn.Module):
    """Pool a set of vectors (B, N, d_in) into (B, d_out) (or (B, n_queries, d_out)) by retrieval.

    A learned state pattern ξ (``n_queries`` of them) is projected to queries; the set's elements are
    the stored patterns, projected to keys K = Y W_K and values V = K W_V (the Hopfield form, values
    computed from the keys). ``beta=None`` means 1/√d_k.
    """

    def __init__(self, d_in: int, d_k: int = 32, d_out: int | None = None, n_queries: int = 1,
                 beta: float | None = None) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_k) / math.sqrt(d_k))  # learned state patterns
        self.W_K = nn.Linear(d_in, d_k, bias=False)
        self.W_V = nn.Linear(d_k, d_out or d_in, bias=False)
        self.beta = 1.0 / math.sqrt(d_k) if beta is None else beta
        self.n_queries = n_queries

    def forward(self, Y: torch.Tensor, mask: torch.Tensor | None = None, return_weights: bool = False):
        """Y (B, N, d_in), optional bool ``mask`` (B, N) True on real elements → (B, d_out).

        With ``n_queries > 1`` the result is (B, n_queries, d_out). ``return_weights`` adds the
        retrieval weights (B, n_queries, N).
        """
        # $$K = Y W_K,\quad V = K W_V$$
        K = self.W_K(Y)  # (B, N, d_k)
        V = self.W_V(K)  # (B, N, d_out)
        Q = self.query.expand(Y.shape[0], -1, -1)  # (B, n_queries, d_k)
        attn_mask = None if mask is None else mask[:, None, :]  # (B, 1, N)
        # $$Z = \mathrm{softmax}(\beta\, Q K^\top) V$$
        Z, weights = scaled_dot_product_attention(Q, K, V, attn_mask=attn_mask, scale=self.beta)  # (B, nq, d_out)
        Z = Z.squeeze(1) if self.n_queries == 1 else Z
        return (Z, weights) if return_weights else Z


class HopfieldLookup(nn.Module):
    """A learned associative memory: inputs (…, S, d_in) retrieve from ``n_patterns`` learned patterns.

    The stored patterns are parameters (``n_patterns``, d_k); the input is projected to state
    patterns (queries) and the result is softmax(β Q Xᵀ) X W_V. With ``n_steps > 1`` the state
    pattern is updated that many times before the read-out (iterated retrieval).
    """

    def __init__(self, d_in: int, n_patterns: int, d_k: int = 32, d_out: int | None = None,
                 beta: float | None = None, n_steps: int = 1) -> None:
        super().__init__()
        self.W_Q = nn.Linear(d_in, d_k, bias=False)
        self.patterns = nn.Parameter(torch.randn(n_patterns, d_k))  # stored patterns X, learned
        self.W_V = nn.Linear(d_k, d_out or d_in, bias=False)
        self.beta = 1.0 / math.sqrt(d_k) if beta is None else beta
        if n_steps < 1:
            raise ValueError(f"n_steps must be at least 1, got {n_steps}")
        self.n_steps = n_steps

    def forward(self, R: torch.Tensor, return_weights: bool = False):
        """R (…, S, d_in) → (…, S, d_out); ``return_weights`` adds the weights of the last update (…, S, n_patterns)."""
        xi = self.W_Q(R)  # (..., S, d_k) state patterns
        X = self.patterns
        for _ in range(self.n_steps):
            # $$\xi \leftarrow \mathrm{softmax}(\beta\, \xi X^\top) X$$  (attention with keys = values = X)
            xi, weights = scaled_dot_product_attention(xi, X, X, scale=self.beta)
        out = self.W_V(xi)  # (..., S, d_out)
        return (out, weights) if return_weights else out


HopfieldLayer = HopfieldLookup
"""The name the Hopfield-layers paper uses for this layer (learned stored patterns, inputs as queries)."""


class BagClassifier(nn.Module):
    """Embed every instance, pool the bag (Hopfield pooling or the mean), classify: (B, N, d) → logits (B,)."""

    def __init__(self, d: int, pooling: str = "hopfield", hidden: int = 32, beta: float | None = None) -> None:
        super().__init__()
        if pooling not in ("hopfield", "mean", "max"):
            raise ValueError(f"pooling must be 'hopfield', 'mean' or 'max', got {pooling!r}")
        self.pooling = pooling
        self.embed = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.pool = HopfieldPooling(hidden, d_k=hidden, d_out=hidden, beta=beta) if pooling == "hopfield" else None
        self.head = nn.Linear(hidden, 1)

    def forward(self, bags: torch.Tensor) -> torch.Tensor:
        h = self.embed(bags)  # (B, N, hidden)
        if self.pooling == "hopfield":
            z = self.pool(h)  # (B, hidden)
        elif self.pooling == "mean":
            z = h.mean(dim=1)
        else:
            z = h.amax(dim=1)
        return self.head(z).squeeze(-1)  # (B,)
