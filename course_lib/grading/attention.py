"""Module 03 graders: the causal mask, scaled dot-product attention, heads, and online softmax."""

from __future__ import annotations

import functools
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from course_lib.attention import reference as ref
from course_lib.grading.core import Grader, as_float64, check_gradients, dtype_name, exercise

SDPA_PARAMS = ["q", "k", "v", "attn_mask", "is_causal", "scale"]
ONLINE_PARAMS = ["q", "k", "v", "block_size", "is_causal", "scale"]


def _qkv(g: Grader, B: int, NH: int, Sq: int, Sk: int, D: int, DV: int, dtype=torch.float64, scale=1.0):
    return (g.randn(B, NH, Sq, D, dtype=dtype, scale=scale), g.randn(B, NH, Sk, D, dtype=dtype, scale=scale),
            g.randn(B, NH, Sk, DV, dtype=dtype))


def _bool_mask(g: Grader, *shape: int) -> torch.Tensor:
    """Random True/False with at least one True per row (a fully masked row is undefined)."""
    mask = g.rand(*shape) < 0.6
    keep = g.randint(0, shape[-1], shape[:-1]).unsqueeze(-1)
    return mask.scatter(-1, keep, True)


def _float_mask(g: Grader, *shape: int, dtype=torch.float64) -> torch.Tensor:
    """Random additive biases with some −inf entries, at least one finite entry per row."""
    blocked = ~_bool_mask(g, *shape)
    return g.randn(*shape, dtype=dtype).masked_fill(blocked, -math.inf)


# --------------------------------------------------------------------------------------------
# causal_mask
# --------------------------------------------------------------------------------------------


@exercise("causal_mask", module="03", title="The causal mask", points=1, difficulty="easy", minutes=5,
          signature="causal_mask(Sq, Sk) -> bool tensor (Sq, Sk), True where query i may attend to key j "
                    "(j <= i, top-left aligned)")
def grade_causal_mask(g: Grader, fn) -> None:
    g.check_signature(fn, ["Sq", "Sk"])
    for Sq, Sk in [(5, 5), (1, 1), (3, 7), (7, 3), (4, 1), (63, 63)]:
        case = f"Sq={Sq}, Sk={Sk}"
        out = g.call(fn, case, Sq, Sk)
        g.expect(isinstance(out, torch.Tensor), "types", f"mask is a tensor ({case})",
                 f"expected a torch.Tensor, got {type(out).__name__}")
        g.expect(out.dtype == torch.bool, "dtype", f"mask is a bool tensor ({case})",
                 f"the mask has dtype {out.dtype}; return a torch.bool tensor (True = may attend), "
                 "the convention of F.scaled_dot_product_attention")
        g.check_tensor(out, ref.causal_mask(Sq, Sk), "mask", case, dtype=torch.bool, tol=dict(atol=0.0, rtol=0.0))


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# --------------------------------------------------------------------------------------------


def _sdpa_cases(g: Grader) -> list[tuple[str, dict, torch.dtype]]:
    cases = []

    def add(label, Sq, Sk, D, DV, dtype=torch.float64, B=2, NH=3, **extra):
        q, k, v = _qkv(g, B, NH, Sq, Sk, D, DV, dtype)
        args = dict(q=q, k=k, v=v, attn_mask=None, is_causal=False, scale=None)
        args.update(extra)
        case = f"q: {tuple(q.shape)}, k: {tuple(k.shape)}, v: {tuple(v.shape)}, {dtype_name(dtype)}, {label}"
        cases.append((case, args, dtype))

    add("no mask", 5, 5, 8, 8)
    add("no mask, Sq != Sk, DV != D", 4, 6, 5, 3, torch.float32)
    add("no mask, S=1", 1, 1, 4, 4, B=1, NH=1)
    add("bool mask (Sq, Sk), True = may attend", 5, 6, 8, 4, attn_mask=_bool_mask(g, 5, 6))
    add("bool mask (B, 1, Sq, Sk)", 4, 7, 8, 8, attn_mask=_bool_mask(g, 2, 1, 4, 7))
    add("float mask (Sq, Sk), added to the scores, with -inf entries", 6, 6, 8, 8,
        attn_mask=_float_mask(g, 6, 6))
    add("float mask (B, 1, Sq, Sk) with -inf entries", 3, 5, 8, 8, torch.float32,
        attn_mask=_float_mask(g, 2, 1, 3, 5, dtype=torch.float32))
    add("is_causal=True", 6, 6, 8, 8, is_causal=True)
    add("is_causal=True, Sq < Sk (top-left aligned)", 3, 7, 8, 8, is_causal=True)
    add("is_causal=True, Sq > Sk (top-left aligned)", 7, 4, 8, 8, is_causal=True)
    add("scale=0.3", 5, 5, 8, 8, scale=0.3)
    add("float32 inputs with a float64 float mask (use the mask in q's dtype)", 4, 4, 8, 8, torch.float32,
        attn_mask=_float_mask(g, 4, 4))
    add("bool mask and is_causal=True together (a key must be allowed by both)", 6, 6, 8, 8,
        attn_mask=_bool_mask(g, 6, 6) | torch.eye(6, dtype=torch.bool), is_causal=True)
    return cases


@exercise("scaled_dot_product_attention", module="03", title="Scaled dot-product attention with masks",
          points=3, difficulty="medium", minutes=25,
          signature="scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None) -> "
                    "(out (B, NH, Sq, DV), weights (B, NH, Sq, Sk)); as F.scaled_dot_product_attention "
                    "(bool mask True = may attend, float mask added, causal top-left aligned, scale 1/sqrt(D))")
def grade_scaled_dot_product_attention(g: Grader, fn) -> None:
    g.check_signature(fn, SDPA_PARAMS)
    for case, args, dtype in _sdpa_cases(g):
        result = g.call(fn, case, **args)
        g.expect_pair(result, "(out, weights)", case)
        out_ref, w_ref = ref.scaled_dot_product_attention(**as_float64(args))
        g.check_tensor(result[0], out_ref, "out", case, dtype=dtype)
        g.check_tensor(result[1], w_ref, "weights", case, dtype=dtype)

    # Gradients reach q, k, v and the float mask, through both outputs (the weights are not detached).
    q, k, v = _qkv(g, 2, 2, 5, 6, 4, 3)
    args = dict(q=q, k=k, v=v, attn_mask=_float_mask(g, 2, 1, 5, 6), is_causal=False, scale=None)
    check_gradients(g, fn, ref.scaled_dot_product_attention, "float mask (B, 1, Sq, Sk), float64", args,
                    wrt=["q", "k", "v", "attn_mask"])
    q, k, v = _qkv(g, 1, 2, 6, 6, 4, 4)
    args = dict(q=q, k=k, v=v, attn_mask=None, is_causal=True, scale=None)
    check_gradients(g, fn, ref.scaled_dot_product_attention, "is_causal=True, float64", args, wrt=["q", "k", "v"])

    # Properties: weights are a distribution over keys; the future has no influence; padding neither.
    q, k, v = _qkv(g, 2, 2, 9, 9, 8, 8)
    case = "q, k, v: (2, 2, 9, 8), float64, is_causal=True"
    out, weights = g.call(fn, case, q, k, v, None, True, None)
    sums = weights.detach().sum(-1)
    g.expect(bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-10)), "properties",
             "every row of the weights sums to 1",
             f"row sums of the weights range from {float(sums.min()):.4g} to {float(sums.max()):.4g}")
    t = 5
    k2, v2 = k.clone(), v.clone()
    k2[..., t:, :] = g.randn(2, 2, 9 - t, 8, scale=3.0)
    v2[..., t:, :] = g.randn(2, 2, 9 - t, 8, scale=3.0)
    out2, _ = g.call(fn, case + ", keys and values after position 4 changed", q, k2, v2, None, True, None)
    diff = float((out2[..., :t, :] - out[..., :t, :]).detach().abs().max())
    g.expect(diff < 1e-10, "properties", "causal: changing future keys and values leaves earlier outputs unchanged",
             f"outputs at positions 0..{t - 1} changed by up to {diff:.3g} when only keys/values at positions "
             f">= {t} changed: the causal mask lets queries see the future")
    lengths = torch.tensor([6, 9])
    pad = (torch.arange(9) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Sk): True on real tokens
    case = "padding mask (B, 1, 1, Sk), float64"
    out, _ = g.call(fn, case, q, k, v, pad, False, None)
    k3, v3 = k.clone(), v.clone()
    k3[0, :, 6:] = g.randn(2, 3, 8, scale=3.0)
    v3[0, :, 6:] = g.randn(2, 3, 8, scale=3.0)
    out3, _ = g.call(fn, case + ", padded keys changed", q, k3, v3, pad, False, None)
    diff = float((out3 - out).detach().abs().max())
    g.expect(diff < 1e-10, "properties", "padding: keys where the mask is False have no influence",
             f"changing keys/values at padded positions changed the output by up to {diff:.3g}")


# --------------------------------------------------------------------------------------------
# split_heads / merge_heads
# --------------------------------------------------------------------------------------------


@exercise("split_heads", module="03", title="Split features into heads", points=1, difficulty="easy", minutes=10,
          signature="split_heads(x, num_heads) -> (B, NH, S, DH) from x (B, S, NH*DH); head h owns the "
                    "features h*DH ... (h+1)*DH - 1")
def grade_split_heads(g: Grader, fn) -> None:
    g.check_signature(fn, ["x", "num_heads"])
    for B, S, E, NH, dtype in [(2, 5, 12, 3, torch.float64), (1, 1, 8, 2, torch.float32),
                               (3, 7, 16, 4, torch.float64), (2, 4, 6, 1, torch.float64), (2, 3, 5, 5, torch.float64)]:
        x = g.randn(B, S, E, dtype=dtype)
        case = f"x: ({B}, {S}, {E}) {dtype_name(dtype)}, num_heads={NH}"
        g.check_tensor(g.call(fn, case, x, NH), ref.split_heads(x.double(), NH), "heads", case, dtype=dtype)
    check_gradients(g, fn, ref.split_heads, "x: (2, 5, 12) float64, num_heads=3",
                    dict(x=g.randn(2, 5, 12), num_heads=3), wrt=["x"])


@exercise("merge_heads", module="03", title="Merge heads back into features", points=1, difficulty="easy",
          minutes=5, signature="merge_heads(x) -> (B, S, NH*DH) from x (B, NH, S, DH); the inverse of split_heads "
                               "(head 0's features first)")
def grade_merge_heads(g: Grader, fn) -> None:
    g.check_signature(fn, ["x"])
    for B, NH, S, DH, dtype in [(2, 3, 5, 4, torch.float64), (1, 2, 1, 4, torch.float32),
                                (3, 4, 7, 2, torch.float64), (2, 1, 4, 6, torch.float64)]:
        x = g.randn(B, NH, S, DH, dtype=dtype)
        case = f"x: ({B}, {NH}, {S}, {DH}) {dtype_name(dtype)}"
        g.check_tensor(g.call(fn, case, x), ref.merge_heads(x.double()), "merged", case, dtype=dtype)
    # A strided input: heads produced by a transpose, as attention hands them over.
    x = g.randn(2, 5, 3, 4).transpose(1, 2)
    case = "x: (2, 3, 5, 4) float64, a non-contiguous view"
    g.check_tensor(g.call(fn, case, x), ref.merge_heads(x), "merged", case)
    check_gradients(g, fn, ref.merge_heads, "x: (2, 3, 5, 4) float64", dict(x=g.randn(2, 3, 5, 4)), wrt=["x"])


# --------------------------------------------------------------------------------------------
# online_softmax_attention
# --------------------------------------------------------------------------------------------


@exercise("online_softmax_attention", module="03", title="Attention by blocks with an online softmax",
          points=3, difficulty="hard", minutes=30,
          signature="online_softmax_attention(q, k, v, block_size, is_causal=False, scale=None) -> "
                    "(out (B, NH, Sq, DV), lse (B, NH, Sq)); keys processed block_size at a time with a running "
                    "max and a rescaled running sum; lse = logsumexp of the scaled (masked) scores")
def grade_online_softmax_attention(g: Grader, fn) -> None:
    g.check_signature(fn, ONLINE_PARAMS)
    cases = [
        # (B, NH, Sq, Sk, D, DV, block, causal, scale, dtype, score scale, label)
        (2, 2, 7, 7, 8, 8, 3, False, None, torch.float64, 1.0, "S not a multiple of block_size"),
        (1, 2, 5, 5, 4, 4, 1, False, None, torch.float64, 1.0, "one key per block"),
        (2, 1, 7, 7, 8, 8, 16, False, None, torch.float64, 1.0, "block_size larger than S"),
        (2, 2, 5, 12, 8, 3, 4, False, None, torch.float32, 1.0, "Sq != Sk, DV != D"),
        (1, 1, 1, 1, 4, 4, 2, False, None, torch.float64, 1.0, "S=1"),
        (2, 2, 9, 9, 8, 8, 4, True, None, torch.float64, 1.0, "is_causal=True"),
        (1, 2, 4, 10, 8, 8, 3, True, None, torch.float64, 1.0, "is_causal=True, Sq < Sk (top-left aligned)"),
        (2, 2, 6, 6, 8, 8, 2, False, 0.5, torch.float64, 1.0, "scale=0.5"),
        (2, 2, 8, 8, 8, 8, 3, False, 1.0, torch.float32, 4.0, "large scores (|s| > 88: exp overflows in float32)"),
    ]
    for B, NH, Sq, Sk, D, DV, block, causal, scale, dtype, s_scale, label in cases:
        q, k, v = _qkv(g, B, NH, Sq, Sk, D, DV, dtype, scale=s_scale)
        case = (f"q: {tuple(q.shape)}, k: {tuple(k.shape)}, v: {tuple(v.shape)}, {dtype_name(dtype)}, "
                f"block_size={block}, {label}")
        result = g.call(fn, case, q, k, v, block, causal, scale)
        g.expect_pair(result, "(out, lse)", case)
        out_ref, lse_ref = _online_reference(q.double(), k.double(), v.double(), block, causal, scale)
        g.check_tensor(result[0], out_ref, "out", case, dtype=dtype)
        g.check_tensor(result[1], lse_ref, "lse", case, dtype=dtype)

    # Gradients only without a causal mask: the exercise is the forward pass, and a correct forward that
    # takes log(0) of a fully masked block gives NaN gradients through autograd.
    q, k, v = _qkv(g, 1, 2, 7, 7, 4, 4)
    check_gradients(g, fn, _online_reference, "q, k, v: (1, 2, 7, 4) float64, block_size=3",
                    dict(q=q, k=k, v=v, block_size=3, is_causal=False, scale=None), wrt=["q", "k", "v"])

    q, k, v = _qkv(g, 2, 2, 11, 11, 8, 8)
    outs = {}
    for block in (1, 2, 5, 11):
        outs[block] = g.call(fn, f"q, k, v: (2, 2, 11, 8) float64, block_size={block}", q, k, v, block, False, None)[0]
    worst = max(float((o - outs[11]).detach().abs().max()) for o in outs.values())
    g.expect(worst < 1e-10, "properties", "the result does not depend on block_size",
             f"outputs for block sizes 1, 2, 5 and 11 differ by up to {worst:.3g}")

    # The point of the exercise: never hold the scores of all keys at once.
    B, NH, Sq, Sk, D, DV, block = 1, 2, 6, 40, 4, 3, 8
    q, k, v = _qkv(g, B, NH, Sq, Sk, D, DV)
    recorder = _WidestScores(Sq)
    case = f"q: {tuple(q.shape)}, k: {tuple(k.shape)}, float64, block_size={block}"
    g.call(recorder.wrap(fn), case, q, k, v, block, False, None)
    g.expect(recorder.widest <= block, "properties", f"works on block_size keys at a time ({case})",
             f"your function computed a floating-point tensor of shape {recorder.widest_shape}: values for "
             f"{recorder.widest} keys of every query at once. An online softmax looks at block_size={block} keys "
             "at a time (k[..., j:j + block_size, :]) and keeps only a running max, sum and output per query")


class _WidestScores(TorchDispatchMode):
    """Records the widest floating-point tensor (..., Sq, n) that any torch operation produces."""

    def __init__(self, Sq: int) -> None:
        super().__init__()
        self.Sq = Sq
        self.widest = 0
        self.widest_shape: tuple[int, ...] = ()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if (isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 2 and t.shape[-2] == self.Sq
                    and t.shape[-1] > self.widest):
                self.widest, self.widest_shape = t.shape[-1], tuple(t.shape)
        return out

    def wrap(self, fn):
        @functools.wraps(fn)
        def recorded(*args, **kwargs):
            # Entered in the thread that runs the learner's function: dispatch modes are per thread.
            with self:
                return fn(*args, **kwargs)
        return recorded


def _online_reference(q, k, v, block_size, is_causal=False, scale=None):
    """The full computation (not blocked): out and lse of softmax(q kᵀ · scale) v."""
    Sq, D = q.shape[-2:]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        scores = scores.masked_fill(~ref.causal_mask(Sq, k.shape[-2]), -math.inf)
    return torch.softmax(scores, dim=-1) @ v, torch.logsumexp(scores, dim=-1)
