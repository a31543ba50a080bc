"""Reference attention against torch's built-ins: every mask kind, Sq != Sk, float32 and float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from course_lib.attention import (
    attention_weights_bytes,
    causal_mask,
    merge_heads,
    online_softmax_attention,
    scale_sweep,
    scaled_dot_product_attention,
    softmax_stats,
    split_heads,
)

DTYPES = [torch.float32, torch.float64]
LENGTHS = [1, 7, 63]
MASKS = ["none", "bool2d", "bool4d", "float2d", "float4d", "causal", "causal+bool"]


def _inputs(B, NH, Sq, Sk, D, DV, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
                 for shape in [(B, NH, Sq, D), (B, NH, Sk, D), (B, NH, Sk, DV)])


def _mask(kind, B, Sq, Sk, dtype, seed=1):
    """A mask of the given kind with at least one allowed key per row (key 0 is always allowed)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (Sq, Sk) if kind.endswith("2d") or kind == "causal+bool" else (B, 1, Sq, Sk)
    allowed = torch.rand(*shape, generator=gen) < 0.6
    allowed[..., 0] = True
    if kind.startswith("bool") or kind == "causal+bool":
        return allowed
    bias = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    return bias.masked_fill(~allowed, -math.inf)


def _call_both(q, k, v, kind, dtype):
    B, _, Sq, _ = q.shape
    Sk = k.shape[-2]
    mask = None if kind in ("none", "causal") else _mask(kind, B, Sq, Sk, dtype)
    causal = kind.startswith("causal")
    return mask, causal


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("S", LENGTHS)
@pytest.mark.parametrize("kind", MASKS)
def test_sdpa_vs_torch(dtype, S, kind):
    for Sq, Sk in [(S, S), (S, S + 3), (S + 2, max(S - 1, 1))]:
        q, k, v = _inputs(2, 3, Sq, Sk, 8, 5, dtype)
        mask, causal = _call_both(q, k, v, kind, dtype)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        assert out.dtype == dtype and weights.dtype == dtype
        assert weights.shape == (2, 3, Sq, Sk)
        # Ground truth in float64 from torch; with v = I the output of attention *is* the weight matrix.
        q64, k64, v64 = q.double(), k.double(), v.double()
        m64 = mask if mask is None or mask.dtype == torch.bool else mask.double()
        if kind == "causal+bool":
            # Both: a key must pass both masks (some torch backends refuse the combination).
            m64, causal = m64 & causal_mask(Sq, Sk), False
        want = F.scaled_dot_product_attention(q64, k64, v64, attn_mask=m64, is_causal=causal)
        eye = torch.eye(Sk, dtype=torch.float64).expand(2, 3, Sk, Sk)
        want_w = F.scaled_dot_product_attention(q64, k64, eye, attn_mask=m64, is_causal=causal)
        assert_close(out, want, name=f"out {kind} Sq={Sq} Sk={Sk}")
        assert_close(weights, want_w, name=f"weights {kind} Sq={Sq} Sk={Sk}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("S", LENGTHS)
@pytest.mark.parametrize("kind", ["none", "bool4d", "float2d", "float4d", "causal"])
def test_sdpa_gradients_vs_torch(dtype, S, kind):
    q, k, v = _inputs(2, 2, S, S + 2, 4, 3, dtype, seed=3)
    mask, causal = _call_both(q, k, v, kind, dtype)
    gen = torch.Generator().manual_seed(9)
    grad_out = torch.randn(2, 2, S, 3, generator=gen, dtype=torch.float64)

    def grads(fn, cast):
        leaves = [t.detach().to(cast).requires_grad_(True) for t in (q, k, v)]
        m = mask
        if mask is not None and mask.is_floating_point():
            m = mask.detach().to(cast).requires_grad_(True)
            leaves.append(m)
        out = fn(*leaves[:3], m)
        return torch.autograd.grad((out.double() * grad_out).sum(), leaves)

    mine = grads(lambda q, k, v, m: scaled_dot_product_attention(q, k, v, m, causal)[0], dtype)
    want = grads(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal),
                 torch.float64)
    for name, a, b in zip(["q", "k", "v", "attn_mask"], mine, want, strict=False):
        assert a.dtype == dtype
        assert_close(a, b, name=f"d/d{name} ({kind}, S={S})")


def test_sdpa_gradients_flow_through_the_returned_weights():
    q, k, v = _inputs(1, 2, 5, 5, 4, 4, torch.float64)
    q.requires_grad_(True)
    _, weights = scaled_dot_product_attention(q, k, v)
    (grad_q,) = torch.autograd.grad((weights * torch.arange(5.0, dtype=torch.float64)).sum(), q)
    assert grad_q.abs().max() > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_custom_scale_and_dv_vs_torch(dtype):
    q, k, v = _inputs(2, 2, 6, 9, 8, 3, dtype)
    out, _ = scaled_dot_product_attention(q, k, v, scale=0.17)
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), scale=0.17)
    assert_close(out, want)


def test_sdpa_float_mask_is_used_in_the_dtype_of_q():
    q, k, v = _inputs(1, 2, 4, 4, 8, 8, torch.float32)
    mask = _mask("float2d", 1, 4, 4, torch.float64)
    out, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out.dtype == torch.float32 and weights.dtype == torch.float32
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    assert_close(out, want)


def test_sdpa_broadcasts_leading_dimensions_like_torch():
    q, k, v = _inputs(2, 3, 5, 6, 4, 4, torch.float64)
    mask = _mask("bool4d", 2, 5, 6, torch.float64)[:, :, :1]  # (B, 1, 1, Sk): a padding mask
    out, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert weights.shape == (2, 3, 5, 6)
    out3, _ = scaled_dot_product_attention(q[0], k[0], v[0])  # (NH, S, D): no batch dimension
    assert_close(out3, F.scaled_dot_product_attention(q[0], k[0], v[0]))


@pytest.mark.parametrize("Sq, Sk", [(1, 1), (4, 4), (3, 7), (7, 3)])
def test_causal_mask_vs_torch_tril(Sq, Sk):
    m = causal_mask(Sq, Sk)
    assert m.dtype == torch.bool
    assert torch.equal(m, torch.ones(Sq, Sk, dtype=torch.bool).tril())
    q, k, v = _inputs(1, 1, Sq, Sk, 4, 4, torch.float64)
    assert_close(scaled_dot_product_attention(q, k, v, attn_mask=m)[0],
                 scaled_dot_product_attention(q, k, v, is_causal=True)[0])


def test_causal_attention_ignores_the_future():
    q, k, v = _inputs(2, 2, 9, 9, 8, 8, torch.float64)
    out, weights = scaled_dot_product_attention(q, k, v, is_causal=True)
    k2, v2 = k.clone(), v.clone()
    k2[..., 5:, :] += 10.0
    v2[..., 5:, :] -= 10.0
    out2, _ = scaled_dot_product_attention(q, k2, v2, is_causal=True)
    assert torch.equal(out[..., :5, :], out2[..., :5, :])
    assert not torch.allclose(out[..., 5:, :], out2[..., 5:, :])
    assert bool((weights.triu(1) == 0).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_are_distributions_over_keys(dtype):
    q, k, v = _inputs(2, 2, 7, 7, 8, 8, dtype)
    _, weights = scaled_dot_product_attention(q, k, v, attn_mask=_mask("float4d", 2, 7, 7, dtype))
    assert bool((weights >= 0).all())
    assert_close(weights.sum(-1), torch.ones(2, 2, 7, dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# Online softmax
# --------------------------------------------------------------------------------------------


def _full_lse(q, k, scale, causal):
    s = (q.double() @ k.double().transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(~causal_mask(q.shape[-2], k.shape[-2]), -math.inf)
    return torch.logsumexp(s, dim=-1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("S", LENGTHS)
@pytest.mark.parametrize("block_size", [1, 3, 16, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_online_softmax_attention_vs_torch(dtype, S, block_size, causal):
    for Sq, Sk in [(S, S), (S, S + 5)]:
        q, k, v = _inputs(2, 2, Sq, Sk, 8, 6, dtype)
        out, lse = online_softmax_attention(q, k, v, block_size, is_causal=causal)
        assert out.dtype == dtype and lse.dtype == dtype and lse.shape == (2, 2, Sq)
        want = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
        assert_close(out, want, name=f"out Sq={Sq} Sk={Sk}")
        assert_close(lse, _full_lse(q, k, 8**-0.5, causal), name=f"lse Sq={Sq} Sk={Sk}")


def test_online_softmax_attention_custom_scale():
    q, k, v = _inputs(1, 2, 7, 7, 8, 8, torch.float64)
    out, lse = online_softmax_attention(q, k, v, 3, scale=0.4)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.4))
    assert_close(lse, _full_lse(q, k, 0.4, False))


def test_online_softmax_attention_survives_scores_that_overflow_exp_in_float32():
    q, k, v = _inputs(1, 1, 16, 16, 8, 8, torch.float32)
    q = q * 20.0
    assert float((q @ k.transpose(-2, -1)).abs().max()) > 100  # exp(100) is inf in float32
    out, lse = online_softmax_attention(q, k, v, 4, scale=1.0)
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), scale=1.0)
    assert_close(out, want)
    assert_close(lse, _full_lse(q, k, 1.0, False), rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_online_softmax_attention_gradients_vs_torch(causal):
    q, k, v = _inputs(1, 2, 7, 7, 4, 4, torch.float64)
    gen = torch.Generator().manual_seed(4)
    grad_out = torch.randn(1, 2, 7, 4, generator=gen, dtype=torch.float64)

    def grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        return torch.autograd.grad((fn(*leaves) * grad_out).sum(), leaves)

    mine = grads(lambda q, k, v: online_softmax_attention(q, k, v, 3, is_causal=causal)[0])
    want = grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    for a, b in zip(mine, want, strict=True):
        assert_close(a, b)


def test_online_softmax_attention_rejects_a_bad_block_size():
    q, k, v = _inputs(1, 1, 3, 3, 4, 4, torch.float64)
    with pytest.raises(ValueError):
        online_softmax_attention(q, k, v, 0)


# --------------------------------------------------------------------------------------------
# Heads, memory, saturation
# --------------------------------------------------------------------------------------------


def test_split_heads_gives_each_head_a_contiguous_slice_and_merge_inverts_it():
    x = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    for h in range(3):
        assert torch.equal(heads[:, h], x[..., 4 * h:4 * (h + 1)])
    assert torch.equal(merge_heads(heads), x)
    with pytest.raises(ValueError):
        split_heads(x, 5)


def test_attention_weights_bytes_is_the_size_of_the_weight_tensor():
    q, k, v = _inputs(2, 3, 7, 11, 4, 4, torch.float32)
    _, weights = scaled_dot_product_attention(q, k, v)
    assert attention_weights_bytes(2, 3, 7, 11, torch.float32) == weights.nelement() * weights.element_size()
    assert attention_weights_bytes(1, 1, 2048, 2048, torch.float64) == 2048 * 2048 * 8


def test_softmax_stats_of_uniform_and_one_hot_scores():
    uniform = softmax_stats(torch.zeros(3, 8, dtype=torch.float64))
    assert_close(uniform["max_weight"], torch.tensor(1 / 8, dtype=torch.float64))
    assert_close(uniform["entropy"], torch.tensor(math.log(8), dtype=torch.float64))
    peaked = softmax_stats(torch.tensor([[1000.0, 0.0, 0.0]], dtype=torch.float64))
    assert_close(peaked["max_weight"], torch.tensor(1.0, dtype=torch.float64))
    assert_close(peaked["entropy"], torch.tensor(0.0, dtype=torch.float64))


def test_scale_sweep_shows_saturation_without_the_scale_only():
    curves = scale_sweep([4, 64, 1024], n_keys=32, n_queries=64)
    raw, scaled = curves["q·k (no scale)"], curves["q·k / √d"]
    assert raw["max_weight"][-1] > 0.9 and raw["entropy"][-1] < 0.3, "unscaled scores saturate the softmax"
    assert raw["grad"][-1] < 0.5 * raw["grad"][0], "and the gradient through it shrinks"
    for key in ("max_weight", "entropy", "grad"):
        values = scaled[key]
        assert max(values) < 1.2 * min(values), f"scaled {key} should not depend on d: {values}"


def test_scale_sweep_grad_q_is_autograd_and_grows_without_the_scale():
    dims = [4, 64, 1024]
    curves = scale_sweep(dims, n_keys=32, n_queries=64)
    raw, scaled = curves["q·k (no scale)"], curves["q·k / √d"]
    # the query's gradient is not small without the scale: ∂s/∂q = k has norm ≈ √d
    assert all(r > 2 * s for r, s in zip(raw["grad_q"][1:], scaled["grad_q"][1:], strict=True))
    # but a typical key gets an exponentially small share, and the temperature runs with √d
    assert raw["grad_typical"][-1] < 1e-10 < scaled["grad_typical"][-1]
    assert abs(raw["score_std"][-1] / math.sqrt(1024) - 1) < 0.1 and abs(scaled["score_std"][-1] - 1) < 0.1
    assert max(scaled["grad_q"]) < 1.2 * min(scaled["grad_q"])
    # grad_q against a float64 computation by hand: ∂L/∂q = scale · Σ_j α_j (u_j − α·u) k_j
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(64, 1, 4, generator=gen, dtype=torch.float64)
    k = torch.randn(64, 32, 4, generator=gen, dtype=torch.float64)
    u = torch.randn(64, 32, generator=gen, dtype=torch.float64)
    for label, scale in (("q·k (no scale)", 1.0), ("q·k / √d", 0.5)):
        a = torch.softmax((q @ k.transpose(-2, -1)).squeeze(1) * scale, -1)
        grad_s = a * (u - (a * u).sum(-1, keepdim=True))
        grad_q = scale * (grad_s.unsqueeze(1) @ k).squeeze(1)
        assert abs(curves[label]["grad_q"][0] - float(grad_q.norm(dim=-1).mean())) < 1e-12
        assert abs(curves[label]["grad"][0] - float(grad_s.norm(dim=-1).mean())) < 1e-12


@pytest.mark.parametrize("scale", [None, 0.7])
def test_attention_score_gradients_vs_autograd(scale):
    from course_lib.attention import attention_score_gradients

    gen = torch.Generator().manual_seed(5)
    q = torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 3, 7, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    s = (q @ k.transpose(-2, -1)) * (0.5 if scale is None else scale)
    s.retain_grad()
    (F.softmax(s, dim=-1) * u).sum().backward()
    grad_s, grad_q, grad_k = attention_score_gradients(q.detach(), k.detach(), u, scale)
    assert_close(grad_s, s.grad)
    assert_close(grad_q, q.grad)
    assert_close(grad_k, k.grad)
