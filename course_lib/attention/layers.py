"""Attention as layers: multi-head attention, a pre-norm transformer block, a tiny causal model.

``MultiHeadAttention`` keeps ``torch.nn.MultiheadAttention``'s parameter layout (one ``in_proj`` of
shape (3E, E) stacking q, k, v; one ``out_proj``), so its weights can be copied across and the
outputs compared. Masks follow :func:`course_lib.attention.scaled_dot_product_attention`
(True = may attend), the opposite of ``nn.MultiheadAttention``'s convention.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.attention.reference import merge_heads, scaled_dot_product_attention, split_heads


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with ``num_heads`` heads of size ``embed_dim // num_heads``."""

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, x, context=None, attn_mask=None, is_causal=False):
        """x (B, Sq, E) attends to ``context`` (B, Sk, E) (default: x itself).

        Returns ``(y (B, Sq, E), weights (B, NH, Sq, Sk))``.
        """
        context = x if context is None else context
        E = self.embed_dim
        w, b = self.in_proj.weight, self.in_proj.bias
        bq, bk, bv = (None, None, None) if b is None else b.split(E)
        # 1. Project: q = x W_qᵀ, k = c W_kᵀ, v = c W_vᵀ (the three row blocks of in_proj).
        q = nn.functional.linear(x, w[:E], bq)  # (B, Sq, E)
        k = nn.functional.linear(context, w[E:2 * E], bk)  # (B, Sk, E)
        v = nn.functional.linear(context, w[2 * E:], bv)  # (B, Sk, E)
        # 2. Split into heads, attend in every head at once.
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))  # (B, NH, S, DH)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        # 3. Concatenate the heads and mix them.
        y = self.out_proj(merge_heads(out))  # (B, Sq, E)
        return y, weights


class TransformerBlock(nn.Module):
    """Pre-norm block: x + MHA(LN(x)), then x + MLP(LN(x)), with a causal mask by default."""

    def __init__(self, d_model: int, num_heads: int, mlp_ratio: int = 4, causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))

    def forward(self, x, attn_mask=None):
        """x (B, S, E) -> (x (B, S, E), weights (B, NH, S, S))."""
        a, weights = self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=self.causal)
        x = x + a
        x = x + self.mlp(self.norm2(x))
        return x, weights


class TinyTransformer(nn.Module):
    """Token and learned position embeddings, ``num_layers`` causal pre-norm blocks, a linear head.

    ``forward(tokens)`` maps (B, S) integer tokens to logits (B, S, n_out), one prediction per
    position; a classifier reads the last one.
    """

    def __init__(self, vocab_size: int, n_out: int, max_len: int, d_model: int = 32, num_heads: int = 2,
                 num_layers: int = 2, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, mlp_ratio) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_out)

    def forward(self, tokens, return_weights=False):
        """tokens (B, S) -> logits (B, S, n_out), plus a list of per-layer weights (B, NH, S, S) if asked."""
        S = tokens.shape[1]
        x = self.embed(tokens) + self.pos(torch.arange(S, device=tokens.device))  # (B, S, E)
        all_weights = []
        for block in self.blocks:
            x, weights = block(x)
            all_weights.append(weights)
        logits = self.head(self.norm(x))  # (B, S, n_out)
        return (logits, all_weights) if return_weights else logits


class LSTMTokenModel(nn.Module):
    """The recurrent baseline: token embedding, one ``nn.LSTM`` layer, a linear head at every step."""

    def __init__(self, vocab_size: int, n_out: int, d_embed: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_embed)
        self.lstm = nn.LSTM(d_embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, tokens):
        """tokens (B, S) -> logits (B, S, n_out)."""
        out, _ = self.lstm(self.embed(tokens))  # (B, S, H)
        return self.head(out)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lstm_hidden_for(n_params: int, vocab_size: int, n_out: int, d_embed: int) -> int:
    """The hidden size at which :class:`LSTMTokenModel` has closest to ``n_params`` parameters."""
    def size(h: int) -> int:
        # embedding + LSTM (4 gates: weights on input and state, two bias vectors) + head
        return vocab_size * d_embed + 4 * h * (d_embed + h) + 8 * h + h * n_out + n_out

    return min(range(1, 4 * int(n_params**0.5) + 8), key=lambda h: abs(size(h) - n_params))


class CharTransformer(nn.Module):
    """A causal :class:`TinyTransformer` as a character language model for the shared path of ``course_lib.lm``.

    Logits (B, S, V) for ids (B, S), one next-character prediction per position. Positions are
    learned up to ``max_len``; a longer input is cut to its last ``max_len`` characters (as when
    sampling with a long context), and the logits then cover those positions only. ``hparams``
    holds the constructor's arguments, so a checkpoint can rebuild the model.
    """

    def __init__(self, vocab_size: int, d_model: int = 56, num_heads: int = 4, num_layers: int = 2,
                 mlp_ratio: int = 4, max_len: int = 128) -> None:
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, d_model=d_model, num_heads=num_heads, num_layers=num_layers,
                            mlp_ratio=mlp_ratio, max_len=max_len)
        self.max_len = max_len
        self.net = TinyTransformer(vocab_size, vocab_size, max_len=max_len, d_model=d_model, num_heads=num_heads,
                                   num_layers=num_layers, mlp_ratio=mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, -self.max_len:])  # (B, min(S, max_len), V)
