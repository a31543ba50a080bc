"""Module 00 and 01 graders: references pass, other correct versions pass, plausible mistakes are caught."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_passes as _passes
from helpers import assert_rejected_at as _rejected_at
from helpers import assert_stub_not_attempted
from helpers import grade_outcome as _grade

from course_lib.grading import EXERCISES
from course_lib.grading.core import MISTAKES
from course_lib.grading.rnn import clip_reference
from course_lib.rnn import reference as ref

MODULE_00 = ["softplus"]
MODULE_01 = ["rnn_cell", "rnn", "rnn_bptt", "clip_grad_norm", "rnn_step_jacobian"]
PARAMS = {
    "softplus": ["x"],
    "rnn_cell": ["x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "nonlinearity"],
    "rnn": ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "nonlinearity"],
    "rnn_bptt": ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "grad_out", "nonlinearity"],
    "clip_grad_norm": ["grads", "max_norm"],
    "rnn_step_jacobian": ["x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "nonlinearity"],
}


def clip_grad_norm(grads, max_norm):
    """The course's reference clipping (the grader's own)."""
    return clip_reference(grads, max_norm)


REFERENCES = {"softplus": F.softplus, "rnn_cell": ref.rnn_cell, "rnn": ref.rnn, "rnn_bptt": ref.rnn_bptt,
              "clip_grad_norm": clip_grad_norm, "rnn_step_jacobian": ref.rnn_step_jacobian}


def test_module_00_and_01_exercises_are_registered():
    assert [e.id for e in EXERCISES.values() if e.module == "00"] == MODULE_00
    assert [e.id for e in EXERCISES.values() if e.module == "01"] == MODULE_01


@pytest.mark.parametrize("exercise_id", MODULE_00 + MODULE_01)
def test_reference_passes(exercise_id):
    _passes(exercise_id, REFERENCES[exercise_id])


@pytest.mark.parametrize("exercise_id", MODULE_00 + MODULE_01)
def test_unsolved_stub_is_not_attempted(exercise_id):
    assert_stub_not_attempted(exercise_id, PARAMS[exercise_id])


DIAGNOSIS = "your output matches what you get when "


def _named(exercise_id, fn, description):
    """``fn`` is rejected and the feedback names the catalogued mistake ``description``."""
    passed, stage, text = _grade(exercise_id, fn)
    assert not passed and stage in ("values", "finite"), text
    assert DIAGNOSIS + description in text, text
    return text


def _description(exercise_id, fn_name):
    return next(m.description for m in MISTAKES[exercise_id] if m.fn.__name__ == fn_name)


@pytest.mark.parametrize("wrong", [m for e in MODULE_00 + MODULE_01 for m in MISTAKES[e]],
                         ids=lambda m: f"{m.exercise_id}:{m.fn.__name__}")
def test_each_catalogued_mistake_is_named(wrong):
    """Every entry of a catalogue, submitted as a learner's function, is named by its own description."""
    _named(wrong.exercise_id, wrong.fn, wrong.description)


@pytest.mark.parametrize("exercise_id", MODULE_00 + MODULE_01)
def test_every_exercise_has_a_catalogue(exercise_id):
    assert len(MISTAKES[exercise_id]) >= 4


# --------------------------------------------------------------------------------------------
# softplus (module 00)
# --------------------------------------------------------------------------------------------


def softplus_stable(x):
    """Correct: max(x, 0) + log(1 + exp(-|x|)), the textbook stable form."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


def softplus_logaddexp(x):
    """Correct: log(exp(0) + exp(x))."""
    return torch.logaddexp(x, torch.zeros_like(x))


@pytest.mark.parametrize("fn", [softplus_stable, softplus_logaddexp])
def test_softplus_other_correct_versions_pass(fn):
    _passes("softplus", fn)


@pytest.mark.parametrize("fn, stage", [
    (lambda x: torch.log(1 + torch.exp(x)), "finite"),     # naive: exp(1000) overflows to inf
    (lambda x: torch.log1p(torch.exp(x)), "finite"),       # log1p does not help the overflow
    (torch.relu, "values"),                                # the limit for large |x| only
    (torch.log1p, "finite"),                               # log(1 + x): NaN for x < -1
    (lambda x: F.softplus(x.double()), "dtype"),           # float32 in, float64 out
    (lambda x: torch.log(1 + torch.exp(x.clamp(max=80))), "values"),  # clamped instead of stable
], ids=["naive", "log1p(exp)", "relu", "log1p(x)", "float64 out", "clamped input"])
def test_softplus_mistakes_are_rejected(fn, stage):
    _rejected_at("softplus", lambda x: fn(x), stage)


def test_softplus_naive_feedback_names_the_overflow_input():
    text = _rejected_at("softplus", lambda x: torch.log(1 + torch.exp(x)), "finite")
    assert "x with entries from -1000 to 1000, float32" in text


@pytest.mark.parametrize("fn, mistake", [
    (lambda x: torch.log(1 + torch.exp(x)), "_softplus_naive"),
    (lambda x: torch.log1p(torch.exp(x)), "_softplus_naive"),
    (torch.relu, "_softplus_relu_only"),
    (torch.log1p, "_softplus_no_exp"),
    (lambda x: torch.log1p(torch.exp(-torch.abs(x))), "_softplus_no_max"),
], ids=["naive", "log1p(exp)", "relu", "log1p(x)", "no max"])
def test_softplus_mistakes_are_named(fn, mistake):
    _named("softplus", lambda x: fn(x), _description("softplus", mistake))


def test_softplus_mistake_outside_the_catalogue_says_none_matched():
    passed, stage, text = _grade("softplus", lambda x: torch.log(1 + torch.exp(x.clamp(max=80))))
    assert stage == "values" and "diagnosis" not in text
    assert "none of the 6 common mistakes the grader knows for this exercise gives this output" in text


# --------------------------------------------------------------------------------------------
# rnn_cell: one configurable cell, so that each mistake is one switch away from the right answer
# --------------------------------------------------------------------------------------------

RIGHT_CELL = dict(act="as_asked", act_where="outside", bias_ih_twice=False, drop_bias_hh=False,
                  transpose_hh=False, out_dtype=None, detach_h=False, inplace=False, none_ok=True)


def make_cell(**mistake):
    opts = {**RIGHT_CELL, **mistake}

    def rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
        act = {"tanh": torch.tanh, "relu": torch.relu}[nonlinearity]
        if opts["act"] == "none":
            act = lambda a: a
        elif opts["act"] == "always_tanh":
            act = torch.tanh
        if opts["detach_h"]:
            h = h.detach()
        w_hh = weight_hh.T if opts["transpose_hh"] else weight_hh
        a_in = x @ weight_ih.T
        if opts["act_where"] == "input_only":
            a_in = act(a_in)
        a = a_in + h @ w_hh.T
        if opts["none_ok"]:
            b_ih = bias_ih if bias_ih is not None else 0.0
            b_hh = bias_hh if bias_hh is not None else 0.0
        else:
            b_ih, b_hh = bias_ih + 0, bias_hh + 0
        a = a + b_ih + (b_ih if opts["bias_ih_twice"] else 0.0) + (0.0 if opts["drop_bias_hh"] else b_hh)
        if opts["inplace"] and not h.requires_grad:
            h.copy_(act(a))
            return h.clone()
        out = a if opts["act_where"] == "input_only" else act(a)
        return out.to(opts["out_dtype"]) if opts["out_dtype"] is not None else out

    return rnn_cell


def rnn_cell_per_unit(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Correct, written with a loop over hidden units and einsum."""
    units = []
    for j in range(weight_hh.shape[0]):
        a = torch.einsum("bi,i->b", x, weight_ih[j]) + torch.einsum("bk,k->b", h, weight_hh[j])
        if bias_ih is not None:
            a = a + bias_ih[j]
        if bias_hh is not None:
            a = a + bias_hh[j]
        units.append(torch.tanh(a) if nonlinearity == "tanh" else torch.clamp(a, min=0))
    return torch.stack(units, dim=1)


def rnn_cell_torch_op(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Correct: torch's own fused cell functions."""
    op = torch.rnn_tanh_cell if nonlinearity == "tanh" else torch.rnn_relu_cell
    return op(x, h, weight_ih, weight_hh, bias_ih, bias_hh)


def rnn_cell_linear(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Correct: F.linear with the concatenated input and state."""
    w = torch.cat([weight_ih, weight_hh], dim=1)
    b = sum(bias for bias in (bias_ih, bias_hh) if bias is not None)
    a = F.linear(torch.cat([x, h], dim=1), w, b if isinstance(b, torch.Tensor) else None)
    return torch.tanh(a) if nonlinearity == "tanh" else F.relu(a)


@pytest.mark.parametrize("fn", [rnn_cell_per_unit, rnn_cell_linear, make_cell()],
                         ids=["per unit", "F.linear", "configurable"])
def test_rnn_cell_other_correct_versions_pass(fn):
    _passes("rnn_cell", fn)


def rnn_cell_module(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Right numbers, forbidden means: nn.RNNCell with the given weights."""
    H, I = weight_ih.shape
    cell = torch.nn.RNNCell(I, H, bias=bias_ih is not None, nonlinearity=nonlinearity, dtype=x.dtype)
    params = {"weight_ih": weight_ih, "weight_hh": weight_hh}
    if bias_ih is not None:
        params.update(bias_ih=bias_ih, bias_hh=bias_hh)
    return torch.func.functional_call(cell, params, (x, h))


@pytest.mark.parametrize("fn, builtin", [(rnn_cell_torch_op, "torch.rnn_tanh_cell"),
                                         (rnn_cell_module, "torch.rnn_tanh_cell")], ids=["torch op", "nn.RNNCell"])
def test_rnn_cell_builtins_are_caught_by_the_rules(fn, builtin):
    text = _rejected_at("rnn_cell", fn, "rules")
    assert f"your function used {builtin}" in text and "write the RNN step yourself" in text


@pytest.mark.parametrize("mistake, name", [
    (dict(act="none"), "_cell_no_activation"),
    (dict(act_where="input_only"), "_cell_activation_on_input_only"),
    (dict(bias_ih_twice=True), "_cell_bias_ih_twice_plus_hh"),
    (dict(drop_bias_hh=True), "_cell_no_bias_hh"),
    (dict(transpose_hh=True), "_cell_w_hh_transposed"),
    (dict(act="always_tanh"), "_cell_always_tanh"),
], ids=["no tanh", "tanh misplaced", "bias twice", "no bias_hh", "W_hh transposed", "relu ignored"])
def test_rnn_cell_mistakes_are_named(mistake, name):
    _named("rnn_cell", make_cell(**mistake), _description("rnn_cell", name))


@pytest.mark.parametrize("mistake, stage", [
    (dict(act="none"), "values"),                     # tanh missing
    (dict(act_where="input_only"), "values"),         # tanh applied to x W_ih^T only (misplaced)
    (dict(bias_ih_twice=True), "values"),             # bias added twice
    (dict(drop_bias_hh=True), "values"),              # bias_hh forgotten
    (dict(transpose_hh=True), "values"),              # W_hh transposed (square, so it runs)
    (dict(act="always_tanh"), "values"),              # nonlinearity='relu' ignored
    (dict(none_ok=False), "runs"),                    # biases=None not handled
    (dict(out_dtype=torch.float64), "dtype"),         # float32 in, float64 out
    (dict(detach_h=True), "gradients"),               # state detached: no gradient to h or W_hh
    (dict(inplace=True), "runs"),                     # h overwritten in place
], ids=["no tanh", "tanh misplaced", "bias twice", "no bias_hh", "W_hh transposed", "relu ignored",
        "None biases", "float64 out", "detached h", "in-place h"])
def test_rnn_cell_mistakes_are_rejected(mistake, stage):
    _rejected_at("rnn_cell", make_cell(**mistake), stage)


def test_rnn_cell_feedback_checks_the_range_of_tanh():
    text = _named("rnn_cell", make_cell(act="none"), _description("rnn_cell", "_cell_no_activation"))
    assert "some entries of h_new are outside (-1, 1), the range of tanh" in text


def test_rnn_cell_with_w_ih_transposed_fails_to_run_and_shows_the_line():
    def rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
        return torch.tanh(x @ weight_ih + h @ weight_hh.T)

    text = _rejected_at("rnn_cell", rnn_cell, "runs")
    assert "RuntimeError" in text and "x @ weight_ih + h @ weight_hh.T" in text


# --------------------------------------------------------------------------------------------
# rnn: a configurable loop over the reference cell
# --------------------------------------------------------------------------------------------

RIGHT_SEQ = dict(carry=True, h_n="last", out="all", time_major=False, detach_every=False, nonlinearity=None)


def make_rnn(**mistake):
    opts = {**RIGHT_SEQ, **mistake}

    def rnn(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
        nl = opts["nonlinearity"] or nonlinearity
        h, states = h0, []
        for t in range(x.shape[1]):
            h_in = h if opts["carry"] else h0
            if opts["detach_every"]:
                h_in = h_in.detach()
            h = ref.rnn_cell(x[:, t], h_in, weight_ih, weight_hh, bias_ih, bias_hh, nl)
            states.append(h)
        if opts["out"] == "all":
            out = torch.stack(states, dim=1)
        elif opts["out"] == "without_last":
            out = torch.stack(states[:-1], dim=1) if len(states) > 1 else x.new_zeros(x.shape[0], 0, h.shape[1])
        else:  # "shifted": h0 .. h_{S-2}, the states *before* each step
            out = torch.stack([h0] + states[:-1], dim=1)
        h_n = {"last": states[-1], "first": states[0], "h0": h0}[opts["h_n"]]
        return (out.transpose(0, 1) if opts["time_major"] else out), h_n

    return rnn


def rnn_via_torch(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Correct: torch.nn.RNN with the given weights, through torch.func.functional_call."""
    H, I = weight_ih.shape
    module = torch.nn.RNN(I, H, nonlinearity=nonlinearity, bias=bias_ih is not None, batch_first=True,
                          dtype=x.dtype)
    params = {"weight_ih_l0": weight_ih, "weight_hh_l0": weight_hh}
    if bias_ih is not None:
        params.update(bias_ih_l0=bias_ih, bias_hh_l0=bias_hh)
    out, h_n = torch.func.functional_call(module, params, (x, h0.unsqueeze(0)))
    return out, h_n[0]


def rnn_precomputed_inputs(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Correct: the input projection for all steps at once, then a loop over the recurrence only."""
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    b = sum(bias for bias in (bias_ih, bias_hh) if bias is not None)
    u = x @ weight_ih.T + b  # (B, S, H)
    h, outs = h0, []
    for t in range(x.shape[1]):
        h = act(u[:, t] + h @ weight_hh.T)
        outs.append(h)
    return torch.stack(outs, dim=1), h


@pytest.mark.parametrize("fn", [rnn_precomputed_inputs, make_rnn()], ids=["precomputed inputs", "configurable"])
def test_rnn_other_correct_versions_pass(fn):
    _passes("rnn", fn)


def test_rnn_with_nn_rnn_is_caught_by_the_rules():
    text = _rejected_at("rnn", rnn_via_torch, "rules")
    assert "your function used torch.rnn_tanh" in text


@pytest.mark.parametrize("mistake, name", [
    (dict(carry=False), "_rnn_not_carried"),
    (dict(h_n="first"), "_rnn_hn_first"),
    (dict(h_n="h0"), "_rnn_hn_h0"),
    (dict(out="shifted"), "_rnn_out_shifted"),
    (dict(nonlinearity="tanh"), "_rnn_always_tanh"),
], ids=["not carried", "h_n first", "h_n = h0", "out shifted", "relu ignored"])
def test_rnn_mistakes_are_named(mistake, name):
    _named("rnn", make_rnn(**mistake), _description("rnn", name))


def test_rnn_feedback_gives_the_status_of_both_outputs():
    text = _named("rnn", make_rnn(h_n="first"), _description("rnn", "_rnn_hn_first"))
    assert "status: out ✓, h_n ✗" in text


@pytest.mark.parametrize("mistake, stage", [
    (dict(carry=False), "values"),                    # state not carried: h0 at every step
    (dict(h_n="first"), "values"),                    # h_n from the first step
    (dict(h_n="h0"), "values"),                       # h_n is the initial state
    (dict(out="without_last"), "shapes"),             # output missing the last step
    (dict(out="shifted"), "values"),                  # output holds the states before each step
    (dict(time_major=True), "shapes"),                # (S, B, H) instead of batch first
    (dict(nonlinearity="tanh"), "values"),            # relu ignored
    (dict(detach_every=True), "gradients"),           # truncated to one step: no gradient through time
], ids=["not carried", "h_n first", "h_n = h0", "out missing last", "out shifted", "time major",
        "relu ignored", "detached each step"])
def test_rnn_mistakes_are_rejected(mistake, stage):
    _rejected_at("rnn", make_rnn(**mistake), stage)


# --------------------------------------------------------------------------------------------
# rnn_bptt: a configurable copy of the manual backward pass
# --------------------------------------------------------------------------------------------

RIGHT_BPTT = dict(stop_at=0, deriv_at="h_t", drop_h0=False, bias_last_only=False, dx_via_hh=False,
                  grad_out_last_only=False, deriv="as_asked", autograd=False, out_dtype=None)


def make_bptt(**mistake):
    opts = {**RIGHT_BPTT, **mistake}

    def rnn_bptt(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
        if opts["autograd"]:
            leaves = [t.detach().clone().requires_grad_(True) for t in (x, h0, weight_ih, weight_hh,
                                                                        bias_ih, bias_hh)]
            out, _ = ref.rnn(*leaves, nonlinearity=nonlinearity)
            grads = torch.autograd.grad((out * grad_out).sum(), leaves)
            return dict(zip(("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"), grads, strict=True))
        out, _ = ref.rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
        S = x.shape[1]
        states = [h0] + [out[:, t] for t in range(S)]  # states[t + 1] = h_t
        d_w_ih, d_w_hh = torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
        d_b = torch.zeros_like(bias_ih)
        d_x = []
        dh = torch.zeros_like(h0)
        for t in reversed(range(opts["stop_at"], S)):
            if not opts["grad_out_last_only"] or t == S - 1:
                dh = dh + grad_out[:, t]
            at = states[t + 1] if opts["deriv_at"] == "h_t" else states[t]
            if nonlinearity == "relu" and opts["deriv"] == "as_asked":
                da = dh * (at > 0).to(x.dtype)
            else:
                da = dh * (1 - at**2)
            d_w_ih = d_w_ih + da.T @ x[:, t]
            d_w_hh = d_w_hh + da.T @ states[t]
            if not opts["bias_last_only"] or t == S - 1:
                d_b = d_b + da.sum(0)
            d_x.insert(0, da @ (weight_hh if opts["dx_via_hh"] else weight_ih))
            dh = da @ weight_hh
        d_x = [torch.zeros_like(d_x[0])] * opts["stop_at"] + d_x
        grads = {"x": torch.stack(d_x, dim=1), "h0": torch.zeros_like(h0) if opts["drop_h0"] else dh,
                 "weight_ih": d_w_ih, "weight_hh": d_w_hh, "bias_ih": d_b, "bias_hh": d_b.clone()}
        if opts["out_dtype"] is not None:
            grads = {k: v.to(opts["out_dtype"]) for k, v in grads.items()}
        return grads

    return rnn_bptt


def rnn_bptt_batched_weights(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
    """Correct: collect every da_t first, then all weight gradients with one einsum each."""
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    S = x.shape[1]
    h, hs = h0, [h0]
    for t in range(S):
        h = act(x[:, t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
        hs.append(h)
    H_all = torch.stack(hs, dim=1)  # (B, S + 1, H): h_{-1} = h0, h_0 ... h_{S-1}
    deriv = 1 - H_all[:, 1:] ** 2 if nonlinearity == "tanh" else (H_all[:, 1:] > 0).to(x.dtype)
    da = torch.empty_like(grad_out)
    carry = torch.zeros_like(h0)
    for t in range(S - 1, -1, -1):
        da[:, t] = (grad_out[:, t] + carry) * deriv[:, t]
        carry = da[:, t] @ weight_hh
    d_b = da.sum(dim=(0, 1))
    return {"x": da @ weight_ih, "h0": carry,
            "weight_ih": torch.einsum("bsh,bsi->hi", da, x),
            "weight_hh": torch.einsum("bsh,bsk->hk", da, H_all[:, :-1]),
            "bias_ih": d_b, "bias_hh": d_b}


@pytest.mark.parametrize("fn", [rnn_bptt_batched_weights, make_bptt()], ids=["batched weights", "configurable"])
def test_rnn_bptt_other_correct_versions_pass(fn):
    _passes("rnn_bptt", fn)


@pytest.mark.parametrize("mistake, stage", [
    (dict(stop_at=1), "values"),                      # truncated one step short: step 0 never visited
    (dict(deriv_at="h_prev"), "values"),              # tanh' taken at h_{t-1}: 1 - h_{t-1}^2
    (dict(drop_h0=True), "values"),                   # h0 gradient dropped
    (dict(bias_last_only=True), "values"),            # bias gradient only from the last step
    (dict(dx_via_hh=True), "shapes"),                 # x gradient through W_hh: (B, S, H), not (B, S, I)
    (dict(grad_out_last_only=True), "values"),        # loss gradient only at the last step
    (dict(deriv="tanh"), "values"),                   # relu derivative ignored
    (dict(out_dtype=torch.float64), "dtype"),         # float32 in, float64 out
    (dict(autograd=True), "runs"),                    # autograd is not available (inference_mode)
], ids=["one step short", "tanh' at h_{t-1}", "no h0 grad", "bias last step", "dx via W_hh",
        "grad_out last only", "relu ignored", "float64 out", "uses autograd"])
def test_rnn_bptt_mistakes_are_rejected(mistake, stage):
    _rejected_at("rnn_bptt", make_bptt(**mistake), stage)


@pytest.mark.parametrize("mistake, fragment", [
    (dict(stop_at=1), "the backward loop stops one step short"),
    (dict(deriv_at="h_prev"), "φ′ is evaluated at the previous state h_{t-1}"),
    (dict(drop_h0=True), "the gradient of h0 is left at zero"),
    (dict(bias_last_only=True), "the bias gradients take ε from the last step only"),
    (dict(grad_out_last_only=True), "grad_out enters at the last step only"),
    (dict(deriv="tanh"), "nonlinearity='relu' is ignored"),
], ids=["one step short", "tanh' at h_{t-1}", "no h0 grad", "bias last step", "grad_out last only", "relu ignored"])
def test_rnn_bptt_mistakes_are_named(mistake, fragment):
    passed, stage, text = _grade("rnn_bptt", make_bptt(**mistake))
    assert stage == "values" and DIAGNOSIS + fragment in text, text


def test_rnn_bptt_status_lists_every_gradient():
    text = _grade("rnn_bptt", make_bptt(drop_h0=True))[2]
    assert ("status: grad['x'] ✓, grad['h0'] ✗, grad['weight_ih'] ✓, grad['weight_hh'] ✓, grad['bias_ih'] ✓, "
            "grad['bias_hh'] ✓") in text


def rnn_bptt_autograd_switched_back_on(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
    """Right numbers, forbidden means: autograd re-enabled inside the grader's inference mode."""
    with torch.inference_mode(False), torch.enable_grad():
        leaves = [t.clone().requires_grad_(True) for t in (x, h0, weight_ih, weight_hh, bias_ih, bias_hh)]
        out, _ = ref.rnn(*leaves, nonlinearity=nonlinearity)
        grads = torch.autograd.grad((out * grad_out.clone()).sum(), leaves)
    return {k: gr.detach() for k, gr in zip(("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"), grads,
                                             strict=True)}


def rnn_bptt_backward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
    """The same with .backward() and .grad."""
    with torch.inference_mode(False), torch.enable_grad():
        leaves = [t.clone().requires_grad_(True) for t in (x, h0, weight_ih, weight_hh, bias_ih, bias_hh)]
        out, _ = ref.rnn(*leaves, nonlinearity=nonlinearity)
        (out * grad_out.clone()).sum().backward()
    return {k: t.grad for k, t in zip(("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"), leaves,
                                      strict=True)}


def rnn_bptt_torch_func(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
    """The same with torch.func.vjp."""
    with torch.inference_mode(False):
        args = [t.clone() for t in (x, h0, weight_ih, weight_hh, bias_ih, bias_hh)]
        _, vjp = torch.func.vjp(lambda *a: ref.rnn(*a, nonlinearity=nonlinearity)[0], *args)
        grads = vjp(grad_out.clone())
    return dict(zip(("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"), grads, strict=True))


@pytest.mark.parametrize("fn", [rnn_bptt_autograd_switched_back_on, rnn_bptt_backward, rnn_bptt_torch_func],
                         ids=["grad", "backward", "torch.func.vjp"])
def test_rnn_bptt_autograd_is_caught_by_the_rules(fn):
    text = _rejected_at("rnn_bptt", fn, "rules")
    assert "backpropagate by hand, without autograd" in text


def test_rnn_bptt_forward_pass_with_the_builtin_cell_is_caught_by_the_rules():
    def rnn_bptt(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
        h = h0
        for t in range(x.shape[1]):  # the forward states from torch's fused cell
            h = torch.rnn_tanh_cell(x[:, t], h, weight_ih, weight_hh, bias_ih, bias_hh)
        return ref.rnn_bptt(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity)

    text = _rejected_at("rnn_bptt", rnn_bptt, "rules")
    assert "your function used torch.rnn_tanh" in text


def test_rnn_bptt_plain_autograd_fails_to_run_and_says_autograd_is_off():
    text = _rejected_at("rnn_bptt", make_bptt(autograd=True), "runs")
    assert "autograd is off here: the grader calls this function inside torch.inference_mode()" in text


def test_rnn_bptt_missing_key_fails_at_types():
    def rnn_bptt(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
        grads = ref.rnn_bptt(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity)
        del grads["h0"]
        return grads

    text = _rejected_at("rnn_bptt", rnn_bptt, "types")
    assert "missing keys: h0" in text


# --------------------------------------------------------------------------------------------
# clip_grad_norm
# --------------------------------------------------------------------------------------------


def clip_with_torch(grads, max_norm):
    """Correct: torch's own clipping, which scales the ``.grad`` of parameters (here: of stand-ins)."""
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params]


def clip_with_flat_vector(grads, max_norm):
    """Correct: one flat vector, vector_norm, and a clamp."""
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * factor for g in grads]


@pytest.mark.parametrize("fn", [clip_with_torch, clip_with_flat_vector], ids=["torch", "flat vector"])
def test_clip_grad_norm_other_correct_versions_pass(fn):
    _passes("clip_grad_norm", fn)


def clip_per_tensor(grads, max_norm):
    return [g * min(1.0, max_norm / (float(g.norm()) + 1e-6)) for g in grads]


def clip_always(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * (max_norm / (total + 1e-6)) for g in grads]


def clip_without_sqrt(grads, max_norm):
    total = sum((g**2).sum() for g in grads)
    return [g * min(1.0, max_norm / (float(total) + 1e-6)) for g in grads]


def clip_by_value(grads, max_norm):
    return [g.clamp(-max_norm, max_norm) for g in grads]


def clip_in_place(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    factor = min(1.0, max_norm / (float(total) + 1e-6))
    for g in grads:
        g.mul_(factor)
    return grads


def clip_concatenated(grads, max_norm):
    flat = torch.cat([g.flatten() for g in grads])
    return flat * min(1.0, max_norm / (float(flat.norm()) + 1e-6))


@pytest.mark.parametrize("fn, stage", [
    (clip_per_tensor, "values"),                      # each tensor clipped on its own
    (clip_always, "values"),                          # always scaled to max_norm, also when smaller
    (clip_without_sqrt, "values"),                    # squared norm used as the norm
    (clip_by_value, "values"),                        # clipping by value, not by norm
    (clip_in_place, "runs"),                          # the learner's gradients changed in place
    (clip_concatenated, "types"),                     # one flat tensor instead of a list
], ids=["per tensor", "always scale", "no sqrt", "by value", "in place", "flat tensor"])
def test_clip_grad_norm_mistakes_are_rejected(fn, stage):
    _rejected_at("clip_grad_norm", fn, stage)


@pytest.mark.parametrize("fn, name", [
    (clip_per_tensor, "_clip_per_tensor"), (clip_always, "_clip_always"), (clip_without_sqrt, "_clip_no_sqrt"),
    (clip_by_value, "_clip_by_value"),
], ids=["per tensor", "always scale", "no sqrt", "by value"])
def test_clip_grad_norm_mistakes_are_named(fn, name):
    text = _named("clip_grad_norm", fn, _description("clip_grad_norm", name))
    assert "status: grads[0] " in text


def test_clip_grad_norm_per_tensor_feedback_shows_the_different_factors():
    text = _named("clip_grad_norm", clip_per_tensor, _description("clip_grad_norm", "_clip_per_tensor"))
    assert "your tensors were scaled by different factors" in text and "above max_norm=1" in text


def test_clip_grad_norm_always_scaling_says_small_gradients_come_back_unchanged():
    text = _named("clip_grad_norm", clip_always, _description("clip_grad_norm", "_clip_always"))
    assert "already below max_norm=1: they should come back unchanged" in text


# --------------------------------------------------------------------------------------------
# rnn_step_jacobian: the derivation exercise, checked against autograd in float64
# --------------------------------------------------------------------------------------------


def _pre_activation(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    a = x @ weight_ih.T + h @ weight_hh.T
    return a + sum(b for b in (bias_ih, bias_hh) if b is not None)


def jacobian_einsum(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Correct: diag(phi') as an explicit diagonal matrix, multiplied with einsum."""
    a = _pre_activation(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    deriv = 1 - torch.tanh(a) ** 2 if nonlinearity == "tanh" else (a > 0).to(a.dtype)
    return torch.einsum("bij,jk->bik", torch.diag_embed(deriv), weight_hh)


def jacobian_loop(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Correct: one batch element and one row at a time, tanh' written as 1/cosh^2."""
    rows = []
    for b in range(x.shape[0]):
        a = _pre_activation(x[b:b + 1], h[b:b + 1], weight_ih, weight_hh, bias_ih, bias_hh)[0]
        deriv = 1 / torch.cosh(a) ** 2 if nonlinearity == "tanh" else torch.where(a > 0, 1.0, 0.0).to(a.dtype)
        rows.append(torch.stack([deriv[i] * weight_hh[i] for i in range(weight_hh.shape[0])]))
    return torch.stack(rows)


@pytest.mark.parametrize("fn", [jacobian_einsum, jacobian_loop], ids=["einsum", "loop"])
def test_rnn_step_jacobian_other_correct_versions_pass(fn):
    passed, _, text = _grade("rnn_step_jacobian", fn)
    assert passed, text
    assert "diagnosis" not in text


def jacobian_by_autograd(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Right values, wrong method: the statement asks for the derived formula, not autograd."""
    leaf = h.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        h_new = ref.rnn_cell(x, leaf, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
        rows = [torch.autograd.grad(h_new[:, i].sum(), leaf, retain_graph=True)[0] for i in range(h_new.shape[1])]
    return torch.stack(rows, dim=1)


def jacobian_by_jacrev(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Right values, wrong method: torch.func.jacrev runs autograd inside."""
    def step(hh, xx):
        return ref.rnn_cell(xx, hh, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)

    return torch.func.vmap(torch.func.jacrev(step))(h, x)


def jacobian_float64(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    return ref.rnn_step_jacobian(x.double(), h.double(), weight_ih.double(), weight_hh.double(),
                                 None if bias_ih is None else bias_ih.double(),
                                 None if bias_hh is None else bias_hh.double(), nonlinearity)


def jacobian_batch_mean(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    return ref.rnn_step_jacobian(x, h, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity).mean(0)


@pytest.mark.parametrize("fn, stage", [
    (jacobian_by_autograd, "rules"),                  # autograd instead of the derivation
    (jacobian_by_jacrev, "rules"),                    # torch.func.jacrev is autograd too
    (jacobian_float64, "dtype"),                      # float32 in, float64 out
    (jacobian_batch_mean, "shapes"),                  # one (H, H) matrix averaged over the batch
], ids=["autograd", "jacrev", "float64 out", "batch mean"])
def test_rnn_step_jacobian_mistakes_are_rejected(fn, stage):
    text = _rejected_at("rnn_step_jacobian", fn, stage)
    if stage == "rules":
        assert "without autograd" in text


@pytest.mark.parametrize("name, stage", [
    ("_jac_deriv_at_old_state", "values"), ("_jac_transposed", "values"), ("_jac_no_deriv", "values"),
    ("_jac_columns", "values"), ("_jac_deriv_of_pre_activation", "values"), ("_jac_always_tanh", "values"),
])
def test_rnn_step_jacobian_catalogued_mistakes_fail_at_values_and_are_named(name, stage):
    wrong = next(m for m in MISTAKES["rnn_step_jacobian"] if m.fn.__name__ == name)
    text = _rejected_at("rnn_step_jacobian", wrong.fn, stage)
    assert DIAGNOSIS + wrong.description in text
