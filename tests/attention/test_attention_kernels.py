"""The flash-attention Triton kernels against float64 PyTorch (through the interpreter on a CPU).

Shapes are chosen so that no sequence length is a multiple of the tiles (16 in the interpreter,
64/128 on a GPU): S in {1, 7, 63, 97}, so a missing load or store mask shows up.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close

from course_lib._triton import kernel_device
from course_lib.attention import kernels
from course_lib.attention.kernels import flash_attention

FLOAT32_ULP_AT_1 = torch.finfo(torch.float32).eps

# (B, NH, Sq, Sk, D, DV)
SHAPES = [(1, 1, 1, 1, 16, 16), (2, 3, 7, 7, 16, 16), (1, 2, 63, 63, 32, 16), (1, 1, 97, 97, 16, 32),
          (2, 1, 7, 40, 16, 16), (1, 2, 40, 7, 16, 24)]


def _qkv(B, NH, Sq, Sk, D, DV, dtype=torch.float64, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype).to(kernel_device())

    return randn(B, NH, Sq, D), randn(B, NH, Sk, D), randn(B, NH, Sk, DV)


def _reference(q, k, v, is_causal, scale=None):
    """Plain float64 attention: (out, lse), causal top-left aligned."""
    q, k, v = (t.detach().double().cpu().requires_grad_(True) for t in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        s = s.masked_fill(~torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(), -math.inf)
    out, lse = torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)
    return out, lse.detach(), (q, k, v)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_flash_attention_forward_vs_reference_float64(shape, is_causal):
    q, k, v = _qkv(*shape)
    out, lse = flash_attention(q, k, v, is_causal=is_causal)
    ref_out, ref_lse, _ = _reference(q, k, v, is_causal)
    assert out.dtype == torch.float64 and lse.dtype == torch.float32
    assert_close(out.cpu(), ref_out, name="out")
    assert_close(lse.cpu(), ref_lse.float(), name="lse")


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES[1:4], ids=lambda s: "x".join(map(str, s)))
def test_flash_attention_backward_vs_autograd_float64(shape, is_causal):
    q, k, v = (t.requires_grad_(True) for t in _qkv(*shape, seed=1))
    out, _ = flash_attention(q, k, v, is_causal=is_causal)
    ref_out, _, ref_leaves = _reference(q, k, v, is_causal)
    grad = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mine = torch.autograd.grad((out * grad.to(out.device)).sum(), (q, k, v))
    theirs = torch.autograd.grad((ref_out * grad).sum(), ref_leaves)
    for name, a, b in zip(("dq", "dk", "dv"), mine, theirs, strict=True):
        assert_close(a.cpu(), b, name=name)


@pytest.mark.parametrize("is_causal", [False, True])
def test_flash_attention_float32_within_twice_torch_error(is_causal):
    """The kernel's float32 error against float64 is at most ~2x that of plain PyTorch in float32."""
    q, k, v = _qkv(2, 2, 63, 97, 32, 32, dtype=torch.float32, seed=3, scale=1.5)
    ref_out = _reference(q, k, v, is_causal)[0].detach()
    out, _ = flash_attention(q, k, v, is_causal=is_causal)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(32)
    if is_causal:
        scores = scores.masked_fill(~torch.ones(63, 97, dtype=torch.bool, device=q.device).tril(), -math.inf)
    plain = torch.softmax(scores, -1) @ v
    kernel_err = float((out.cpu().double() - ref_out).abs().max())
    torch_err = float((plain.cpu().double() - ref_out).abs().max())
    assert out.dtype == torch.float32
    assert kernel_err <= 2 * torch_err + FLOAT32_ULP_AT_1, (kernel_err, torch_err)


def test_flash_attention_writes_every_output_element(monkeypatch):
    """Poison the output buffers with NaN: any row the store mask forgets stays NaN."""
    real_empty = torch.empty

    def poisoned_empty(*shape, **kw):
        out = real_empty(*shape, **kw)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(kernels.torch, "empty", poisoned_empty)
    q, k, v = _qkv(1, 2, 97, 63, 16, 24, seed=4)
    out, lse = flash_attention(q, k, v, is_causal=True)
    monkeypatch.undo()
    assert bool(torch.isfinite(out).all()), f"{int((~torch.isfinite(out)).sum())} output elements never written"
    assert bool(torch.isfinite(lse).all()), f"{int((~torch.isfinite(lse)).sum())} lse entries never written"


def test_flash_attention_accepts_strided_views_and_a_scale():
    q, k, v = _qkv(2, 7, 3, 3, 16, 16, seed=5)  # laid out (B, S, NH, D), viewed as (B, NH, S, D)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    assert not q.is_contiguous()
    out, lse = flash_attention(q, k, v, is_causal=True, scale=0.3)
    ref_out, ref_lse, _ = _reference(q, k, v, True, scale=0.3)
    assert_close(out.cpu(), ref_out, name="out")
    assert_close(lse.cpu(), ref_lse.float(), name="lse")


def test_flash_attention_large_scores_do_not_overflow_in_float32():
    q, k, v = _qkv(1, 1, 20, 20, 16, 16, dtype=torch.float32, seed=6, scale=12.0)  # |scores| in the hundreds
    out, lse = flash_attention(q, k, v)
    ref_out, ref_lse, _ = _reference(q, k, v, False)
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(lse).all())
    assert_close(out.cpu(), ref_out.float(), atol=1e-4, rtol=1e-3, name="out")


@pytest.mark.parametrize("bad", ["rank", "head dims", "dtypes"])
def test_flash_attention_rejects_bad_inputs_with_a_clear_message(bad):
    q, k, v = _qkv(1, 1, 4, 4, 16, 16)
    if bad == "rank":
        q = q[0]
    elif bad == "head dims":
        k = k[..., :8]
    else:
        v = v.float()
    with pytest.raises(ValueError, match="q, k, v|incompatible"):
        flash_attention(q, k, v)


@pytest.mark.parametrize("is_causal", [False, True])
def test_flash_attention_gradient_through_lse_vs_autograd_float64(is_causal):
    q, k, v = (t.requires_grad_(True) for t in _qkv(1, 2, 37, 21, 16, 16, seed=7))
    out, lse = flash_attention(q, k, v, is_causal=is_causal)
    ref_out, _, ref_leaves = _reference(q, k, v, is_causal)
    rq, rk, rv = ref_leaves
    s = (rq @ rk.transpose(-2, -1)) / 4.0
    if is_causal:
        s = s.masked_fill(~torch.ones(37, 21, dtype=torch.bool).tril(), -math.inf)
    gen = torch.Generator().manual_seed(8)
    w_out = torch.randn(ref_out.shape, generator=gen, dtype=torch.float64)
    # lse is float32 by contract, so its incoming gradient is float32: use weights that float32 holds exactly.
    w_lse = torch.randn(1, 2, 37, generator=gen, dtype=torch.float64).float().double()
    mine = torch.autograd.grad((out * w_out).sum() + (lse.double() * w_lse).sum(), (q, k, v))
    theirs = torch.autograd.grad((ref_out * w_out).sum() + (torch.logsumexp(s, -1) * w_lse).sum(), ref_leaves)
    for name, a, b in zip(("dq", "dk", "dv"), mine, theirs, strict=True):
        assert_close(a.cpu(), b, name=name)
