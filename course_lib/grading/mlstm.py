"""Module 06 graders: the mLSTM step, and the recurrent, parallel and chunkwise forms.

References are the library's functions (``course_lib.xlstm.mlstm``) in float64. Beside each grader
is its catalogue of common mistakes. The catalogue entries are written once, as one
implementation of each form with a ``wrong=`` switch that changes exactly one thing; the correct
switch (``wrong=None``) reproduces the library, which the tests check.

Some mistakes only change results at the level of eps or where the bound e^{−m} is active, so the
graders also run a case with eps = 0.1 and strongly negative input gates (|q̂ᵀn| < 1 there).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from course_lib.grading.core import Grader, as_float64, check_gradients, dtype_name, exercise, mistake
from course_lib.xlstm import mlstm as ref

STEP_PARAMS = ["q", "k", "v", "i", "f", "c", "n", "m", "eps"]
RECURRENT_PARAMS = ["q", "k", "v", "i", "f", "c_initial", "n_initial", "m_initial", "return_last_states", "eps"]
PARALLEL_PARAMS = ["q", "k", "v", "i", "f", "eps", "return_stats"]
CHUNKWISE_PARAMS = ["q", "k", "v", "i", "f", "c_initial", "n_initial", "m_initial", "return_last_states",
                    "chunk_size", "eps"]

DESCRIBE = {
    "no_normaliser": "there is no normaliser: h = q̂ᵀC is returned without dividing by max(|q̂ᵀn|, e^(−m)) + eps",
    "no_bound": "the denominator max(|q̂ᵀn|, e^(−m)) is replaced by |q̂ᵀn| (the lower bound, the paper's 1, is "
                "missing)",
    "unscaled_q": "q is not scaled by 1/sqrt(DQK)",
    "sigmoid_forget": "the forget gate enters the log domain as σ(f̃) instead of log σ(f̃) (F.logsigmoid)",
    "eps_before_max": "eps is added before the max, max(|q̂ᵀn| + eps, e^(−m)), instead of after it",
    "m0_minus_inf": "the recurrence starts from m_0 = −inf instead of m_0 = 0 (that is the parallel form's "
                    "convention; the recurrent and chunkwise forms start at 0)",
    "unmasked": "the decay matrix log D is not masked above the diagonal (queries see later keys)",
    "unrescaled_state": "the carried chunk state is decayed by e^g instead of e^(g + m_k − m_(k+1)): it is not "
                        "rescaled to the new stabiliser",
    "ragged_dropped": "the last, shorter chunk is dropped (only S // chunk_size full chunks are processed; its "
                      "outputs stay zero and it never reaches the state)",
}


# --------------------------------------------------------------------------------------------
# One implementation per form with a switch for each catalogued mistake
# --------------------------------------------------------------------------------------------


def _log_f(f, wrong):
    return torch.sigmoid(f) if wrong == "sigmoid_forget" else F.logsigmoid(f)


def _q_hat(q, wrong):
    return q if wrong == "unscaled_q" else q / math.sqrt(q.shape[-1])


def _read_out(num, qn, m, eps, wrong):
    """h from the numerator, q̂ᵀn and the stabiliser: the normaliser and its bound."""
    if wrong == "no_normaliser":
        return num
    if wrong == "no_bound":
        return num / (qn.abs() + eps)
    if wrong == "eps_before_max":
        return num / torch.maximum(qn.abs() + eps, torch.exp(-m))
    return num / (torch.maximum(qn.abs(), torch.exp(-m)) + eps)


def _step_variant(q, k, v, i, f, c, n, m, eps=1e-6, wrong=None):
    log_f = _log_f(f, wrong)
    m_new = torch.maximum(log_f + m, i)
    f_s, i_s = torch.exp(log_f + m - m_new), torch.exp(i - m_new)
    c_new = f_s[..., None] * c + i_s[..., None] * torch.einsum("bhd,bhe->bhde", k, v)
    n_new = f_s * n + i_s * k
    q_hat = _q_hat(q, wrong)
    num = torch.einsum("bhd,bhde->bhe", q_hat, c_new)
    qn = torch.einsum("bhd,bhd->bh", q_hat, n_new)[..., None]
    return _read_out(num, qn, m_new, eps, wrong), (c_new, n_new, m_new)


def _recurrent_variant(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False,
                       eps=1e-6, wrong=None):
    B, NH, S, DQK = q.shape
    c = q.new_zeros(B, NH, DQK, v.shape[-1]) if c_initial is None else c_initial
    n = q.new_zeros(B, NH, DQK) if n_initial is None else n_initial
    m = q.new_full((B, NH, 1), -math.inf if wrong == "m0_minus_inf" else 0.0) if m_initial is None else m_initial
    hs = []
    for t in range(S):
        h, (c, n, m) = _step_variant(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t, None], f[:, :, t, None], c, n, m,
                                     eps, wrong)
        hs.append(h)
    h = torch.stack(hs, dim=2)
    return (h, (c, n, m)) if return_last_states else h


def _log_decay(i, f, wrong):
    """log D by differences of cumulative sums (the masked cumsum is the library's business)."""
    S = f.shape[-1]
    cum = _log_f(f, wrong).cumsum(-1)
    log_D = cum[..., :, None] - cum[..., None, :] + i[..., None, :]
    if wrong == "unmasked":
        return log_D
    return log_D.masked_fill(~torch.ones(S, S, dtype=torch.bool, device=f.device).tril(), -math.inf)


def _parallel_variant(q, k, v, i, f, eps=1e-6, return_stats=False, wrong=None):
    log_D = _log_decay(i, f, wrong)
    m = log_D.amax(-1, keepdim=True)
    C_tilde = _q_hat(q, wrong) @ k.transpose(-2, -1) * torch.exp(log_D - m)
    qn = C_tilde.sum(-1, keepdim=True)
    h = _read_out(C_tilde @ v, qn, m, eps, wrong)
    if not return_stats:
        return h
    n = qn.abs() if wrong in ("no_bound", "no_normaliser") else torch.maximum(qn.abs(), torch.exp(-m))
    return h, (n.squeeze(-1), m.squeeze(-1))


def _chunkwise_variant(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False,
                       chunk_size=64, eps=1e-6, wrong=None):
    B, NH, S, DQK = q.shape
    c = q.new_zeros(B, NH, DQK, v.shape[-1]) if c_initial is None else c_initial
    n = q.new_zeros(B, NH, DQK) if n_initial is None else n_initial
    m = q.new_zeros(B, NH, 1) if m_initial is None else m_initial
    q_hat = _q_hat(q, wrong)
    h = v.new_zeros(B, NH, S, v.shape[-1])
    end_of_chunks = (S // chunk_size) * chunk_size if wrong == "ragged_dropped" else S
    for s0 in range(0, end_of_chunks, chunk_size):
        s1 = min(s0 + chunk_size, S)
        qc, kc, vc, ic = q_hat[:, :, s0:s1], k[:, :, s0:s1], v[:, :, s0:s1], i[:, :, s0:s1]
        b = _log_f(f[:, :, s0:s1], wrong).cumsum(-1)
        log_D = _log_decay(ic, f[:, :, s0:s1], wrong)
        m_t = torch.maximum(b + m, log_D.amax(-1))[..., None]
        inter = torch.exp(b[..., None] + m[..., None] - m_t)
        A = qc @ kc.transpose(-2, -1) * torch.exp(log_D - m_t)
        num = inter * (qc @ c) + A @ vc
        den = inter * (qc @ n[..., None]) + A.sum(-1, keepdim=True)
        h[:, :, s0:s1] = _read_out(num, den, m_t, eps, wrong)
        g = b[..., -1:]
        a = g - b + ic
        m_next = torch.maximum(g + m, a.amax(-1, keepdim=True))
        decay = torch.exp(g) if wrong == "unrescaled_state" else torch.exp(g + m - m_next)
        w = torch.exp(a - m_next)[..., None]
        c = decay[..., None] * c + (kc * w).transpose(-2, -1) @ vc
        n = decay * n + (kc * w).sum(-2)
        m = m_next
    return (h, (c, n, m)) if return_last_states else h


VARIANTS = {"mlstm_step": _step_variant, "mlstm_recurrent": _recurrent_variant,
            "mlstm_parallel": _parallel_variant, "mlstm_chunkwise": _chunkwise_variant}

CATALOGUE = {
    "mlstm_step": ["no_normaliser", "no_bound", "unscaled_q", "sigmoid_forget", "eps_before_max"],
    "mlstm_recurrent": ["no_normaliser", "no_bound", "unscaled_q", "sigmoid_forget", "eps_before_max",
                        "m0_minus_inf"],
    "mlstm_parallel": ["no_normaliser", "no_bound", "unscaled_q", "sigmoid_forget", "eps_before_max", "unmasked"],
    "mlstm_chunkwise": ["no_normaliser", "no_bound", "unscaled_q", "sigmoid_forget", "eps_before_max", "unmasked",
                        "unrescaled_state", "ragged_dropped", "m0_minus_inf"],
}


def _chunkwise_m0_minus_inf(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None,
                            return_last_states=False, chunk_size=64, eps=1e-6):
    if m_initial is None:
        m_initial = q.new_full((q.shape[0], q.shape[1], 1), -math.inf)
    return _chunkwise_variant(q, k, v, i, f, c_initial, n_initial, m_initial, return_last_states, chunk_size, eps)


def _register_catalogue() -> None:
    for exercise_id, names in CATALOGUE.items():
        for name in names:
            if exercise_id == "mlstm_chunkwise" and name == "m0_minus_inf":
                fn = _chunkwise_m0_minus_inf
            else:
                fn = functools.partial(VARIANTS[exercise_id], wrong=name)
                functools.update_wrapper(fn, VARIANTS[exercise_id])
                fn.__name__ = f"{exercise_id}__{name}"
            mistake(exercise_id, DESCRIBE[name])(fn)


_register_catalogue()


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _sequence(g: Grader, B, NH, S, DQK, DV, dtype=torch.float64, i_mean=0.0, f_offset=3.0):
    """q, k, v ~ N(0, 1), i ~ N(i_mean, 1), f ~ N(f_offset, 1): float32 tolerances hold (REFERENCES.md)."""
    return dict(q=g.randn(B, NH, S, DQK, dtype=dtype), k=g.randn(B, NH, S, DQK, dtype=dtype),
                v=g.randn(B, NH, S, DV, dtype=dtype), i=(g.randn(B, NH, S) + i_mean).to(dtype),
                f=(g.randn(B, NH, S) + f_offset).to(dtype))


def _states(g: Grader, B, NH, DQK, DV, dtype=torch.float64, m_mean=0.0):
    return dict(c=g.randn(B, NH, DQK, DV, dtype=dtype), n=g.randn(B, NH, DQK, dtype=dtype),
                m=(g.randn(B, NH, 1, scale=0.5) + m_mean).to(dtype))


def _shapes(args: dict) -> str:
    return ", ".join(f"{k}: {tuple(v.shape)}" for k, v in args.items() if isinstance(v, torch.Tensor))


# --------------------------------------------------------------------------------------------
# mlstm_step
# --------------------------------------------------------------------------------------------


@exercise("mlstm_step", module="06", title="One mLSTM step: covariance update, normaliser, stabiliser", points=2,
          difficulty="medium", minutes=20,
          signature="mlstm_step(q, k, v, i, f, c, n, m, eps=1e-6) -> (h, (c, n, m)); q, k (B, NH, DQK), v (B, NH, DV), "
                    "i, f, m (B, NH, 1), c (B, NH, DQK, DV), n (B, NH, DQK); log-sigmoid forget gate, q scaled by "
                    "DQK^-1/2, eps added after the max")
def grade_mlstm_step(g: Grader, fn) -> None:
    g.check_signature(fn, STEP_PARAMS)
    names = ("h", ("c", "n", "m"))
    cases = [
        # (B, NH, DQK, DV, dtype, eps, i_mean, m_mean, label)
        (2, 3, 4, 5, torch.float64, 1e-6, 0.0, 0.0, "random states"),
        (1, 2, 8, 3, torch.float32, 1e-6, 0.0, 0.0, "random states"),
        (2, 2, 4, 4, torch.float64, 0.1, -4.0, -3.0, "eps=0.1, i ~ N(-4, 1), m ~ -3: the bound e^(-m) is active"),
        (1, 1, 1, 1, torch.float64, 1e-6, 0.0, 0.0, "DQK=DV=1"),
    ]
    for B, NH, DQK, DV, dtype, eps, i_mean, m_mean, label in cases:
        seq = _sequence(g, B, NH, 1, DQK, DV, dtype, i_mean=i_mean)
        args = dict(q=seq["q"][:, :, 0], k=seq["k"][:, :, 0], v=seq["v"][:, :, 0], i=seq["i"][..., :1],
                    f=seq["f"][..., :1], **_states(g, B, NH, DQK, DV, dtype, m_mean), eps=eps)
        case = f"{_shapes(args)}, {dtype_name(dtype)}, {label}"
        result = g.call(fn, case, **args)
        g.check_outputs(result, ref.mlstm_step(**as_float64(args)), names, case, dtype=dtype, args=args)

    # Gradients with eps = 0: then h does not depend on the stabiliser, and m may be treated as a constant.
    seq = _sequence(g, 2, 2, 1, 3, 2)
    args = dict(q=seq["q"][:, :, 0], k=seq["k"][:, :, 0], v=seq["v"][:, :, 0], i=seq["i"][..., :1],
                f=seq["f"][..., :1], **_states(g, 2, 2, 3, 2), eps=0.0)
    check_gradients(g, fn, ref.mlstm_step, f"{_shapes(args)}, float64, eps=0", args,
                    wrt=["q", "k", "v", "i", "f", "c", "n"], select=lambda out: out[0])


# --------------------------------------------------------------------------------------------
# mlstm_recurrent
# --------------------------------------------------------------------------------------------


def _sequence_cases(g: Grader, with_states: bool = True):
    """(case, args, dtype) for the sequence forms; ``args`` without chunk_size."""
    out = []

    def add(B, NH, S, DQK, DV, dtype=torch.float64, eps=1e-6, i_mean=0.0, states=False, last=False, label=""):
        args = _sequence(g, B, NH, S, DQK, DV, dtype, i_mean=i_mean)
        extra = {}
        if states:
            st = _states(g, B, NH, DQK, DV, dtype)
            extra = dict(c_initial=st["c"], n_initial=st["n"], m_initial=st["m"])
        args.update(extra)
        args["eps"] = eps
        if with_states:
            args["return_last_states"] = last
        case = f"{_shapes(args)}, {dtype_name(dtype)}" + (f", {label}" if label else "")
        out.append((case, args, dtype))

    add(2, 3, 9, 4, 5, label="zero initial states")
    add(1, 2, 12, 8, 8, torch.float32, label="float32")
    add(2, 2, 10, 4, 3, eps=0.1, i_mean=-3.0, label="eps=0.1, i ~ N(-3, 1): eps and the bound e^(-m) matter")
    add(1, 1, 1, 2, 3, label="S=1")
    if with_states:
        add(2, 2, 7, 4, 5, last=True, label="return_last_states=True")
        add(2, 2, 6, 3, 4, states=True, last=True, label="given initial states, return_last_states=True")
    return out


def _names(args):
    return ("h", ("C", "n", "m")) if args.get("return_last_states") else "h"


def _halves_property(g: Grader, fn, case_kw: dict, label: str) -> None:
    """Running two halves with the carried (C, n, m) equals one pass."""
    args = _sequence(g, 2, 2, 12, 4, 3)
    case = f"{_shapes(args)}, float64, {label}"
    h, last = g.call(fn, case, **args, return_last_states=True, **case_kw)
    first = {k: t[:, :, :5] for k, t in args.items()}
    second = {k: t[:, :, 5:] for k, t in args.items()}
    h1, (c, n, m) = g.call(fn, case + ", first 5 steps", **first, return_last_states=True, **case_kw)
    h2, last2 = g.call(fn, case + ", last 7 steps from the carried state", **second, c_initial=c, n_initial=n,
                       m_initial=m, return_last_states=True, **case_kw)
    worst = max(float((a - b).detach().abs().max()) for a, b in
                [(torch.cat([h1, h2], dim=2), h), *zip(last2, last, strict=True)])
    g.expect(worst < 1e-9, "properties", f"two halves with the carried state (C, n, m) equal one pass ({label})",
             f"h or the final states differ by up to {worst:.3g} between one pass and two halves with the carried "
             "state: c_initial, n_initial and m_initial must be used (not replaced by zeros)")


@exercise("mlstm_recurrent", module="06", title="The mLSTM over a sequence, step by step", points=2,
          difficulty="easy", minutes=15,
          signature="mlstm_recurrent(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, "
                    "return_last_states=False, eps=1e-6) -> h (B, NH, S, DV) or (h, (C, n, m)); zero initial states "
                    "with m_0 = 0 by default")
def grade_mlstm_recurrent(g: Grader, fn) -> None:
    g.check_signature(fn, RECURRENT_PARAMS)
    for case, args, dtype in _sequence_cases(g):
        result = g.call(fn, case, **args)
        g.check_outputs(result, ref.mlstm_recurrent(**as_float64(args)), _names(args), case, dtype=dtype, args=args)
    args = _sequence(g, 1, 2, 5, 3, 2)
    st = _states(g, 1, 2, 3, 2)
    args.update(c_initial=st["c"], n_initial=st["n"], m_initial=st["m"], return_last_states=False, eps=0.0)
    check_gradients(g, fn, ref.mlstm_recurrent, f"{_shapes(args)}, float64, eps=0", args,
                    wrt=["q", "k", "v", "i", "f", "c_initial", "n_initial"])
    _halves_property(g, fn, {}, "S=12 split after 5 steps")


# --------------------------------------------------------------------------------------------
# mlstm_parallel
# --------------------------------------------------------------------------------------------


@exercise("mlstm_parallel", module="06", title="The mLSTM in parallel: gated, normalised attention", points=3,
          difficulty="medium", minutes=25,
          signature="mlstm_parallel(q, k, v, i, f, eps=1e-6, return_stats=False) -> h (B, NH, S, DV) or "
                    "(h, (n, m)) each (B, NH, S); log D masked above the diagonal, per-row max m, "
                    "n = max(|row sum of C~|, e^(-m)) before eps")
def grade_mlstm_parallel(g: Grader, fn) -> None:
    g.check_signature(fn, PARALLEL_PARAMS)
    cases = _sequence_cases(g, with_states=False)
    args = _sequence(g, 2, 2, 8, 4, 3)
    args.update(eps=1e-6, return_stats=True)
    cases.append((f"{_shapes(args)}, float64, return_stats=True", args, torch.float64))
    for case, args, dtype in cases:
        result = g.call(fn, case, **args)
        names = ("h", ("n", "m")) if args.get("return_stats") else "h"
        g.check_outputs(result, ref.mlstm_parallel(**as_float64(args)), names, case, dtype=dtype, args=args)
    args = _sequence(g, 1, 2, 6, 3, 2)
    args["eps"] = 0.0
    check_gradients(g, fn, ref.mlstm_parallel, f"{_shapes(args)}, float64, eps=0", args, wrt=["q", "k", "v", "i", "f"])

    # The future has no influence.
    args = _sequence(g, 2, 2, 10, 4, 4)
    case = f"{_shapes(args)}, float64"
    h = g.call(fn, case, **args)
    later = {k: t.clone() for k, t in args.items()}
    for key in ("k", "v"):
        later[key][:, :, 6:] = g.randn(*later[key][:, :, 6:].shape, scale=3.0)
    later["i"][:, :, 6:] += 2.0
    h2 = g.call(fn, case + ", k, v, i after position 5 changed", **later)
    diff = float((h2[:, :, :6] - h[:, :, :6]).detach().abs().max())
    g.expect(diff < 1e-10, "properties", "causal: later keys, values and gates leave earlier outputs unchanged",
             f"outputs at positions 0..5 changed by up to {diff:.3g} when only positions >= 6 changed: the decay "
             "matrix must be -inf (D = 0) above the diagonal")


# --------------------------------------------------------------------------------------------
# mlstm_chunkwise
# --------------------------------------------------------------------------------------------


class _WidestSquare(TorchDispatchMode):
    """Records the largest n of any floating-point tensor (B, NH, n, n) (or more axes) an operation produces."""

    def __init__(self) -> None:
        super().__init__()
        self.widest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            # (…, n, n) with leading batch/head axes: scores or decay matrices, not a 2-D mask built once
            if (isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 3
                    and t.shape[-1] == t.shape[-2]):
                self.widest = max(self.widest, t.shape[-1])
        return out

    def wrap(self, fn):
        @functools.wraps(fn)
        def recorded(*args, **kwargs):
            with self:  # entered in the thread that runs the learner's function
                return fn(*args, **kwargs)
        return recorded


@exercise("mlstm_chunkwise", module="06", title="The chunkwise mLSTM: recurrence between chunks, attention inside",
          points=4, difficulty="hard", minutes=40,
          signature="mlstm_chunkwise(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, "
                    "return_last_states=False, chunk_size=64, eps=1e-6) -> as mlstm_recurrent; any S and any "
                    "positive chunk_size (the last chunk may be shorter)")
def grade_mlstm_chunkwise(g: Grader, fn) -> None:
    g.check_signature(fn, CHUNKWISE_PARAMS)
    chunk_sizes = [4, 4, 3, 2, 3, 4]  # S = 9, 12, 10, 1, 7, 6: ragged last chunks, one chunk larger than S
    for (case, args, dtype), L in zip(_sequence_cases(g), chunk_sizes, strict=True):
        args["chunk_size"] = L
        case += f", chunk_size={L}"
        result = g.call(fn, case, **args)
        S = args["q"].shape[2]
        h = result[0] if isinstance(result, (tuple, list)) else result
        if isinstance(h, torch.Tensor) and h.dim() == 4 and S % L and h.shape[2] == (S // L) * L:
            g.fail("shapes", f"h shape ({case})",
                   f"h has {h.shape[2]} time steps instead of S={S}: the last, shorter chunk of {S % L} steps is "
                   "dropped (loop over range(0, S, chunk_size) and cut the last chunk at S)")
        g.check_outputs(result, ref.mlstm_chunkwise(**as_float64(args)), _names(args), case, dtype=dtype, args=args)
    args = _sequence(g, 1, 2, 7, 3, 2)
    st = _states(g, 1, 2, 3, 2)
    args.update(c_initial=st["c"], n_initial=st["n"], m_initial=st["m"], return_last_states=False, chunk_size=3,
                eps=0.0)
    check_gradients(g, fn, ref.mlstm_chunkwise, f"{_shapes(args)}, float64, chunk_size=3, eps=0", args,
                    wrt=["q", "k", "v", "i", "f", "c_initial", "n_initial"])
    _halves_property(g, fn, {"chunk_size": 3}, "S=12 split after 5 steps, chunk_size=3")

    args = _sequence(g, 1, 2, 13, 4, 3)
    outs = {L: g.call(fn, f"{_shapes(args)}, float64, chunk_size={L}", **args, chunk_size=L) for L in (1, 4, 5, 13, 20)}
    worst = max(float((o - outs[13]).detach().abs().max()) for o in outs.values())
    g.expect(worst < 1e-9, "properties", "the result does not depend on chunk_size (1, 4, 5, 13, 20 for S=13)",
             f"outputs for chunk sizes 1, 4, 5, 13 and 20 differ by up to {worst:.3g}")

    # The point of the form: attention only inside a chunk, never over the whole sequence.
    args = _sequence(g, 1, 2, 24, 4, 3)
    recorder = _WidestSquare()
    case = f"{_shapes(args)}, float64, chunk_size=8"
    g.call(recorder.wrap(fn), case, **args, chunk_size=8)
    g.expect(recorder.widest <= 8, "properties", f"works chunk by chunk ({case})",
             f"your function built a square matrix of size {recorder.widest} × {recorder.widest}: attention over "
             "more than one chunk. Inside a chunk the decay matrix is chunk_size × chunk_size; between chunks only "
             "the state (C, n, m) is carried")
