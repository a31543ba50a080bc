"""Attention layers: multi-head attention against torch.nn.MultiheadAttention, the block, the tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close
from torch import nn

from course_lib.attention import (
    LSTMTokenModel,
    MultiHeadAttention,
    TinyTransformer,
    TransformerBlock,
    causal_mask,
    count_parameters,
)
from course_lib.attention.layers import lstm_hidden_for
from course_lib.tasks.recall import associative_recall, recall_accuracy
from course_lib.training import TrainConfig, train


def _pair(E, NH, dtype, seed=0):
    """Our layer and torch's with the same weights (torch's: batch_first=True)."""
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(E, NH, batch_first=True, dtype=dtype)
    with torch.no_grad():
        theirs.in_proj_bias.normal_()  # torch initialises the biases to zero, which would hide bugs
        theirs.out_proj.bias.normal_()
    ours = MultiHeadAttention(E, NH).to(dtype)
    with torch.no_grad():
        ours.in_proj.weight.copy_(theirs.in_proj_weight)
        ours.in_proj.bias.copy_(theirs.in_proj_bias)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        ours.out_proj.bias.copy_(theirs.out_proj.bias)
    return ours, theirs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mask", ["none", "causal", "bool", "padding"])
def test_multi_head_attention_vs_torch(dtype, mask):
    B, S, E, NH = 3, 7, 12, 3
    ours, theirs = _pair(E, NH, dtype)
    x = torch.randn(B, S, E, generator=torch.Generator().manual_seed(1), dtype=dtype)
    kwargs_ours, kwargs_theirs = {}, {}
    if mask == "causal":
        kwargs_ours = dict(is_causal=True)
        # torch's boolean masks mean "may NOT attend": the opposite convention.
        kwargs_theirs = dict(attn_mask=~causal_mask(S, S))
    elif mask == "bool":
        allowed = torch.rand(S, S, generator=torch.Generator().manual_seed(2)) < 0.5
        allowed[:, 0] = True
        kwargs_ours, kwargs_theirs = dict(attn_mask=allowed), dict(attn_mask=~allowed)
    elif mask == "padding":
        lengths = torch.tensor([7, 4, 1])
        real = torch.arange(S)[None, :] < lengths[:, None]  # (B, S): True on real tokens
        kwargs_ours = dict(attn_mask=real[:, None, None, :])
        kwargs_theirs = dict(key_padding_mask=~real)
    y, w = ours(x, **kwargs_ours)
    y_ref, w_ref = theirs(x, x, x, need_weights=True, average_attn_weights=False, **kwargs_theirs)
    assert y.dtype == dtype and w.shape == (B, NH, S, S)
    assert_close(y, y_ref.double())
    assert_close(w, w_ref.double())


def test_multi_head_cross_attention_and_gradients_vs_torch():
    B, Sq, Sk, E, NH = 2, 4, 6, 8, 2
    ours, theirs = _pair(E, NH, torch.float64)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, Sq, E, generator=gen, dtype=torch.float64)
    ctx = torch.randn(B, Sk, E, generator=gen, dtype=torch.float64)
    y, _ = ours(x, ctx)
    y_ref, _ = theirs(x, ctx, ctx)
    assert_close(y, y_ref)
    grad = torch.randn(B, Sq, E, generator=gen, dtype=torch.float64)
    g_ours = torch.autograd.grad((y * grad).sum(), [ours.in_proj.weight, ours.out_proj.weight])
    g_ref = torch.autograd.grad((y_ref * grad).sum(), [theirs.in_proj_weight, theirs.out_proj.weight])
    for a, b in zip(g_ours, g_ref, strict=True):
        assert_close(a, b)


def test_multi_head_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError):
        MultiHeadAttention(10, 3)


def test_transformer_block_is_causal():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2).double()
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    y, w = block(x)
    x2 = x.clone()
    x2[:, 5:] += 1.0
    y2, _ = block(x2)
    assert torch.equal(y[:, :5], y2[:, :5])
    assert not torch.allclose(y[:, 5:], y2[:, 5:])
    assert bool((w.triu(1) == 0).all())


def test_tiny_transformer_shapes_and_weights():
    torch.manual_seed(0)
    model = TinyTransformer(vocab_size=10, n_out=4, max_len=9, d_model=16, num_heads=2, num_layers=3)
    tokens = torch.randint(0, 10, (5, 9))
    logits, weights = model(tokens, return_weights=True)
    assert logits.shape == (5, 9, 4)
    assert len(weights) == 3 and all(w.shape == (5, 2, 9, 9) for w in weights)
    assert_close(weights[0].sum(-1), torch.ones(5, 2, 9, dtype=torch.float64), atol=1e-6)
    assert torch.equal(model(tokens), logits)


def test_lstm_hidden_for_matches_the_parameter_count():
    model = TinyTransformer(32, 16, 17)
    n = count_parameters(model)
    hidden = lstm_hidden_for(n, 32, 16, 32)
    lstm = LSTMTokenModel(32, 16, d_embed=32, hidden=hidden)
    assert abs(count_parameters(lstm) - n) / n < 0.02
    assert LSTMTokenModel(32, 16, 32, hidden)(torch.randint(0, 32, (2, 5))).shape == (2, 5, 16)


def test_tiny_transformer_learns_associative_recall():
    """Two pairs, 300 steps: attention finds the matching key (the lecture's experiment, made small)."""
    torch.manual_seed(0)
    model = TinyTransformer(16, 8, 5, d_model=32, num_heads=2, num_layers=2)
    sample = lambda b, g: associative_recall(b, 2, 8, 8, g)
    loss_fn = lambda logits, y: F.cross_entropy(logits[:, -1], y)
    train(model, sample, loss_fn, TrainConfig(steps=300, batch=64, lr=3e-3, seed=0, log_every=100))
    tokens, target = associative_recall(500, 2, 8, 8, torch.Generator().manual_seed(99))
    with torch.no_grad():
        assert recall_accuracy(model(tokens)[:, -1], target) > 0.9
