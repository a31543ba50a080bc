"""Module 03 graders: the causal mask, scaled dot-product attention, heads, and online softmax."""

from __future__ import annotations

import functools
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from course_lib.attention import reference as ref
from course_lib.grading.core import Grader, as_float64, check_gradients, dtype_name, exercise, mistake

SDPA_PARAMS = ["q", "k", "v", "attn_mask", "is_causal", "scale"]
# The statement of module 03 says: do not call F.scaled_dot_product_attention, nn.MultiheadAttention or
# course_lib.attention.
ATTENTION_BUILTINS = {
    "course_lib.attention": "the exercise is to write attention yourself; course_lib.attention is the course's "
                            "reference implementation",
    "scaled_dot_product_attention": "the exercise is to write attention yourself; "
                                    "F.scaled_dot_product_attention does it for you",
    "multi_head_attention": "the exercise is to write attention yourself; nn.MultiheadAttention does it for you",
}
COURSE_REFERENCE = {"course_lib.attention": "the exercise is to write it yourself; course_lib.attention is the "
                                            "course's reference implementation"}
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


def _tri(Sq, Sk, diagonal):
    return torch.ones(Sq, Sk, dtype=torch.bool).tril(diagonal)


@mistake("causal_mask", "the upper triangle is kept (triu): True marks the later keys instead of the earlier ones")
def _mask_triu(Sq, Sk):
    return torch.ones(Sq, Sk, dtype=torch.bool).triu()


@mistake("causal_mask", "the meaning is inverted: True marks the keys a query may not see (nn.MultiheadAttention's "
         "convention, the opposite of F.scaled_dot_product_attention's)")
def _mask_inverted(Sq, Sk):
    return ~_tri(Sq, Sk, 0)


@mistake("causal_mask", "the causal mask is off by one: it lets a query see the next key (tril(1) instead of tril())")
def _mask_next_key(Sq, Sk):
    return _tri(Sq, Sk, 1)


@mistake("causal_mask", "the causal mask is off by one: the diagonal is left out (tril(-1)), so a query cannot see "
         "its own key")
def _mask_no_diagonal(Sq, Sk):
    return _tri(Sq, Sk, -1)


@mistake("causal_mask", "the triangle is anchored at the bottom-right corner (tril(Sk - Sq)) instead of the top-left")
def _mask_bottom_right(Sq, Sk):
    return _tri(Sq, Sk, Sk - Sq)


@mistake("causal_mask", "every entry is True: nothing is masked")
def _mask_all_true(Sq, Sk):
    return torch.ones(Sq, Sk, dtype=torch.bool)


def _mask_notes(out: torch.Tensor) -> list[str]:
    """What a wrong bool mask does, in words: sees later keys, hides allowed ones."""
    Sq, Sk = out.shape[-2:]
    later = out & ~ref.causal_mask(Sq, Sk)
    hidden = ~out & ref.causal_mask(Sq, Sk)
    notes = []
    if bool(later.any()):
        notes.append(f"the mask lets a query see later keys: True above the diagonal at {int(later.sum())} places")
    if bool(hidden.any()):
        notes.append(f"the mask hides keys a query may see: False on or below the diagonal at {int(hidden.sum())} "
                     "places")
    return notes


@exercise("causal_mask", module="03", title="The causal mask", points=1, difficulty="easy", minutes=5,
          signature="causal_mask(Sq, Sk) -> bool tensor (Sq, Sk), True where query i may attend to key j "
                    "(j <= i, top-left aligned)")
def grade_causal_mask(g: Grader, fn) -> None:
    g.check_signature(fn, ["Sq", "Sk"])
    records = []
    for Sq, Sk in [(5, 5), (1, 1), (3, 7), (7, 3), (4, 1), (63, 63)]:
        case = f"Sq={Sq}, Sk={Sk}"
        out, record = g.call_recording(fn, case, Sq, Sk, operators=False)
        records.append(record)
        g.expect(isinstance(out, torch.Tensor), "types", f"mask is a tensor ({case})",
                 f"expected a torch.Tensor, got {type(out).__name__}")
        g.expect(out.dtype == torch.bool, "dtype", f"mask is a bool tensor ({case})",
                 f"the mask has dtype {out.dtype}; return a torch.bool tensor (True = may attend), "
                 "the convention of F.scaled_dot_product_attention")
        g.check_tensor(out, ref.causal_mask(Sq, Sk), "mask", case, dtype=torch.bool, tol=dict(atol=0.0, rtol=0.0),
                       args=dict(Sq=Sq, Sk=Sk), notes=lambda out=out: _mask_notes(out))
    g.forbid(records, COURSE_REFERENCE, "every case")


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


def _sdpa_variant(q, k, v, attn_mask=None, is_causal=False, scale=None, *, scaling="right", dim=-1, causal_diag=0,
                  anchor="top_left", causal_kind="tril", bool_mask="before", float_mask="add", combine="both",
                  transpose_weights=False):
    """Attention with switches: each catalogued mistake is one switch away from the right computation."""
    Sq, D = q.shape[-2:]
    Sk = k.shape[-2]
    factor = {"right": D**-0.5 if scale is None else scale, "none": 1.0, "by_d": 1.0 / D if scale is None else scale,
              "ignore_custom": D**-0.5, "divide_custom": D**-0.5 if scale is None else 1.0 / scale}[scaling]
    s = (q @ k.transpose(-2, -1)) * factor
    causal = torch.ones(Sq, Sk, dtype=torch.bool)
    causal = causal.triu() if causal_kind == "triu" else causal.tril(causal_diag + (Sk - Sq if anchor == "bottom_right"
                                                                                    else 0))
    use_causal = is_causal and causal_kind != "ignored" and not (combine == "mask_only" and attn_mask is not None)
    use_mask = attn_mask is not None and not (combine == "causal_only" and is_causal)
    after = None
    if use_mask and attn_mask.dtype == torch.bool:
        allowed = causal | attn_mask if (combine == "either" and use_causal) else attn_mask
        if combine == "either" and use_causal:
            use_causal = False
        if bool_mask == "before":
            s = s.masked_fill(~allowed, -math.inf)
        elif bool_mask == "inverted":
            s = s.masked_fill(allowed, -math.inf)
        elif bool_mask == "after":
            after = allowed
    elif use_mask:
        if float_mask == "add":
            s = s + attn_mask.to(q.dtype)
        elif float_mask == "multiply":
            s = s * attn_mask.to(q.dtype)
    if use_causal:
        s = s.masked_fill(~causal, -math.inf)
    w = torch.softmax(s, dim=dim)
    if after is not None:
        w = w * after
    return w @ v, (w.transpose(-2, -1) if transpose_weights else w)


_SDPA_MISTAKES = [
    ("the scores are not scaled: the factor 1/√D is missing", dict(scaling="none")),
    ("the scores are divided by D instead of √D", dict(scaling="by_d")),
    ("the scale argument is ignored: the scores are always multiplied by 1/√D", dict(scaling="ignore_custom")),
    ("the scores are divided by scale instead of multiplied by it", dict(scaling="divide_custom")),
    ("the softmax runs over the queries (dim=-2) instead of over the keys (the last axis)", dict(dim=-2)),
    ("the bool mask is applied after the softmax: blocked weights are set to 0 but the rows are not renormalised, "
     "so they no longer sum to 1", dict(bool_mask="after")),
    ("the bool mask is inverted: True is treated as blocked (nn.MultiheadAttention's convention) instead of "
     "'may attend'", dict(bool_mask="inverted")),
    # Checked before the 'ignored' entries: in the case with both masks they give the same output.
    ("with attn_mask and is_causal together, only attn_mask is applied (a key must be allowed by both)",
     dict(combine="mask_only")),
    ("with attn_mask and is_causal together, only the causal mask is applied (a key must be allowed by both)",
     dict(combine="causal_only")),
    ("with attn_mask and is_causal together, a key allowed by either mask is attended (it must be allowed by both)",
     dict(combine="either")),
    ("the bool mask is ignored", dict(bool_mask="ignored")),
    ("the float mask multiplies the scores instead of being added to them", dict(float_mask="multiply")),
    ("the float mask is ignored", dict(float_mask="ignored")),
    ("is_causal=True is ignored: no causal mask is applied", dict(causal_kind="ignored")),
    ("the causal mask is off by one: it lets a query see the next key (tril(1) instead of tril())",
     dict(causal_diag=1)),
    ("the causal mask is off by one: the diagonal is left out (tril(-1)), so a query cannot see its own key and "
     "query 0 sees no key at all (NaN)", dict(causal_diag=-1)),
    ("the causal triangle is anchored at the bottom-right corner (tril(Sk - Sq)) instead of the top-left",
     dict(anchor="bottom_right")),
    ("the causal mask keeps the later keys (triu) instead of the earlier ones", dict(causal_kind="triu")),
    ("the weights are returned transposed: (keys, queries) instead of (queries, keys)", dict(transpose_weights=True)),
]
for _description, _switches in _SDPA_MISTAKES:
    def _wrong_sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None, _s=_switches):
        return _sdpa_variant(q, k, v, attn_mask, is_causal, scale, **_s)

    _wrong_sdpa.__name__ = _wrong_sdpa.__qualname__ = "sdpa_" + "_".join(f"{k}_{v}" for k, v in _switches.items())
    mistake("scaled_dot_product_attention", _description)(_wrong_sdpa)


def _sdpa_notes(result, args) -> list[str]:
    """Properties of the learner's weights that point at a mistake: row sums, causality, masked keys."""
    w = result[1].detach().double()
    notes = []
    sums = w.sum(-1)
    if not bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-4)):
        notes.append(f"rows of your weights sum to between {float(sums.min()):.3g} and {float(sums.max()):.3g}, "
                     "not 1: the softmax must run over the keys, after every mask")
    Sq, Sk = w.shape[-2:]
    if args["is_causal"] and bool((w.abs() > 1e-6).masked_select(~ref.causal_mask(Sq, Sk)).any()):
        notes.append("your weights are non-zero above the diagonal: with is_causal=True a query sees later keys")
    mask = args["attn_mask"]
    if mask is not None and mask.dtype == torch.bool:
        blocked = ~mask.expand(w.shape)
        if bool((w.abs() > 1e-6).masked_select(blocked).any()):
            notes.append("your weights are non-zero where the bool mask is False (False = blocked)")
    return notes


@exercise("scaled_dot_product_attention", module="03", title="Scaled dot-product attention with masks",
          points=3, difficulty="medium", minutes=25,
          signature="scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None) -> "
                    "(out (B, NH, Sq, DV), weights (B, NH, Sq, Sk)); as F.scaled_dot_product_attention "
                    "(bool mask True = may attend, float mask added, causal top-left aligned, scale 1/sqrt(D))")
def grade_scaled_dot_product_attention(g: Grader, fn) -> None:
    g.check_signature(fn, SDPA_PARAMS)
    records = []
    for case, args, dtype in _sdpa_cases(g):
        result, record = g.call_recording(fn, case, **args, operators=False)
        records.append(record)
        g.check_outputs(result, ref.scaled_dot_product_attention(**as_float64(args)), ("out", "weights"), case,
                        dtype=dtype, args=args, notes=lambda result=result, args=args: _sdpa_notes(result, args))

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
    g.forbid(records, ATTENTION_BUILTINS, "every case")


# --------------------------------------------------------------------------------------------
# split_heads / merge_heads
# --------------------------------------------------------------------------------------------


@mistake("split_heads", "x is reshaped straight to (B, NH, S, DH) without the transpose: the right shape, but each "
         "'head' holds a slice of the flattened sequence instead of features h*DH ... (h+1)*DH - 1")
def _split_no_transpose(x, num_heads):
    return x.reshape(x.shape[0], num_heads, x.shape[1], -1)


@mistake("split_heads", "the features are dealt out to the heads in turn (interleaved: head h gets features h, "
         "h + NH, ...) instead of in contiguous blocks of DH")
def _split_interleaved(x, num_heads):
    return x.reshape(*x.shape[:2], -1, num_heads).permute(0, 3, 1, 2)


@mistake("split_heads", "the heads come out in reverse order (head 0 holds the last DH features)")
def _split_reversed(x, num_heads):
    return x.reshape(*x.shape[:2], num_heads, -1).flip(2).transpose(1, 2)


@exercise("split_heads", module="03", title="Split features into heads", points=1, difficulty="easy", minutes=10,
          signature="split_heads(x, num_heads) -> (B, NH, S, DH) from x (B, S, NH*DH); head h owns the "
                    "features h*DH ... (h+1)*DH - 1")
def grade_split_heads(g: Grader, fn) -> None:
    g.check_signature(fn, ["x", "num_heads"])
    records = []
    for B, S, E, NH, dtype in [(2, 5, 12, 3, torch.float64), (1, 1, 8, 2, torch.float32),
                               (3, 7, 16, 4, torch.float64), (2, 4, 6, 1, torch.float64), (2, 3, 5, 5, torch.float64)]:
        x = g.randn(B, S, E, dtype=dtype)
        case = f"x: ({B}, {S}, {E}) {dtype_name(dtype)}, num_heads={NH}"
        out, record = g.call_recording(fn, case, x, NH, operators=False)
        records.append(record)
        g.check_tensor(out, ref.split_heads(x.double(), NH), "heads", case, dtype=dtype, args=dict(x=x, num_heads=NH))
    check_gradients(g, fn, ref.split_heads, "x: (2, 5, 12) float64, num_heads=3",
                    dict(x=g.randn(2, 5, 12), num_heads=3), wrt=["x"])
    g.forbid(records, COURSE_REFERENCE, "every case")


@mistake("merge_heads", "the heads are merged without transposing back first: (B, NH, S, DH) reshaped straight to "
         "(B, S, NH*DH) mixes positions and heads")
def _merge_no_transpose(x):
    return x.reshape(x.shape[0], x.shape[2], -1)


@mistake("merge_heads", "the heads are merged in the wrong order: the features are interleaved (feature d of every "
         "head, then feature d + 1, ...) instead of head 0's block first")
def _merge_interleaved(x):
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)


@mistake("merge_heads", "the heads are merged in reverse order (the last head's features first)")
def _merge_reversed(x):
    return x.transpose(1, 2).flip(2).reshape(x.shape[0], x.shape[2], -1)


@exercise("merge_heads", module="03", title="Merge heads back into features", points=1, difficulty="easy",
          minutes=5, signature="merge_heads(x) -> (B, S, NH*DH) from x (B, NH, S, DH); the inverse of split_heads "
                               "(head 0's features first)")
def grade_merge_heads(g: Grader, fn) -> None:
    g.check_signature(fn, ["x"])
    records = []
    for B, NH, S, DH, dtype in [(2, 3, 5, 4, torch.float64), (1, 2, 1, 4, torch.float32),
                                (3, 4, 7, 2, torch.float64), (2, 1, 4, 6, torch.float64)]:
        x = g.randn(B, NH, S, DH, dtype=dtype)
        case = f"x: ({B}, {NH}, {S}, {DH}) {dtype_name(dtype)}"
        out, record = g.call_recording(fn, case, x, operators=False)
        records.append(record)
        g.check_tensor(out, ref.merge_heads(x.double()), "merged", case, dtype=dtype, args=dict(x=x))
    # A strided input: heads produced by a transpose, as attention hands them over.
    x = g.randn(2, 5, 3, 4).transpose(1, 2)
    case = "x: (2, 3, 5, 4) float64, a non-contiguous view"
    g.check_tensor(g.call(fn, case, x), ref.merge_heads(x), "merged", case, args=dict(x=x))
    check_gradients(g, fn, ref.merge_heads, "x: (2, 3, 5, 4) float64", dict(x=g.randn(2, 3, 5, 4)), wrt=["x"])
    g.forbid(records, COURSE_REFERENCE, "every case")


# --------------------------------------------------------------------------------------------
# online_softmax_attention
# --------------------------------------------------------------------------------------------


def _online_variant(q, k, v, block_size, is_causal=False, scale=None, *, rescale_sum=True, rescale_acc=True,
                    running_max=True, lse="right", divide=True, causal_index="global", last_block=True, scaled=True):
    """The blocked recurrence with switches: each catalogued mistake is one switch away from the right answer."""
    Sq, D = q.shape[-2:]
    Sk = k.shape[-2]
    scale = (1 / math.sqrt(D) if scale is None else scale) if scaled else 1.0
    m = torch.full((*q.shape[:-1], 1), -math.inf if running_max else 0.0, dtype=q.dtype)
    l = torch.zeros((*q.shape[:-1], 1), dtype=q.dtype)
    acc = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)
    stop = Sk if last_block else Sk - block_size + 1
    for j0 in range(0, max(stop, 1), block_size):
        kb, vb = k[..., j0:j0 + block_size, :], v[..., j0:j0 + block_size, :]
        s = q @ kb.transpose(-2, -1) * scale
        if is_causal:
            cols = torch.arange(kb.shape[-2]) + (j0 if causal_index == "global" else 0)
            s = s.masked_fill(cols[None, :] > torch.arange(Sq)[:, None], -math.inf)
        m_new = torch.maximum(m, s.amax(-1, keepdim=True)) if running_max else m
        alpha = torch.exp(m - m_new)
        p = torch.exp(s - m_new)
        l = (alpha * l if rescale_sum else l) + p.sum(-1, keepdim=True)
        acc = (alpha * acc if rescale_acc else acc) + p @ vb
        m = m_new
    lse_value = {"right": m + torch.log(l), "no_log": m + l, "no_max": torch.log(l)}[lse]
    return (acc / l if divide else acc), lse_value.squeeze(-1)


_ONLINE_MISTAKES = [
    ("the running sum ℓ is not rescaled by e^(m − m′) when the max changes", dict(rescale_sum=False), False),
    ("the accumulated output o is not rescaled by e^(m − m′) when the max changes", dict(rescale_acc=False), False),
    ("neither ℓ nor o is rescaled by e^(m − m′) when the max changes", dict(rescale_sum=False, rescale_acc=False),
     False),
    ("there is no running max: exp(s) is taken of the raw scores, which overflows in float32 once s > 88",
     dict(running_max=False), True),
    ("lse is m + ℓ: the log of the running sum is missing", dict(lse="no_log"), False),
    ("lse is log ℓ alone: the running max m is not added back", dict(lse="no_max"), False),
    ("the output is not divided by ℓ at the end", dict(divide=False), False),
    ("with is_causal, the key index inside the block (j) is compared with the query index instead of the global "
     "index start + j", dict(causal_index="block"), False),
    ("the last, shorter block is dropped when block_size does not divide Sk", dict(last_block=False), False),
    ("the scores are not scaled: the factor 1/√D is missing", dict(scaled=False), False),
]
for _description, _switches, _native in _ONLINE_MISTAKES:
    def _wrong_online(q, k, v, block_size, is_causal=False, scale=None, _s=_switches):
        return _online_variant(q, k, v, block_size, is_causal, scale, **_s)

    _wrong_online.__name__ = _wrong_online.__qualname__ = "online_" + "_".join(
        f"{k}_{v}" for k, v in _switches.items())
    mistake("online_softmax_attention", _description, native_dtype=_native)(_wrong_online)


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
    records = []
    for B, NH, Sq, Sk, D, DV, block, causal, scale, dtype, s_scale, label in cases:
        q, k, v = _qkv(g, B, NH, Sq, Sk, D, DV, dtype, scale=s_scale)
        case = (f"q: {tuple(q.shape)}, k: {tuple(k.shape)}, v: {tuple(v.shape)}, {dtype_name(dtype)}, "
                f"block_size={block}, {label}")
        result, record = g.call_recording(fn, case, q, k, v, block, causal, scale, operators=False)
        records.append(record)
        args = dict(q=q, k=k, v=v, block_size=block, is_causal=causal, scale=scale)
        g.check_outputs(result, _online_reference(**as_float64(args)), ("out", "lse"), case, dtype=dtype, args=args)

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
    g.forbid(records, ATTENTION_BUILTINS, "every case")


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


# --------------------------------------------------------------------------------------------
# attention_score_gradients (a derivation, checked numerically)
# --------------------------------------------------------------------------------------------

from course_lib.grading.core import mistake  # noqa: E402  (this section is appended to the module)

SCORE_GRAD_PARAMS = ["q", "k", "grad_weights", "scale"]
SCORE_GRAD_ID = "attention_score_gradients"


def _score_weights(q, k, scale):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1), scale


@mistake(SCORE_GRAD_ID, "∂L/∂s is α ⊙ u: the − α (α·u) part of the softmax Jacobian diag(α) − α αᵀ is missing")
def _sg_no_outer_term(q, k, grad_weights, scale=None):
    a, scale = _score_weights(q, k, scale)
    gs = a * grad_weights
    return gs, scale * gs @ k, scale * gs.transpose(-2, -1) @ q


@mistake(SCORE_GRAD_ID, "∂L/∂s is u − α·u: the factor α_j in front (the diag(α) of the Jacobian) is missing")
def _sg_no_alpha_factor(q, k, grad_weights, scale=None):
    a, scale = _score_weights(q, k, scale)
    gs = grad_weights - (a * grad_weights).sum(-1, keepdim=True)
    return gs, scale * gs @ k, scale * gs.transpose(-2, -1) @ q


@mistake(SCORE_GRAD_ID, "the sum α·u runs over the queries (dim=-2) instead of over the keys of each row")
def _sg_sum_over_queries(q, k, grad_weights, scale=None):
    a, scale = _score_weights(q, k, scale)
    gs = a * (grad_weights - (a * grad_weights).sum(-2, keepdim=True))
    return gs, scale * gs @ k, scale * gs.transpose(-2, -1) @ q


@mistake(SCORE_GRAD_ID, "∂L/∂q and ∂L/∂k leave out the scale (s = scale · q·k, so ∂s/∂q = scale · k)")
def _sg_no_scale_in_chain(q, k, grad_weights, scale=None):
    a, _ = _score_weights(q, k, scale)
    gs = a * (grad_weights - (a * grad_weights).sum(-1, keepdim=True))
    return gs, gs @ k, gs.transpose(-2, -1) @ q


@mistake(SCORE_GRAD_ID, "the softmax is taken of the unscaled scores q·k (the scale is missing in the forward pass)")
def _sg_unscaled_softmax(q, k, grad_weights, scale=None):
    _, scale = _score_weights(q, k, scale)
    a = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
    gs = a * (grad_weights - (a * grad_weights).sum(-1, keepdim=True))
    return gs, scale * gs @ k, scale * gs.transpose(-2, -1) @ q


@mistake(SCORE_GRAD_ID, "∂L/∂k is computed as ∂L/∂s · q (missing the transpose: row j of ∂L/∂k sums over queries i)")
def _sg_k_without_transpose(q, k, grad_weights, scale=None):
    a, scale = _score_weights(q, k, scale)
    gs = a * (grad_weights - (a * grad_weights).sum(-1, keepdim=True))
    return gs, scale * gs @ k, scale * gs @ q


@exercise(SCORE_GRAD_ID, module="03", title="Derive the gradient through the attention softmax", points=2,
          difficulty="medium", minutes=25,
          signature="attention_score_gradients(q, k, grad_weights, scale=None) -> (grad_scores (..., Sq, Sk), "
                    "grad_q (..., Sq, D), grad_k (..., Sk, D)); for weights = softmax(q kᵀ · scale) and "
                    "grad_weights = ∂L/∂weights, by hand (no autograd)")
def grade_attention_score_gradients(g: Grader, fn) -> None:
    g.check_signature(fn, SCORE_GRAD_PARAMS)
    names = ("grad_scores", "grad_q", "grad_k")
    cases = [
        # (B, NH, Sq, Sk, D, dtype, scale, label); the first case is square so that every catalogued mistake runs
        (2, 2, 5, 5, 4, torch.float64, None, "scale=None (1/sqrt(D))"),
        (2, 3, 4, 7, 8, torch.float64, None, "Sq != Sk"),
        (1, 2, 6, 3, 5, torch.float64, 0.7, "scale=0.7, Sq > Sk"),
        (2, 2, 5, 6, 8, torch.float32, None, "float32"),
        (1, 1, 1, 1, 3, torch.float64, None, "one query, one key"),
    ]
    for B, NH, Sq, Sk, D, dtype, scale, label in cases:
        args = dict(q=g.randn(B, NH, Sq, D, dtype=dtype), k=g.randn(B, NH, Sk, D, dtype=dtype),
                    grad_weights=g.randn(B, NH, Sq, Sk, dtype=dtype), scale=scale)
        case = (f"q: {tuple(args['q'].shape)}, k: {tuple(args['k'].shape)}, grad_weights: "
                f"{tuple(args['grad_weights'].shape)}, {dtype_name(dtype)}, {label}")
        result, record = g.call_recording(fn, case, **args)
        g.check_outputs(result, ref.attention_score_gradients(**as_float64(args)), names, case, dtype=dtype,
                        args=args)
        g.forbid(record, {"autograd": "the exercise is to derive the gradient and compute it by hand"}, case)

    # A derivation you can check without the reference: softmax(s + c) = softmax(s), so ∂L/∂s sums to 0 per row.
    args = dict(q=g.randn(2, 2, 6, 4), k=g.randn(2, 2, 9, 4), grad_weights=g.randn(2, 2, 6, 9, scale=3.0), scale=None)
    grad_s = g.call(fn, "q: (2, 2, 6, 4), k: (2, 2, 9, 4), float64", **args)[0]
    worst = float(grad_s.detach().sum(-1).abs().max())
    g.expect(worst < 1e-10, "properties", "every row of grad_scores sums to 0 (adding a constant to a row of scores "
             "changes nothing)", f"row sums of grad_scores reach {worst:.3g}")
