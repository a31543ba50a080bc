"""Module 05 graders: the head-wise recurrence, the stabiliser, one sLSTM step, and the sequence.

Each grader keeps its catalogue of common mistakes beside it (``@mistake``): functions with the
reference's signature that return what the mistaken code returns, so that feedback can name the
mistake ("your output matches what you get when the input gate is not stabilised ...").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib.grading.core import Grader, as_float64, check_gradients, dtype_name, exercise, mistake
from course_lib.xlstm.slstm import headwise_recurrence, initial_state, slstm, slstm_step, stabilise

STEP_PARAMS = ["wx_t", "R", "b", "state", "forget_gate"]
SEQ_PARAMS = ["wx", "R", "b", "state", "forget_gate", "return_last_states"]
STEP_NAMES = ("h", ("state h", "c", "n", "m"))


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _weights(g: Grader, NH: int, DH: int, dtype=torch.float64):
    H = NH * DH
    return g.randn(4, NH, DH, DH, dtype=dtype, scale=DH**-0.5), g.randn(4 * H, dtype=dtype, scale=0.5)


def _pre(g: Grader, shape: tuple[int, ...], H: int, dtype=torch.float64, i_shift=0.0, i_scale=1.0, f_shift=0.0):
    """Gate-major pre-activations (…, 4H) with the input gate scaled/shifted and the forget gate shifted."""
    wx = g.randn(*shape, 4 * H, dtype=dtype)
    wx[..., :H] = wx[..., :H] * i_scale + i_shift
    wx[..., H:2 * H] += f_shift
    return wx


def _state(g: Grader, B: int, H: int, dtype=torch.float64):
    """A state in stabilised units as the recurrence produces it: n ≥ 1, |c| ≤ n, finite m."""
    n = 1.0 + 2.0 * g.rand(B, H, dtype=dtype)
    c = n * (2.0 * g.rand(B, H, dtype=dtype) - 1.0)
    return g.randn(B, H, dtype=dtype, scale=0.5), c, n, g.randn(B, H, dtype=dtype)


def _first_state(B: int, H: int, dtype=torch.float64):
    return initial_state(B, H, dtype)


def _state_case(state) -> str:
    return "state: m = -inf (the first step)" if bool(torch.isinf(state[3]).all()) else "state: a mid-sequence state"


# --------------------------------------------------------------------------------------------
# Mistaken variants (shared by the catalogues)
# --------------------------------------------------------------------------------------------


def _interleaved_recurrence(h, R):
    """Heads taken as every NH-th unit (h.reshape(B, DH, NH)): each head reads units of all heads."""
    B, H = h.shape
    _, NH, DH, _ = R.shape
    hh = h.reshape(B, DH, NH).transpose(1, 2)  # (B, NH, DH), but head k holds units k, k+NH, ...
    out = torch.einsum("gkoj,bkj->bgko", R, hh)  # (B, 4, NH, DH)
    return out.transpose(2, 3).reshape(B, 4 * H)  # written back interleaved as well


def _step_variant(wx_t, R, b, state, forget_gate, variant):
    """One sLSTM step with one deliberate mistake ``variant`` (see the catalogues below)."""
    h, c, n, m_prev = (s.to(wx_t.dtype) for s in state)
    rec = _interleaved_recurrence(h, R) if variant == "mixing" else headwise_recurrence(h, R)
    i_pre, f_pre, z_pre, o_pre = (wx_t + rec + b).chunk(4, dim=-1)
    log_f = F.logsigmoid(f_pre) if (forget_gate == "sigmoid" or variant == "exp_as_sigmoid") else f_pre
    z, o = torch.tanh(z_pre), torch.sigmoid(o_pre)
    if variant == "no_stabiliser":
        f = torch.exp(log_f)
        c = f * c + torch.exp(i_pre) * z
        n = f * n + torch.exp(i_pre)
        return o * c / n, (o * c / n, c, n, torch.zeros_like(m_prev))
    if variant == "sigmoid_input":
        i_pre = F.logsigmoid(i_pre)
    if variant == "m_not_carried":
        m_prev = torch.zeros_like(m_prev)
    m = torch.maximum(log_f + m_prev, i_pre)
    i_s, f_s = torch.exp(i_pre - m), torch.exp(log_f + m_prev - m)
    if variant == "forget_only":
        i_s = torch.exp(i_pre)
    c = f_s * c + i_s * z
    n = f_s * n + i_s
    h = o * c if variant == "no_normaliser" else o * c / n
    return h, (h, c, n, m)


def _seq_variant(wx, R, b, state, forget_gate, return_last_states, variant):
    B, S, H4 = wx.shape
    H = H4 // 4
    if state is None:
        state = initial_state(B, H, wx.dtype)
        if variant in ("m0_zero", "no_stabiliser"):
            state = (*state[:3], torch.zeros_like(state[3]))
    hs = []
    for t in range(S):
        h, state = _step_variant(wx[:, t], R, b, state, forget_gate, variant)
        hs.append(h)
    out = torch.stack(hs, dim=1)
    return (out, state) if return_last_states else out


STEP_MISTAKES = {
    "no_stabiliser": "there is no stabiliser: i = exp(ĩ) and f are used as they are, and c, n are returned in true "
                     "units (with m = 0), which overflows for large ĩ",
    "forget_only": "the stabiliser is applied to the forget gate only: f' = exp(log f + m_prev − m) but the input "
                   "gate stays exp(ĩ) instead of exp(ĩ − m)",
    "no_normaliser": "the normaliser is missing: h = o ⊙ c instead of o ⊙ c / n",
    "sigmoid_input": "the input gate is a sigmoid, σ(ĩ), instead of the exponential exp(ĩ)",
    "mixing": "the recurrence mixes units across heads: the hidden units are split into heads interleaved "
              "(reshape (B, DH, NH)) instead of in contiguous blocks of DH",
    "exp_as_sigmoid": "forget_gate=\"exp\" is treated like the sigmoid gate: log f = logσ(f̃) instead of f̃",
    "m_not_carried": "m is not carried from the previous step: m_prev is taken as 0, so m = max(log f, ĩ) and "
                     "f' = exp(log f − m), while c and n are still in the previous step's units",
}

SEQ_MISTAKES = {
    **STEP_MISTAKES,
    "m0_zero": "the stabiliser starts from m_0 = 0 instead of −inf (the returned c, n, m are in different units)",
    "m_not_carried": "m is not carried between steps: every step starts from m_prev = 0, so c and n from the "
                     "previous step are rescaled with the wrong factor",
}


def _register_step_mistake(variant: str, description: str) -> None:
    def wrong(wx_t, R, b, state, forget_gate="sigmoid"):
        return _step_variant(wx_t, R, b, state, forget_gate, variant)

    wrong.__name__ = f"slstm_step_{variant}"
    mistake("slstm_step", description)(wrong)


def _register_seq_mistake(variant: str, description: str) -> None:
    def wrong(wx, R, b, state=None, forget_gate="sigmoid", return_last_states=False):
        return _seq_variant(wx, R, b, state, forget_gate, return_last_states, variant)

    wrong.__name__ = f"slstm_{variant}"
    mistake("slstm", description)(wrong)


for _variant, _description in STEP_MISTAKES.items():
    _register_step_mistake(_variant, _description)
for _variant, _description in SEQ_MISTAKES.items():
    _register_seq_mistake(_variant, _description)


# --------------------------------------------------------------------------------------------
# headwise_recurrence
# --------------------------------------------------------------------------------------------


@mistake("headwise_recurrence", "each R[g, k] is applied transposed, as (in, out) instead of (out, in)")
def _rec_transposed(h, R):
    return headwise_recurrence(h, R.transpose(-2, -1))


@mistake("headwise_recurrence", "the hidden units are split into heads interleaved (reshape (B, DH, NH)) "
                                "instead of in contiguous blocks of DH: units of different heads mix")
def _rec_interleaved(h, R):
    return _interleaved_recurrence(h, R)


@mistake("headwise_recurrence", "the output is laid out head-major (head, gate, unit) instead of gate-major "
                                "[i | f | z | o]")
def _rec_head_major(h, R):
    B, H = h.shape
    _, NH, DH, _ = R.shape
    out = torch.einsum("gkoj,bkj->bkgo", R, h.reshape(B, NH, DH))  # (B, NH, 4, DH)
    return out.reshape(B, 4 * H)


@mistake("headwise_recurrence", "every head uses head 0's weights R[g, 0]")
def _rec_head0(h, R):
    return headwise_recurrence(h, R[:, :1].expand_as(R))


@mistake("headwise_recurrence", "the output is laid out unit-major (unit, gate) instead of gate-major [i | f | z | o]")
def _rec_unit_major(h, R):
    B, H = h.shape
    return headwise_recurrence(h, R).reshape(B, 4, H).transpose(1, 2).reshape(B, 4 * H)


@exercise("headwise_recurrence", module="05", title="The head-wise (block-diagonal) recurrence", points=2,
          difficulty="easy", minutes=15,
          signature="headwise_recurrence(h, R) -> (B, 4H) gate-major [i | f | z | o]; h (B, H), R (4, NH, DH, DH) "
                    "[gate, head, out, in]; head k's units k*DH..(k+1)*DH-1 are read only by head k")
def grade_headwise_recurrence(g: Grader, fn) -> None:
    g.check_signature(fn, ["h", "R"])
    for B, NH, DH, dtype in [(2, 2, 3, torch.float64), (3, 4, 2, torch.float32), (1, 1, 5, torch.float64),
                             (2, 3, 1, torch.float64), (2, 2, 4, torch.float64)]:
        args = dict(h=g.randn(B, NH * DH, dtype=dtype), R=g.randn(4, NH, DH, DH, dtype=dtype))
        case = f"h: ({B}, {NH * DH}), R: (4, {NH}, {DH}, {DH}), {dtype_name(dtype)}"
        out = g.call(fn, case, **args)
        g.check_tensor(out, headwise_recurrence(**as_float64(args)), "Rh", case, dtype=dtype, args=args)
    args = dict(h=g.randn(2, 6), R=g.randn(4, 3, 2, 2))
    check_gradients(g, fn, headwise_recurrence, "h: (2, 6), R: (4, 3, 2, 2), float64", args, wrt=["h", "R"])
    # Property: changing head 0's units changes only head 0's outputs (no memory mixing across heads).
    h, R = g.randn(2, 6), g.randn(4, 3, 2, 2)
    h2 = h.clone()
    h2[:, :2] += 1.0
    case = "h: (2, 6), R: (4, 3, 2, 2), float64, head 0's units changed"
    d = (g.call(fn, case, h2, R) - g.call(fn, case, h, R)).detach().reshape(2, 4, 3, 2)
    leak = float(d[:, :, 1:].abs().max())
    g.expect(leak < 1e-12, "properties", "heads do not mix: head 0's units reach only head 0's outputs",
             f"changing only head 0's units changed other heads' pre-activations by up to {leak:.3g}")


# --------------------------------------------------------------------------------------------
# stabilise
# --------------------------------------------------------------------------------------------


@mistake("stabilise", "the input gate is not stabilised: i' = exp(ĩ) instead of exp(ĩ − m) (the stabiliser is "
                      "applied to the forget gate only)")
def _stab_forget_only(i_pre, log_f, m_prev):
    i_s, f_s, m = stabilise(i_pre, log_f, m_prev)
    return torch.exp(i_pre), f_s, m


@mistake("stabilise", "the forget gate is not stabilised: f' = exp(log f) instead of exp(log f + m_prev − m)")
def _stab_input_only(i_pre, log_f, m_prev):
    i_s, f_s, m = stabilise(i_pre, log_f, m_prev)
    return i_s, torch.exp(log_f), m


@mistake("stabilise", "m_prev is left out of the forget gate: f' = exp(log f − m) instead of exp(log f + m_prev − m)")
def _stab_f_without_mprev(i_pre, log_f, m_prev):
    i_s, f_s, m = stabilise(i_pre, log_f, m_prev)
    return i_s, torch.exp(log_f - m), m


@mistake("stabilise", "the maximum leaves out log f: m = max(m_prev, ĩ) instead of max(log f + m_prev, ĩ)")
def _stab_max_without_logf(i_pre, log_f, m_prev):
    m = torch.maximum(m_prev, i_pre)
    return torch.exp(i_pre - m), torch.exp(log_f + m_prev - m), m


@mistake("stabilise", "m is not carried: m_prev is taken as 0, m = max(log f, ĩ)")
def _stab_not_carried(i_pre, log_f, m_prev):
    return stabilise(i_pre, log_f, torch.zeros_like(m_prev))


@mistake("stabilise", "m_prev = −inf (the first step) is replaced by 0: m_0 = 0 instead of −inf")
def _stab_m0_zero(i_pre, log_f, m_prev):
    return stabilise(i_pre, log_f, torch.nan_to_num(m_prev, neginf=0.0))


@exercise("stabilise", module="05", title="The stabiliser update", points=2, difficulty="easy", minutes=15,
          signature="stabilise(i_pre, log_f, m_prev) -> (i_s, f_s, m): m = max(log_f + m_prev, i_pre), "
                    "i_s = exp(i_pre - m), f_s = exp(log_f + m_prev - m); m_prev may be -inf")
def grade_stabilise(g: Grader, fn) -> None:
    g.check_signature(fn, ["i_pre", "log_f", "m_prev"])
    names = ("i_s", "f_s", "m")
    B, H = 3, 5
    cases = [
        ("float64, finite m_prev", torch.float64, 0.0, 2.0, False, "sigmoid"),
        ("float64, m_prev = -inf in rows 0 and 2 (their first step)", torch.float64, 0.0, 2.0, True, "sigmoid"),
        ("float64, exponential forget gate (log f may be > 0)", torch.float64, 0.0, 2.0, False, "exp"),
        ("float32, input-gate pre-activations around 100 (exp overflows float32)", torch.float32, 100.0, 5.0,
         False, "sigmoid"),
        ("float32, m_prev = -inf in rows 0 and 2, pre-activations around 100", torch.float32, 100.0, 5.0,
         True, "sigmoid"),
    ]
    for label, dtype, shift, scale, first, gate in cases:
        i_pre = g.randn(B, H, dtype=dtype, scale=scale) + shift
        f_pre = g.randn(B, H, dtype=dtype, scale=2.0)
        log_f = F.logsigmoid(f_pre) if gate == "sigmoid" else f_pre
        m_prev = g.randn(B, H, dtype=dtype, scale=2.0) + shift
        if first:  # rows 0 and 2 are at their first step, row 1 is mid-sequence
            m_prev[::2] = -math.inf
        args = dict(i_pre=i_pre, log_f=log_f, m_prev=m_prev)
        case = f"i_pre, log_f, m_prev: ({B}, {H}), {label}"
        result = g.call(fn, case, **args)
        g.check_outputs(result, stabilise(**as_float64(args)), names, case, dtype=dtype, args=args)
    args = dict(i_pre=g.randn(2, 4, scale=2.0), log_f=F.logsigmoid(g.randn(2, 4)), m_prev=g.randn(2, 4))
    check_gradients(g, fn, stabilise, "(2, 4), float64, finite m_prev", args, wrt=["i_pre", "log_f", "m_prev"])
    # Property: both exponents are <= 0, so i_s, f_s <= 1 and one of them is exactly 1.
    args = dict(i_pre=g.randn(4, 6, scale=30.0), log_f=F.logsigmoid(g.randn(4, 6, scale=3.0)),
                m_prev=g.randn(4, 6, scale=30.0))
    i_s, f_s, _ = (t.detach() for t in g.call(fn, "(4, 6), float64, wide range", **args))
    top = torch.maximum(i_s, f_s)
    g.expect(bool((i_s <= 1 + 1e-12).all() and (f_s <= 1 + 1e-12).all()) and bool(((top - 1).abs() < 1e-12).all()),
             "properties", "i_s, f_s <= 1 and max(i_s, f_s) = 1 (the stabiliser's guarantee)",
             f"max(i_s, f_s) ranges from {float(top.min()):.4g} to {float(top.max()):.4g}; with m the larger of the "
             "two log-gates, one of them is exp(0) = 1 and the other at most 1")


# --------------------------------------------------------------------------------------------
# slstm_step
# --------------------------------------------------------------------------------------------


def _with_state_step(fn):
    def wrapped(wx_t, R, b, h, c, n, m, forget_gate="sigmoid"):
        return fn(wx_t, R, b, (h, c, n, m), forget_gate)
    return wrapped


def _step_cases(g: Grader):
    cases = []

    def add(label, B, NH, DH, dtype=torch.float64, first=False, forget_gate="sigmoid", **pre):
        H = NH * DH
        R, b = _weights(g, NH, DH, dtype)
        state = _first_state(B, H, dtype) if first else _state(g, B, H, dtype)
        if "i_shift" in pre and not first:  # keep m near the scale of ĩ, as a running sequence would
            state = (*state[:3], state[3] + pre["i_shift"])
        args = dict(wx_t=_pre(g, (B,), H, dtype, **pre), R=R, b=b, state=state, forget_gate=forget_gate)
        case = (f"wx_t: ({B}, {4 * H}), R: (4, {NH}, {DH}, {DH}), {dtype_name(dtype)}, forget_gate={forget_gate!r}, "
                f"{_state_case(state)}" + (f", {label}" if label else ""))
        cases.append((case, args, dtype))

    add("", 2, 2, 3)
    add("", 3, 2, 2, first=True)
    add("", 2, 2, 3, forget_gate="exp", f_shift=-1.0)
    add("one head", 2, 1, 4)
    add("DH=1 (every unit its own head)", 2, 4, 1)
    add("", 2, 2, 3, dtype=torch.float32)
    add("input-gate pre-activations around 100 (exp overflows float32)", 2, 2, 2, dtype=torch.float32,
        i_shift=100.0, i_scale=5.0)
    add("input-gate pre-activations around 100", 2, 2, 2, dtype=torch.float32, first=True, i_shift=100.0,
        i_scale=5.0)
    return cases


@exercise("slstm_step", module="05", title="One sLSTM step with exponential gating and the stabiliser", points=3,
          difficulty="medium", minutes=25,
          signature="slstm_step(wx_t, R, b, state, forget_gate='sigmoid') -> (h, (h, c, n, m)); wx_t (B, 4H) "
                    "gate-major [i, f, z, o]; R (4, NH, DH, DH); b (4H,); state (h, c, n, m) each (B, H), "
                    "in stabilised units")
def grade_slstm_step(g: Grader, fn) -> None:
    g.check_signature(fn, STEP_PARAMS)
    for case, args, dtype in _step_cases(g):
        result = g.call(fn, case, **args)
        g.check_outputs(result, slstm_step(**as_float64_nested(args)), STEP_NAMES, case, dtype=dtype,
                        args=args)
    # Gradients of h reach every input and the state (h, c, n); m may be treated as a constant.
    R, b = _weights(g, 2, 2)
    h, c, n, m = _state(g, 2, 4)
    args = dict(wx_t=_pre(g, (2,), 4, i_scale=2.0), R=R, b=b, h=h, c=c, n=n, m=m)
    check_gradients(g, _with_state_step(fn), _with_state_step(slstm_step), "B=2, NH=2, DH=2, float64", args,
                    wrt=["wx_t", "R", "b", "h", "c", "n"], select=lambda out: out[0])


def as_float64_nested(args: dict) -> dict:
    """:func:`as_float64`, also converting the tensors inside a ``state`` tuple."""
    out = as_float64(args)
    if isinstance(out.get("state"), (tuple, list)):
        out["state"] = tuple(s.double() if isinstance(s, torch.Tensor) and s.is_floating_point() else s
                             for s in out["state"])
    return out


# --------------------------------------------------------------------------------------------
# slstm
# --------------------------------------------------------------------------------------------


def _with_state_seq(fn):
    def wrapped(wx, R, b, h, c, n, m, forget_gate="sigmoid"):
        return fn(wx, R, b, (h, c, n, m), forget_gate, False)
    return wrapped


@exercise("slstm", module="05", title="The sLSTM over a sequence", points=3, difficulty="medium", minutes=20,
          signature="slstm(wx, R, b, state=None, forget_gate='sigmoid', return_last_states=False) -> h (B, S, H) or "
                    "(h, (h, c, n, m)); wx (B, S, 4H); state None means zeros with m = -inf")
def grade_slstm(g: Grader, fn) -> None:
    g.check_signature(fn, SEQ_PARAMS)
    cases = [
        # (label, B, S, NH, DH, dtype, given state, forget gate, return states, pre-activation options)
        ("ĩ around -2 and f near 1 (m_0 matters)", 2, 8, 2, 3, torch.float64, False, "sigmoid", True,
         dict(i_shift=-2.0, f_shift=3.0)),
        ("", 2, 6, 2, 3, torch.float64, False, "sigmoid", False, dict(i_scale=2.0)),
        ("", 2, 7, 2, 2, torch.float64, True, "sigmoid", True, dict(i_scale=2.0)),
        ("", 2, 6, 2, 3, torch.float64, False, "exp", True, dict(f_shift=-1.0)),
        ("", 2, 5, 2, 2, torch.float64, True, "exp", True, dict(f_shift=-0.5)),
        ("one head", 3, 5, 1, 4, torch.float64, False, "sigmoid", True, {}),
        ("S=1", 2, 1, 2, 2, torch.float64, False, "sigmoid", True, {}),
        ("", 2, 6, 2, 3, torch.float32, False, "sigmoid", True, dict(i_scale=2.0)),
        ("input-gate pre-activations around 100 (exp overflows float32)", 2, 6, 2, 2, torch.float32, False,
         "sigmoid", True, dict(i_shift=100.0, i_scale=5.0)),
    ]
    for label, B, S, NH, DH, dtype, given, gate, ret, pre in cases:
        H = NH * DH
        R, b = _weights(g, NH, DH, dtype)
        state = _state(g, B, H, dtype) if given else None
        args = dict(wx=_pre(g, (B, S), H, dtype, **pre), R=R, b=b, state=state, forget_gate=gate,
                    return_last_states=ret)
        case = (f"wx: ({B}, {S}, {4 * H}), R: (4, {NH}, {DH}, {DH}), {dtype_name(dtype)}, forget_gate={gate!r}, "
                f"state={'given' if given else 'None'}, return_last_states={ret}" + (f", {label}" if label else ""))
        result = g.call(fn, case, **args)
        names = ("h", ("h_n", "c_n", "n_n", "m_n")) if ret else "h"
        g.check_outputs(result, slstm(**as_float64_nested(args)), names, case, dtype=dtype, args=args)
    # Gradients of h reach wx, R, b (default state) and the given initial state (h, c, n).
    R, b = _weights(g, 2, 2)
    args = dict(wx=_pre(g, (2, 5), 4, i_scale=2.0), R=R, b=b, state=None, forget_gate="sigmoid",
                return_last_states=False)
    check_gradients(g, fn, slstm, "B=2, S=5, NH=2, DH=2, float64, state=None", args, wrt=["wx", "R", "b"])
    h, c, n, m = _state(g, 2, 4)
    args = dict(wx=_pre(g, (2, 4), 4), R=R, b=b, h=h, c=c, n=n, m=m)
    check_gradients(g, _with_state_seq(fn), _with_state_seq(slstm), "B=2, S=4, float64, given state", args,
                    wrt=["wx", "R", "b", "h", "c", "n"])
    # Property: running two halves with the carried state equals one pass.
    R, b = _weights(g, 2, 2)
    wx = _pre(g, (2, 10), 4, i_scale=3.0)
    case = "wx: (2, 10, 16), float64, split after step 4"
    whole = g.call(fn, case, wx, R, b, None, "sigmoid", True)
    first = g.call(fn, case, wx[:, :4], R, b, None, "sigmoid", True)
    second = g.call(fn, case, wx[:, 4:], R, b, tuple(first[1]), "sigmoid", True)
    joined = torch.cat([first[0], second[0]], dim=1).detach()
    err = float((joined - whole[0].detach()).abs().max())
    g.expect(err < 1e-10, "properties", "two halves with the carried state equal one pass",
             f"h from two halves (the second started from the first's returned state) differs from one pass by up to "
             f"{err:.3g}: the returned state does not carry everything the recurrence needs (h, c, n and m)")
