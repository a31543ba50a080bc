"""Module 02 graders: the references pass, other correct versions pass, plausible mistakes are caught."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_passes as _passes
from helpers import assert_rejected_at as _rejected_at
from helpers import assert_stub_not_attempted, grade_outcome
from torch import nn

from course_lib.grading import EXERCISES, check
from course_lib.grading.core import MISTAKES
from course_lib.lstm import reference as ref

MODULE_02 = ["lstm_cell", "lstm", "cec_gradient", "forget_half_life", "init_forget_bias", "gru_cell",
             "predict_forget_memory", "lstm_bptt"]
FUNCTIONS_02 = [e for e in MODULE_02 if e != "predict_forget_memory"]  # graded functions (the prediction is a record)
PARAMS = {
    "lstm_cell": ["x", "state", "weight_ih", "weight_hh", "bias_ih", "bias_hh"],
    "lstm": ["x", "state", "weight_ih", "weight_hh", "bias_ih", "bias_hh"],
    "cec_gradient": ["f_pre"],
    "forget_half_life": ["forget_bias"],
    "init_forget_bias": ["lstm_module", "value"],
    "gru_cell": ["x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"],
    "lstm_bptt": ["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "grad_out"],
}


def test_module_02_exercises_are_registered():
    assert [e.id for e in EXERCISES.values() if e.module == "02"] == MODULE_02


@pytest.mark.parametrize("exercise_id", FUNCTIONS_02)
def test_reference_passes(exercise_id):
    passed, _, text = grade_outcome(exercise_id, getattr(ref, exercise_id))
    assert passed, text


@pytest.mark.parametrize("exercise_id", FUNCTIONS_02)
def test_unsolved_stub_is_not_attempted(exercise_id):
    assert_stub_not_attempted(exercise_id, PARAMS[exercise_id])

CATALOGUED_02 = ["lstm_cell", "lstm", "cec_gradient", "forget_half_life", "init_forget_bias"]


DIAGNOSIS = "your output matches what you get when "


def _named(exercise_id, fn, fragment, stages=("values", "finite")):
    """``fn`` is rejected and the feedback names the catalogued mistake (``fragment`` of its description)."""
    passed, stage, text = grade_outcome(exercise_id, fn)
    assert not passed and stage in stages, text
    assert DIAGNOSIS + fragment in text, text
    return text


@pytest.mark.parametrize("wrong", [m for e in CATALOGUED_02 for m in MISTAKES[e]],
                         ids=lambda m: f"{m.exercise_id}:{m.fn.__name__}")
def test_each_catalogued_mistake_is_named(wrong):
    """Every entry of a catalogue, submitted as a learner's function, is named by its own description."""
    if wrong.exercise_id == "init_forget_bias":
        _named(wrong.exercise_id, wrong.fn, wrong.description, stages=("values", "properties"))
    else:
        _named(wrong.exercise_id, wrong.fn, wrong.description)


@pytest.mark.parametrize("exercise_id", CATALOGUED_02)
def test_every_exercise_has_a_catalogue(exercise_id):
    assert len(MISTAKES[exercise_id]) >= 5


# --------------------------------------------------------------------------------------------
# lstm_cell: a configurable cell, so that each mistake is one switch away from the right answer
# --------------------------------------------------------------------------------------------

RIGHT = dict(order="ifgo", g_act=torch.tanh, tanh_c=True, forget=True, swap_out=False, bias_hh=True,
             out_dtype=None, detach_state=False, inplace=False)


def make_cell(**mistake):
    opts = {**RIGHT, **mistake}

    def lstm_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        H = weight_hh.shape[1]
        h, c = state if state is not None else (x.new_zeros(x.shape[0], H), x.new_zeros(x.shape[0], H))
        if opts["detach_state"]:
            h, c = h.detach(), c.detach()
        a = x @ weight_ih.T + h @ weight_hh.T
        if bias_ih is not None:
            a = a + bias_ih
        if bias_hh is not None and opts["bias_hh"]:
            a = a + bias_hh
        pre = dict(zip(opts["order"], a.chunk(4, dim=-1), strict=True))
        i, f, o = torch.sigmoid(pre["i"]), torch.sigmoid(pre["f"]), torch.sigmoid(pre["o"])
        g = opts["g_act"](pre["g"])
        if opts["inplace"]:
            c_new = c.mul_(f).add_(i * g)
        else:
            c_new = f * c + i * g if opts["forget"] else i * g
        h_new = o * (torch.tanh(c_new) if opts["tanh_c"] else c_new)
        if opts["out_dtype"] is not None:
            h_new, c_new = h_new.to(opts["out_dtype"]), c_new.to(opts["out_dtype"])
        return (c_new, h_new) if opts["swap_out"] else (h_new, c_new)

    return lstm_cell


def lstm_cell_per_gate(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Correct, written with one matrix product per gate."""
    H = weight_hh.shape[1]
    if state is None:
        state = (torch.zeros(x.shape[0], H, dtype=x.dtype), torch.zeros(x.shape[0], H, dtype=x.dtype))
    h, c = state
    b = torch.zeros(4 * H, dtype=x.dtype)
    if bias_ih is not None:
        b = b + bias_ih
    if bias_hh is not None:
        b = b + bias_hh
    gate = [x @ weight_ih[k * H:(k + 1) * H].T + h @ weight_hh[k * H:(k + 1) * H].T + b[k * H:(k + 1) * H]
            for k in range(4)]
    c_new = torch.sigmoid(gate[1]) * c + torch.sigmoid(gate[0]) * torch.tanh(gate[2])
    return torch.sigmoid(gate[3]) * torch.tanh(c_new), c_new


def lstm_cell_torch_op(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Correct: torch's own fused cell."""
    if state is None:
        zeros = x.new_zeros(x.shape[0], weight_hh.shape[1])
        state = (zeros, zeros)
    return torch.lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh)


@pytest.mark.parametrize("fn", [lstm_cell_per_gate, make_cell()])
def test_lstm_cell_other_correct_versions_pass(fn):
    _passes("lstm_cell", fn)


def lstm_cell_module(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Right numbers, forbidden means: nn.LSTMCell with the given weights."""
    H4, I = weight_ih.shape
    cell = nn.LSTMCell(I, H4 // 4, bias=bias_ih is not None, dtype=x.dtype)
    params = {"weight_ih": weight_ih, "weight_hh": weight_hh}
    if bias_ih is not None:
        params.update(bias_ih=bias_ih, bias_hh=bias_hh)
    return torch.func.functional_call(cell, params, (x, state))


@pytest.mark.parametrize("fn", [lstm_cell_torch_op, lstm_cell_module], ids=["torch.lstm_cell", "nn.LSTMCell"])
def test_lstm_cell_builtins_are_caught_by_the_rules(fn):
    text = _rejected_at("lstm_cell", fn, "rules")
    assert "your function used torch.lstm_cell" in text and "write the LSTM yourself" in text


@pytest.mark.parametrize("mistake, fragment", [
    (dict(order="figo"), "the input and forget gates are swapped"),
    (dict(order="ifog"), "the cell candidate g and the output gate o are swapped"),
    (dict(g_act=torch.sigmoid), "the cell candidate g goes through a sigmoid"),
    (dict(tanh_c=False), "h_t = o_t ⊙ c_t: the tanh of the cell is missing"),
    (dict(forget=False), "the forget gate is ignored and the old cell dropped"),
    (dict(swap_out=True), "the pair is returned as (c, h)"),
    (dict(bias_hh=False), "bias_hh is left out"),
], ids=["i/f swapped", "g/o swapped", "sigmoid g", "no tanh(c)", "no forget gate", "returns (c, h)", "no bias_hh"])
def test_lstm_cell_mistakes_are_named(mistake, fragment):
    _named("lstm_cell", make_cell(**mistake), fragment)


def test_lstm_cell_tanh_of_the_old_cell_is_named_with_the_status_of_h_and_c():
    def old_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        h, c = state if state is not None else (x.new_zeros(x.shape[0], weight_hh.shape[1]),) * 2
        i, f, g, o = (x @ weight_ih.T + h @ weight_hh.T + bias_ih + bias_hh).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c_new

    text = _named("lstm_cell", old_cell, "h_t = o_t ⊙ tanh(c_{t-1}): the tanh is taken of the old cell")
    assert "status: h ✗, c ✓" in text


@pytest.mark.parametrize("mistake, stage", [
    (dict(order="figo"), "values"),                       # input and forget gate swapped
    (dict(order="ifog"), "values"),                       # cell candidate and output gate swapped
    (dict(g_act=torch.sigmoid), "values"),                # sigmoid on the candidate g
    (dict(tanh_c=False), "values"),                       # h_t = o_t * c_t
    (dict(forget=False), "values"),                       # c_t = i_t * g_t: the forget gate ignored
    (dict(swap_out=True), "values"),                      # returns (c, h)
    (dict(bias_hh=False), "values"),                      # bias_hh dropped
    (dict(out_dtype=torch.float64), "dtype"),             # float32 in, float64 out
    (dict(detach_state=True), "gradients"),               # no gradient to the initial state
    (dict(inplace=True), "runs"),                         # c updated in place: the learner's state changes
], ids=["i/f swapped", "g/o swapped", "sigmoid g", "no tanh(c)", "no forget gate", "returns (c, h)",
        "no bias_hh", "float64 out", "detached state", "in-place c"])
def test_lstm_cell_mistakes_are_rejected(mistake, stage):
    _rejected_at("lstm_cell", make_cell(**mistake), stage)


def test_lstm_cell_feedback_checks_the_range_of_h():
    """A mistake outside the catalogue still gets a pointer: h = o ⊙ tanh(c) lies in (-1, 1)."""
    def gate_added(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        h, c = state if state is not None else (x.new_zeros(x.shape[0], weight_hh.shape[1]),) * 2
        i, f, g, o = (x @ weight_ih.T + h @ weight_hh.T + bias_ih + bias_hh).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) + torch.tanh(c_new), c_new  # the output gate added instead of multiplied

    passed, stage, text = grade_outcome("lstm_cell", gate_added)
    assert stage == "values" and "status: h ✗, c ✓" in text
    assert "(none of the 11 common mistakes the grader knows for this exercise gives this output)" in text
    assert "some |h| are >= 1, but h = o ⊙ tanh(c) always lies in (-1, 1)" in text


def test_lstm_cell_without_state_none_is_rejected_at_runs():
    def no_none(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        h, c = state
        return make_cell()(x, (h, c), weight_ih, weight_hh, bias_ih, bias_hh)

    _rejected_at("lstm_cell", no_none, "runs")


def test_lstm_cell_returning_only_h_is_rejected_at_types():
    def only_h(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        return make_cell()(x, state, weight_ih, weight_hh, bias_ih, bias_hh)[0]

    _rejected_at("lstm_cell", only_h, "types")


# --------------------------------------------------------------------------------------------
# lstm
# --------------------------------------------------------------------------------------------

def make_lstm(cell=None, carry=True, out_is_c=False, time_major=False, swap_state=False, ignore_state=False):
    cell = cell or make_cell()

    def lstm(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        B, S, _ = x.shape
        H = weight_hh.shape[1]
        zeros = (x.new_zeros(B, H), x.new_zeros(B, H))
        start = zeros if state is None or ignore_state else state
        h, c = start
        outs = []
        for t in range(S):
            h, c = cell(x[:, t], (h, c) if carry else start, weight_ih, weight_hh, bias_ih, bias_hh)
            outs.append(c if out_is_c else h)
        out = torch.stack(outs, dim=0 if time_major else 1)
        return out, ((c, h) if swap_state else (h, c))

    return lstm


def lstm_projected_once(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Correct: the input projection for all steps at once, then the recurrence."""
    B, S, _ = x.shape
    H = weight_hh.shape[1]
    h, c = state if state is not None else (x.new_zeros(B, H), x.new_zeros(B, H))
    xw = x @ weight_ih.T  # (B, S, 4H)
    for b in (bias_ih, bias_hh):
        if b is not None:
            xw = xw + b
    outs = []
    for t in range(S):
        i, f, g, o = (xw[:, t] + h @ weight_hh.T).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1), (h, c)


def lstm_with_torch_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Correct: torch's fused cell in a loop."""
    return make_lstm(cell=lstm_cell_torch_op)(x, state, weight_ih, weight_hh, bias_ih, bias_hh)


@pytest.mark.parametrize("fn", [ref.lstm, lstm_projected_once, make_lstm()])
def test_lstm_other_correct_versions_pass(fn):
    _passes("lstm", fn)


def lstm_module(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Right numbers, forbidden means: nn.LSTM with the given weights."""
    H4, I = weight_ih.shape
    layer = nn.LSTM(I, H4 // 4, bias=bias_ih is not None, batch_first=True, dtype=x.dtype)
    params = {"weight_ih_l0": weight_ih, "weight_hh_l0": weight_hh}
    if bias_ih is not None:
        params.update(bias_ih_l0=bias_ih, bias_hh_l0=bias_hh)
    state = None if state is None else (state[0][None], state[1][None])
    out, (h, c) = torch.func.functional_call(layer, params, (x, state))
    return out, (h[0], c[0])


@pytest.mark.parametrize("fn, builtin", [(lstm_with_torch_cell, "torch.lstm_cell"), (lstm_module, "torch.lstm")],
                         ids=["torch.lstm_cell", "nn.LSTM"])
def test_lstm_builtins_are_caught_by_the_rules(fn, builtin):
    text = _rejected_at("lstm", fn, "rules")
    assert f"your function used {builtin}" in text


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(carry=False), "the state is not carried"),
    (dict(cell=make_cell(order="figo")), "inside the cell, the input and forget gates are swapped"),
    (dict(cell=make_cell(order="ifog")), "inside the cell, the cell candidate g and the output gate o are swapped"),
    (dict(cell=make_cell(g_act=torch.sigmoid)), "inside the cell, the cell candidate g goes through a sigmoid"),
    (dict(cell=make_cell(tanh_c=False)), "inside the cell, h_t = o_t ⊙ c_t"),
    (dict(cell=make_cell(forget=False)), "inside the cell, the forget gate is ignored"),
    (dict(out_is_c=True), "out collects the cell states c_t"),
    (dict(swap_state=True), "the final state is returned as (c_n, h_n)"),
    (dict(ignore_state=True), "the given state is ignored"),
], ids=["state not carried", "i/f swapped", "g/o swapped", "sigmoid g", "no tanh(c)", "no forget gate",
        "out is c", "returns (c_n, h_n)", "state ignored"])
def test_lstm_mistakes_are_named(kwargs, fragment):
    _named("lstm", make_lstm(**kwargs), fragment)


@pytest.mark.parametrize("kwargs, stage", [
    (dict(carry=False), "values"),                        # state not carried between steps
    (dict(cell=make_cell(order="figo")), "values"),       # i/f swapped
    (dict(cell=make_cell(order="ifog")), "values"),       # g/o swapped
    (dict(cell=make_cell(g_act=torch.sigmoid)), "values"),
    (dict(cell=make_cell(tanh_c=False)), "values"),
    (dict(cell=make_cell(forget=False)), "values"),
    (dict(out_is_c=True), "values"),                      # out collects c_t instead of h_t
    (dict(swap_state=True), "values"),                    # returns (c_n, h_n)
    (dict(time_major=True), "shapes"),                    # out stacked as (S, B, H)
    (dict(ignore_state=True), "values"),                  # starts from zeros whatever state is given
    (dict(cell=make_cell(detach_state=True)), "gradients"),
], ids=["state not carried", "i/f swapped", "g/o swapped", "sigmoid g", "no tanh(c)", "no forget gate",
        "out is c", "returns (c_n, h_n)", "time-major out", "state ignored", "detached state"])
def test_lstm_mistakes_are_rejected(kwargs, stage):
    _rejected_at("lstm", make_lstm(**kwargs), stage)


def test_lstm_returning_flat_triple_is_rejected_at_types():
    def flat(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        out, (h, c) = ref.lstm(x, state, weight_ih, weight_hh, bias_ih, bias_hh)
        return out, h, c

    _rejected_at("lstm", flat, "types")


# --------------------------------------------------------------------------------------------
# cec_gradient
# --------------------------------------------------------------------------------------------

def cec_via_logs(f_pre):
    """Correct: the sum of log-sigmoids, exponentiated."""
    return torch.exp(F.logsigmoid(f_pre).sum(dim=1))


def cec_looped(f_pre):
    """Correct: a loop over time."""
    out = torch.ones_like(f_pre[:, 0])
    for t in range(f_pre.shape[1]):
        out = out * torch.sigmoid(f_pre[:, t])
    return out


@pytest.mark.parametrize("fn", [cec_via_logs, cec_looped])
def test_cec_gradient_other_correct_versions_pass(fn):
    _passes("cec_gradient", fn)


@pytest.mark.parametrize("fn, stage", [
    (lambda f_pre: f_pre.prod(dim=1), "values"),                              # pre-activations, no sigmoid
    (lambda f_pre: torch.sigmoid(f_pre).sum(dim=1), "values"),                # sum instead of product
    (lambda f_pre: (1 - torch.sigmoid(f_pre)).prod(dim=1), "values"),         # 1 - f
    (lambda f_pre: torch.sigmoid(f_pre.sum(dim=1)), "values"),                # sigmoid of the sum
    (lambda f_pre: torch.sigmoid(f_pre[:, 1:]).prod(dim=1), "values"),        # first step dropped
    (lambda f_pre: torch.sigmoid(f_pre).prod(dim=-1), "shapes"),              # product over units
    (lambda f_pre: torch.sigmoid(f_pre).prod(dim=1).double(), "dtype"),
    (lambda f_pre: torch.sigmoid(f_pre).prod(dim=1).detach(), "gradients"),
], ids=["no sigmoid", "sum", "1 - f", "sigmoid of sum", "first step dropped", "wrong axis", "float64 out",
        "detached"])
def test_cec_gradient_mistakes_are_rejected(fn, stage):
    def cec_gradient(f_pre):
        return fn(f_pre)

    _rejected_at("cec_gradient", cec_gradient, stage)


@pytest.mark.parametrize("fn, fragment", [
    (lambda f_pre: f_pre.prod(dim=1), "the pre-activations are multiplied without the sigmoid"),
    (lambda f_pre: torch.sigmoid(f_pre).sum(dim=1), "the gates are summed over the steps"),
    (lambda f_pre: (1 - torch.sigmoid(f_pre)).prod(dim=1), "1 − σ(f̃_t) is multiplied"),
    (lambda f_pre: torch.sigmoid(f_pre.sum(dim=1)), "the sigmoid is taken of the summed pre-activations"),
    (lambda f_pre: torch.sigmoid(f_pre[:, 1:]).prod(dim=1), "the product leaves out the first step"),
], ids=["no sigmoid", "sum", "1 - f", "sigmoid of sum", "first step dropped"])
def test_cec_gradient_mistakes_are_named(fn, fragment):
    def cec_gradient(f_pre):
        return fn(f_pre)

    _named("cec_gradient", cec_gradient, fragment)


# --------------------------------------------------------------------------------------------
# forget_half_life
# --------------------------------------------------------------------------------------------

def test_forget_half_life_other_correct_version_passes():
    def forget_half_life(forget_bias):
        return math.log(2) / F.softplus(-forget_bias)  # -log σ(b) = softplus(-b)

    _passes("forget_half_life", forget_half_life)


def test_forget_half_life_with_log_of_sigmoid_fails_in_float32_for_large_biases():
    """The statement's warning: σ(b) is 1.0 in float32 for b >= 17, so log(sigmoid(b)) is 0 and n is infinite."""
    def forget_half_life(forget_bias):
        return -math.log(2) / torch.log(torch.sigmoid(forget_bias))

    text = _named("forget_half_life", forget_half_life, "log(sigmoid(b)) is computed in float32")
    assert "forget_bias = [-2, 5, 17, 20, 30], float32" in text


@pytest.mark.parametrize("fn, fragment", [
    (lambda b: 1 / (1 - torch.sigmoid(b)), "the mean lifetime 1/(1 − σ(b))"),
    (lambda b: -1 / torch.log(torch.sigmoid(b)), "the e-folding time"),
    (lambda b: math.log(0.5) / torch.log(b), "the logarithm is taken of the bias b"),
    (lambda b: torch.sigmoid(b) ** 0.5, "σ(b)^(1/2) is computed"),
], ids=["mean lifetime", "e-folding", "log of bias", "sqrt"])
def test_forget_half_life_mistakes_are_named(fn, fragment):
    def forget_half_life(forget_bias):
        return fn(forget_bias)

    _named("forget_half_life", forget_half_life, fragment)


@pytest.mark.parametrize("fn, stage", [
    (lambda b: 1 / (1 - torch.sigmoid(b)), "values"),                  # mean lifetime, not half-life
    (lambda b: -1 / torch.log(torch.sigmoid(b)), "values"),            # e-folding time
    (lambda b: math.log(0.5) / torch.log(b), "finite"),                # log of the bias, not of the gate
    (lambda b: torch.sigmoid(b) ** 0.5, "values"),
    (lambda b: float(math.log(0.5) / F.logsigmoid(b).sum()), "types"),
], ids=["mean lifetime", "e-folding", "log of bias", "sqrt", "python float"])
def test_forget_half_life_mistakes_are_rejected(fn, stage):
    def forget_half_life(forget_bias):
        return fn(forget_bias)

    _rejected_at("forget_half_life", forget_half_life, stage)


# --------------------------------------------------------------------------------------------
# init_forget_bias
# --------------------------------------------------------------------------------------------

def init_forget_bias_split(lstm_module, value):
    """Correct: half of the value on each bias vector."""
    H = lstm_module.hidden_size
    with torch.no_grad():
        for name, p in lstm_module.named_parameters():
            if name.startswith("bias"):
                p[H:2 * H] = value / 2
    return lstm_module


def init_forget_bias_by_layer(lstm_module, value):
    """Correct: looping over layers and directions by name."""
    H = lstm_module.hidden_size
    suffixes = ["", "_reverse"] if lstm_module.bidirectional else [""]
    for layer in range(lstm_module.num_layers):
        for s in suffixes:
            getattr(lstm_module, f"bias_ih_l{layer}{s}").data[H:2 * H].fill_(value)
            getattr(lstm_module, f"bias_hh_l{layer}{s}").data[H:2 * H].zero_()
    return lstm_module


@pytest.mark.parametrize("fn", [init_forget_bias_split, init_forget_bias_by_layer])
def test_init_forget_bias_other_correct_versions_pass(fn):
    _passes("init_forget_bias", fn)


def make_init(rows=(1, 2), zero_hh=True, layers="all", whole=False, replace=False, no_grad=True, ret=True):
    def init_forget_bias(lstm_module, value):
        H = lstm_module.hidden_size
        lo, hi = rows[0] * H, rows[1] * H
        ctx = torch.no_grad() if no_grad else torch.enable_grad()
        with ctx:
            for name, p in list(lstm_module.named_parameters()):
                if not name.startswith("bias"):
                    continue
                if layers == "first" and "_l0" not in name:
                    continue
                if layers == "forward" and name.endswith("_reverse"):
                    continue
                is_ih = name.startswith("bias_ih")
                if replace:
                    new = p.detach().clone()
                    new[lo:hi] = value if is_ih else 0.0
                    setattr(lstm_module, name, nn.Parameter(new))
                elif whole:
                    p.fill_(value if is_ih else 0.0)
                elif is_ih:
                    p[lo:hi] = value
                elif zero_hh:
                    p[lo:hi] = 0.0
        return lstm_module if ret else None

    return init_forget_bias


@pytest.mark.parametrize("kwargs, stage", [
    (dict(rows=(0, 1)), "values"),              # the input-gate rows
    (dict(rows=(2, 3)), "values"),              # the candidate rows
    (dict(zero_hh=False), "values"),            # bias_hh still adds to the forget gate
    (dict(layers="first"), "values"),           # only the first layer
    (dict(layers="forward"), "values"),         # the reverse direction forgotten
    (dict(whole=True), "properties"),           # every gate's bias overwritten
    (dict(replace=True), "types"),              # new Parameter objects
    (dict(no_grad=False), "runs"),              # in-place on a leaf that requires grad
    (dict(ret=False), "types"),                 # returns None
], ids=["input rows", "candidate rows", "bias_hh kept", "first layer only", "forward only", "whole bias",
        "replaced parameters", "no torch.no_grad", "returns None"])
def test_init_forget_bias_mistakes_are_rejected(kwargs, stage):
    _rejected_at("init_forget_bias", make_init(**kwargs), stage)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(rows=(0, 1)), "the input-gate rows 0:H are set"),
    (dict(rows=(2, 3)), "the candidate rows 2H:3H are set"),
    (dict(zero_hh=False), "value goes into bias_ih but bias_hh keeps its forget rows"),
    (dict(layers="first"), "only layer 0 is changed"),
    (dict(layers="forward"), "the reverse direction"),
    (dict(whole=True), "the whole bias vectors are overwritten"),
], ids=["input rows", "candidate rows", "bias_hh kept", "first layer only", "forward only", "whole bias"])
def test_init_forget_bias_mistakes_are_named(kwargs, fragment):
    _named("init_forget_bias", make_init(**kwargs), fragment, stages=("values", "properties"))


def test_init_forget_bias_status_lists_every_layer_and_direction():
    passed, stage, text = grade_outcome("init_forget_bias", make_init(layers="forward"))
    assert "status: l0 ✓, l0_reverse ✗, l1 ✓, l1_reverse ✗" in text


def test_init_forget_bias_setting_both_biases_is_named():
    def both(lstm_module, value):
        H = lstm_module.hidden_size
        with torch.no_grad():
            for name, p in lstm_module.named_parameters():
                if name.startswith("bias"):
                    p[H:2 * H] = value
        return lstm_module

    _named("init_forget_bias", both, "value goes into both bias_ih and bias_hh: the gate sees 2 × value")


def test_check_leaves_global_state_as_it_was():
    before = torch.get_rng_state()
    dtype = torch.get_default_dtype()
    for exercise_id in FUNCTIONS_02:
        check(exercise_id, getattr(ref, exercise_id), record=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_default_dtype() == dtype


# --------------------------------------------------------------------------------------------
# gru_cell
# --------------------------------------------------------------------------------------------

from course_lib.grading.core import MISTAKES  # noqa: E402
from course_lib.lstm.experiments import PredictionRecord, forget_memory_theory, predict_then_run  # noqa: E402


def gru_cell_per_gate(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Correct, written gate by gate with row slices and explicit zeros for missing biases."""
    H = weight_hh.shape[1]
    h = torch.zeros(x.shape[0], H, dtype=x.dtype) if h is None else h
    b_i = torch.zeros(3 * H, dtype=x.dtype) if bias_ih is None else bias_ih
    b_h = torch.zeros(3 * H, dtype=x.dtype) if bias_hh is None else bias_hh

    def pre(k):
        return x @ weight_ih[k * H:(k + 1) * H].T + b_i[k * H:(k + 1) * H], h @ weight_hh[k * H:(k + 1) * H].T + \
            b_h[k * H:(k + 1) * H]

    r = torch.sigmoid(sum(pre(0)))
    z = torch.sigmoid(sum(pre(1)))
    x_n, h_n = pre(2)
    n = torch.tanh(x_n + r * h_n)
    return h + (1 - z) * (n - h)  # the same update, written as an interpolation towards n


def gru_cell_torch_module(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Correct through torch.func.functional_call on an nn.GRUCell: allowed? No -- the rules forbid torch's cell."""
    cell = nn.GRUCell(x.shape[1], weight_hh.shape[1], bias=bias_ih is not None, dtype=x.dtype)
    params = {"weight_ih": weight_ih, "weight_hh": weight_hh}
    if bias_ih is not None:
        params.update(bias_ih=bias_ih, bias_hh=bias_hh)
    return torch.func.functional_call(cell, params, (x, h))


def test_gru_cell_reference_equals_torch_grucell_in_float64():
    torch.manual_seed(0)
    cell = nn.GRUCell(3, 5, dtype=torch.float64)
    x, h = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    mine = ref.gru_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert torch.allclose(mine, cell(x, h), atol=1e-14, rtol=0)


def test_gru_cell_other_correct_version_passes():
    _passes("gru_cell", gru_cell_per_gate)


def test_gru_cell_calling_torch_is_rejected_at_rules():
    text = _rejected_at("gru_cell", gru_cell_torch_module, "rules")
    assert "gru_cell" in text


@pytest.mark.parametrize("m", MISTAKES["gru_cell"], ids=lambda m: m.fn.__name__)
def test_gru_cell_catalogued_mistakes_are_rejected_and_named(m):
    assert len(MISTAKES["gru_cell"]) >= 4
    text = _rejected_at("gru_cell", m.fn, "values")
    assert "your output matches what you get when " + m.description in text


def test_gru_cell_mistakes_are_real_mistakes_against_torch():
    # Each catalogued mistake differs from torch.nn.GRUCell on generic inputs (ground truth: torch, not our reference).
    torch.manual_seed(1)
    cell = nn.GRUCell(3, 4, dtype=torch.float64)
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    truth = cell(x, h)
    for m in MISTAKES["gru_cell"]:
        wrong = m.fn(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        assert not torch.allclose(wrong, truth, atol=1e-6), m.description


def test_gru_cell_detached_output_is_rejected_at_gradients():
    _rejected_at("gru_cell", lambda x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None:
                 ref.gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh).detach(), "gradients")


def test_gru_cell_returning_a_tuple_is_rejected_at_types():
    _rejected_at("gru_cell", lambda x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None:
                 (ref.gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh),), "types")


# --------------------------------------------------------------------------------------------
# predict_forget_memory (predict, then run)
# --------------------------------------------------------------------------------------------


def _record(half_life, kept_after, forget_bias=4.0, steps=50):
    return predict_then_run({"half_life": half_life, "kept_after": kept_after}, forget_bias=forget_bias, steps=steps,
                            hidden=4, batch=4)


def test_predict_the_constant_gate_answer_passes():
    half, kept = (float(t) for t in forget_memory_theory(4.0, 50))
    _passes("predict_forget_memory", _record(half, kept))
    _passes("predict_forget_memory", _record(round(half), round(kept, 2)))  # a rounded pen-and-paper answer
    h3, k3 = (float(t) for t in forget_memory_theory(3.0, 20))
    _passes("predict_forget_memory", _record(h3, k3, forget_bias=3.0, steps=20))


@pytest.mark.parametrize("m", MISTAKES["predict_forget_memory"], ids=lambda m: m.fn.__name__)
def test_predict_catalogued_mistakes_are_rejected_and_named(m):
    half, kept = (float(t) for t in m.fn(4.0, 50))
    text = _rejected_at("predict_forget_memory", _record(half, max(kept, 1e-300)), "values")
    assert "your output matches what you get when " + m.description in text


def test_predict_a_wild_guess_is_rejected_without_a_diagnosis():
    text = _rejected_at("predict_forget_memory", _record(5.0, 0.9), "values")
    assert "diagnosis" not in text


def test_predict_without_a_prediction_is_not_attempted(capsys):
    result = check("predict_forget_memory", predict_then_run(None), record=False)
    assert result.not_attempted and not result.passed
    assert "write yours down first" in capsys.readouterr().out


def test_predict_a_record_measured_before_it_was_predicted_breaks_the_rules():
    half, kept = (float(t) for t in forget_memory_theory(4.0, 50))
    forged = PredictionRecord(4.0, 50, {"half_life": half, "kept_after": kept}, measured={"half_life": 37.0},
                              recorded_at=2.0, measured_at=1.0)
    _rejected_at("predict_forget_memory", forged, "rules")
    _rejected_at("predict_forget_memory", {"half_life": half, "kept_after": kept}, "types")


@pytest.mark.parametrize("bad, match", [({"half_life": 3.0}, "exactly two"), ({"half_life": -1, "kept_after": 0.5},
                                        "positive"), ({"half_life": 3.0, "kept_after": 2.0}, "at most 1"),
                                        ({"half_life": torch.tensor(3.0), "kept_after": 0.5}, "plain number")])
def test_predict_then_run_refuses_a_malformed_prediction(bad, match):
    with pytest.raises(ValueError, match=match):
        predict_then_run(bad)


# --------------------------------------------------------------------------------------------
# lstm_bptt (optional, hard)
# --------------------------------------------------------------------------------------------


def lstm_bptt_weights_at_the_end(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out):
    """Correct, written differently: the per-step ε are collected and the weight gradients summed at the end."""
    B, S, _ = x.shape
    H = weight_hh.shape[1]
    h, c, hs, cs, gates = h0, c0, [h0], [c0], []
    for t in range(S):
        a = x[:, t] @ weight_ih.T + h @ weight_hh.T + bias_ih + bias_hh
        i, f, g, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H]), torch.tanh(a[:, 2 * H:3 * H]), \
            torch.sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        hs.append(h)
        cs.append(c)
        gates.append((i, f, g, o))
    eps_all = [None] * S
    dh_rec = torch.zeros(B, H, dtype=x.dtype)
    dc_rec = torch.zeros(B, H, dtype=x.dtype)
    for t in range(S - 1, -1, -1):
        i, f, g, o = gates[t]
        dh = grad_out[:, t] + dh_rec
        dc = dc_rec + dh * o * (1 - torch.tanh(cs[t + 1]) ** 2)
        eps = torch.cat([dc * g * i * (1 - i), dc * cs[t] * f * (1 - f), dc * i * (1 - g * g),
                         dh * torch.tanh(cs[t + 1]) * o * (1 - o)], dim=1)
        eps_all[t] = eps
        dh_rec, dc_rec = eps @ weight_hh, dc * f
    eps = torch.stack(eps_all, dim=1)  # (B, S, 4H)
    h_prev = torch.stack(hs[:-1], dim=1)  # (B, S, H)
    db = eps.sum((0, 1))
    return {"x": eps @ weight_ih, "h0": dh_rec, "c0": dc_rec, "weight_ih": torch.einsum("bsk,bsi->ki", eps, x),
            "weight_hh": torch.einsum("bsk,bsh->kh", eps, h_prev), "bias_ih": db, "bias_hh": db.clone()}


def lstm_bptt_with_autograd(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out):
    """Right numbers, wrong method: autograd switched back on inside."""
    with torch.inference_mode(False), torch.enable_grad():
        leaves = [t.clone().requires_grad_(True) for t in (x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)]
        out, _ = ref.lstm(leaves[0], (leaves[1], leaves[2]), *leaves[3:])
        grads = torch.autograd.grad((out * grad_out).sum(), leaves)
    return dict(zip(["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], grads, strict=True))


def test_lstm_bptt_reference_equals_autograd_through_torch_lstm():
    torch.manual_seed(0)
    layer = nn.LSTM(3, 4, batch_first=True, dtype=torch.float64)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64)
    h0, c0 = (torch.randn(2, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    grad_out = torch.randn(2, 7, 4, generator=gen, dtype=torch.float64)
    params = [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]
    mine = ref.lstm_bptt(x, h0, c0, *[p.detach() for p in params], grad_out)
    leaves = [t.clone().requires_grad_(True) for t in (x, h0, c0)]
    out, _ = layer(leaves[0], (leaves[1][None], leaves[2][None]))
    truth = torch.autograd.grad((out * grad_out).sum(), [*leaves, *params])
    for key, t in zip(["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], truth, strict=True):
        assert torch.allclose(mine[key], t, atol=1e-12, rtol=1e-10), key


def test_lstm_bptt_other_correct_version_passes():
    _passes("lstm_bptt", lstm_bptt_weights_at_the_end)


def test_lstm_bptt_with_autograd_is_rejected_at_rules():
    _rejected_at("lstm_bptt", lstm_bptt_with_autograd, "rules")


@pytest.mark.parametrize("m", MISTAKES["lstm_bptt"], ids=lambda m: m.fn.__name__)
def test_lstm_bptt_catalogued_mistakes_are_rejected_and_named(m):
    assert len(MISTAKES["lstm_bptt"]) >= 4
    text = _rejected_at("lstm_bptt", m.fn, "values")
    assert "your output matches what you get when " + m.description in text
