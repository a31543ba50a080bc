"""Module 05 graders: references and differently written correct versions pass, catalogued mistakes are named."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_passes, assert_rejected_at, assert_stub_not_attempted, grade_outcome

from course_lib.grading import EXERCISES
from course_lib.grading.core import MISTAKES
from course_lib.xlstm.slstm import headwise_recurrence, initial_state, slstm, slstm_step, stabilise

MODULE_05 = ["headwise_recurrence", "stabilise", "slstm_step", "slstm"]
PARAMS = {
    "headwise_recurrence": ["h", "R"],
    "stabilise": ["i_pre", "log_f", "m_prev"],
    "slstm_step": ["wx_t", "R", "b", "state", "forget_gate"],
    "slstm": ["wx", "R", "b", "state", "forget_gate", "return_last_states"],
}
PREFIX = "your output matches what you get when "


def test_module_05_exercises_are_registered():
    assert [e for e in MODULE_05 if e in EXERCISES and EXERCISES[e].module == "05"] == MODULE_05


@pytest.mark.parametrize("exercise_id, fn", [("headwise_recurrence", headwise_recurrence), ("stabilise", stabilise),
                                             ("slstm_step", slstm_step), ("slstm", slstm)])
def test_reference_passes(exercise_id, fn):
    passed, _, text = grade_outcome(exercise_id, fn)
    assert passed, text
    assert "diagnosis" not in text


@pytest.mark.parametrize("exercise_id", MODULE_05)
def test_unsolved_stub_is_not_attempted(exercise_id):
    assert_stub_not_attempted(exercise_id, PARAMS[exercise_id])


@pytest.mark.parametrize("exercise_id", MODULE_05)
def test_each_catalogue_has_at_least_four_mistakes(exercise_id):
    assert len(MISTAKES[exercise_id]) >= 4


@pytest.mark.parametrize("wrong", [m for e in MODULE_05 for m in MISTAKES[e]],
                         ids=lambda m: f"{m.exercise_id}-{m.fn.__name__}")
def test_each_catalogued_mistake_is_rejected_at_values_and_named(wrong):
    text = assert_rejected_at(wrong.exercise_id, wrong.fn, "values")
    assert PREFIX + wrong.description in text


# --------------------------------------------------------------------------------------------
# headwise_recurrence: differently written correct versions, and hand-written wrong ones
# --------------------------------------------------------------------------------------------


def rec_looped(h, R):
    B, H = h.shape
    _, NH, DH, _ = R.shape
    out = []
    for gate in range(4):
        for k in range(NH):
            hk = h[:, k * DH:(k + 1) * DH]  # (B, DH)
            out.append(hk @ R[gate, k].T)  # (B, DH)
    return torch.cat(out, dim=-1)


def rec_block_diagonal(h, R):
    return torch.cat([h @ torch.block_diag(*R[gate]).T for gate in range(4)], dim=-1)


@pytest.mark.parametrize("fn", [rec_looped, rec_block_diagonal])
def test_headwise_recurrence_other_correct_versions_pass(fn):
    assert_passes("headwise_recurrence", fn)


def rec_dense_sum_over_heads(h, R):
    """Hand-written: one dense DH x DH matrix per gate (heads summed), applied to every head."""
    B, H = h.shape
    _, NH, DH, _ = R.shape
    return torch.einsum("goj,bkj->bgko", R.sum(1), h.reshape(B, NH, DH)).reshape(B, 4 * H)


def test_headwise_recurrence_wrong_shape_and_dtype_rejected():
    assert_rejected_at("headwise_recurrence", lambda h, R: headwise_recurrence(h, R).reshape(h.shape[0], 4, -1),
                       "shapes")
    assert_rejected_at("headwise_recurrence", lambda h, R: headwise_recurrence(h.double(), R.double()), "dtype")
    assert_rejected_at("headwise_recurrence", rec_dense_sum_over_heads, "values")


# --------------------------------------------------------------------------------------------
# stabilise
# --------------------------------------------------------------------------------------------


def stabilise_via_where(i_pre, log_f, m_prev):
    """A correct version that special-cases the first step instead of relying on -inf arithmetic."""
    first = torch.isinf(m_prev)
    carried = torch.where(first, torch.full_like(i_pre, -math.inf), log_f + m_prev)
    m = torch.where(carried > i_pre, carried, i_pre)
    f_s = torch.where(first, torch.zeros_like(i_pre), torch.exp(carried - m))
    return torch.exp(i_pre - m), f_s, m


def stabilise_in_float64(i_pre, log_f, m_prev):
    """Computes in float64 and casts back: the outputs keep the input dtype."""
    i_s, f_s, m = stabilise(i_pre.double(), log_f.double(), m_prev.double())
    return i_s.to(i_pre.dtype), f_s.to(i_pre.dtype), m.to(i_pre.dtype)


@pytest.mark.parametrize("fn", [stabilise_via_where, stabilise_in_float64])
def test_stabilise_other_correct_versions_pass(fn):
    assert_passes("stabilise", fn)


def test_stabilise_unstabilised_gates_overflow_in_float32():
    def no_stabiliser(i_pre, log_f, m_prev):
        m = torch.maximum(log_f + m_prev, i_pre)
        return torch.exp(i_pre) / torch.exp(m), torch.exp(log_f) * torch.exp(m_prev) / torch.exp(m), m

    text = assert_rejected_at("stabilise", no_stabiliser, "finite")
    assert "around 100" in text


# --------------------------------------------------------------------------------------------
# slstm_step
# --------------------------------------------------------------------------------------------


def step_looped(wx_t, R, b, state, forget_gate="sigmoid"):
    """A correct version written unit by unit for the recurrence, with logaddexp-free stabiliser."""
    h, c, n, m = state
    B, H = h.shape
    _, NH, DH, _ = R.shape
    rec = torch.zeros(B, 4, H, dtype=wx_t.dtype)
    for k in range(NH):
        sl = slice(k * DH, (k + 1) * DH)
        for gate in range(4):
            rec[:, gate, sl] = h[:, sl] @ R[gate, k].T
    pre = wx_t.reshape(B, 4, H) + rec + b.reshape(4, H)
    i_pre, f_pre, z_pre, o_pre = pre.unbind(1)
    log_f = -F.softplus(-f_pre) if forget_gate == "sigmoid" else f_pre
    m_new = torch.max(torch.stack([log_f + m, i_pre]), dim=0).values
    i_s = torch.exp(i_pre - m_new)
    f_s = torch.exp(log_f + m - m_new)
    c_new = f_s * c + i_s * torch.tanh(z_pre)
    n_new = f_s * n + i_s
    h_new = torch.sigmoid(o_pre) * (c_new / n_new)
    return h_new, (h_new, c_new, n_new, m_new)


def step_detached_m(wx_t, R, b, state, forget_gate="sigmoid"):
    """As the xlstm kernels do: no gradient through the stabiliser (h does not depend on m)."""
    h, (h, c, n, m) = slstm_step(wx_t, R, b, state, forget_gate)
    return h, (h, c, n, m.detach())


@pytest.mark.parametrize("fn", [step_looped, step_detached_m])
def test_slstm_step_other_correct_versions_pass(fn):
    assert_passes("slstm_step", fn)


def test_slstm_step_float32_overflow_without_stabiliser_is_caught():
    def unstabilised_inside(wx_t, R, b, state, forget_gate="sigmoid"):
        h, c, n, m = state
        i_pre, f_pre, z_pre, o_pre = (wx_t + headwise_recurrence(h, R) + b).chunk(4, -1)
        log_f = F.logsigmoid(f_pre) if forget_gate == "sigmoid" else f_pre
        c = torch.exp(log_f) * c * torch.exp(m) + torch.exp(i_pre) * torch.tanh(z_pre)  # true units
        n = torch.exp(log_f) * n * torch.exp(m) + torch.exp(i_pre)
        h = torch.sigmoid(o_pre) * c / n
        m_new = torch.maximum(log_f + m, i_pre)  # only to report the states in stabilised units
        return h, (h, c / torch.exp(m_new), n / torch.exp(m_new), m_new)

    text = assert_rejected_at("slstm_step", unstabilised_inside, "finite")
    assert "around 100" in text


def test_slstm_step_returning_the_state_in_the_wrong_order_is_rejected():
    def swapped(wx_t, R, b, state, forget_gate="sigmoid"):
        h, (h, c, n, m) = slstm_step(wx_t, R, b, state, forget_gate)
        return h, (h, n, c, m)

    text = assert_rejected_at("slstm_step", swapped, "values")
    assert "status: h ✓, state h ✓, c ✗, n ✗, m ✓" in text


# --------------------------------------------------------------------------------------------
# slstm
# --------------------------------------------------------------------------------------------


def seq_with_step(wx, R, b, state=None, forget_gate="sigmoid", return_last_states=False):
    """A correct version: the state is built by hand and the outputs collected into a preallocated tensor."""
    B, S, H4 = wx.shape
    H = H4 // 4
    if state is None:
        state = initial_state(B, H, wx.dtype)
    out = wx.new_empty(B, S, H)
    for t in range(S):
        h, state = step_looped(wx[:, t], R, b, state, forget_gate)
        out[:, t] = h
    return (out, state) if return_last_states else out


def seq_float64_inside(wx, R, b, state=None, forget_gate="sigmoid", return_last_states=False):
    state = None if state is None else tuple(s.double() for s in state)
    result = slstm(wx.double(), R.double(), b.double(), state, forget_gate, True)
    h, states = result[0].to(wx.dtype), tuple(s.to(wx.dtype) for s in result[1])
    return (h, states) if return_last_states else h


@pytest.mark.parametrize("fn", [seq_with_step, seq_float64_inside])
def test_slstm_other_correct_versions_pass(fn):
    assert_passes("slstm", fn)


def test_slstm_ignoring_the_given_state_is_rejected():
    def ignores_state(wx, R, b, state=None, forget_gate="sigmoid", return_last_states=False):
        return slstm(wx, R, b, None, forget_gate, return_last_states)

    assert_rejected_at("slstm", ignores_state, "values")


def test_slstm_without_return_last_states_support_is_rejected_at_types():
    def h_only(wx, R, b, state=None, forget_gate="sigmoid", return_last_states=False):
        return slstm(wx, R, b, state, forget_gate)

    assert_rejected_at("slstm", h_only, "types")
