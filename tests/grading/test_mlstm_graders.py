"""Module 06 graders: the references pass, differently written correct versions pass, mistakes are named."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close, assert_rejected_at, assert_stub_not_attempted, grade_outcome

from course_lib.grading import EXERCISES
from course_lib.grading import mlstm as graders
from course_lib.grading.core import MISTAKES
from course_lib.xlstm import mlstm as ref

MODULE_06 = ["mlstm_step", "mlstm_recurrent", "mlstm_parallel", "mlstm_chunkwise"]
PARAMS = {"mlstm_step": graders.STEP_PARAMS, "mlstm_recurrent": graders.RECURRENT_PARAMS,
          "mlstm_parallel": graders.PARALLEL_PARAMS, "mlstm_chunkwise": graders.CHUNKWISE_PARAMS}
REFERENCES = {"mlstm_step": ref.mlstm_step, "mlstm_recurrent": ref.mlstm_recurrent,
              "mlstm_parallel": ref.mlstm_parallel, "mlstm_chunkwise": ref.mlstm_chunkwise}


def test_module_06_exercises_are_registered():
    assert [e for e in MODULE_06 if e in EXERCISES and EXERCISES[e].module == "06"] == MODULE_06


@pytest.mark.parametrize("exercise_id", MODULE_06)
def test_reference_passes_without_diagnosis(exercise_id):
    passed, _, text = grade_outcome(exercise_id, REFERENCES[exercise_id])
    assert passed, text
    assert "diagnosis" not in text


@pytest.mark.parametrize("exercise_id", MODULE_06)
def test_unsolved_stub_is_not_attempted(exercise_id):
    assert_stub_not_attempted(exercise_id, PARAMS[exercise_id])


@pytest.mark.parametrize("exercise_id", MODULE_06)
def test_each_catalogue_has_at_least_four_mistakes(exercise_id):
    assert len(MISTAKES[exercise_id]) >= 4


@pytest.mark.parametrize("wrong", [m for e in MODULE_06 for m in MISTAKES[e]],
                         ids=lambda m: f"{m.exercise_id}-{m.fn.__name__}")
def test_each_catalogued_mistake_is_rejected_at_values_and_named(wrong):
    text = assert_rejected_at(wrong.exercise_id, wrong.fn, "values")
    assert "your output matches what you get when " + wrong.description in text


def _inputs(S=11, seed=0, i_mean=0.0, eps=1e-6):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 2, S, 4, generator=g, dtype=torch.float64), torch.randn(2, 2, S, 4, generator=g,
                                                                                 dtype=torch.float64)
    v = torch.randn(2, 2, S, 3, generator=g, dtype=torch.float64)
    i = torch.randn(2, 2, S, generator=g, dtype=torch.float64) + i_mean
    f = torch.randn(2, 2, S, generator=g, dtype=torch.float64) + 3.0
    return dict(q=q, k=k, v=v, i=i, f=f, eps=eps)


@pytest.mark.parametrize("i_mean, eps", [(0.0, 1e-6), (-3.0, 0.1)])
def test_catalogue_switches_off_reproduce_the_library(i_mean, eps):
    a = _inputs(i_mean=i_mean, eps=eps)
    assert_close(graders._recurrent_variant(**a), ref.mlstm_recurrent(**a))
    assert_close(graders._parallel_variant(**a), ref.mlstm_parallel(**a))
    assert_close(graders._chunkwise_variant(**a, chunk_size=4), ref.mlstm_chunkwise(**a, chunk_size=4))
    h_p, (n_p, m_p) = graders._parallel_variant(**a, return_stats=True)
    h_r, (n_r, m_r) = ref.mlstm_parallel(**a, return_stats=True)
    assert_close(h_p, h_r)
    assert_close(n_p, n_r)
    assert_close(m_p, m_r)


# --------------------------------------------------------------------------------------------
# Correct versions written differently
# --------------------------------------------------------------------------------------------


def step_with_matmul_and_detached_m(q, k, v, i, f, c, n, m, eps=1e-6):
    log_f = F.logsigmoid(f)
    m_new = torch.max(log_f + m, i).detach()  # h does not depend on m (up to eps): a constant is fine
    f_s, i_s = torch.exp(log_f + m - m_new), torch.exp(i - m_new)
    c_new = f_s.unsqueeze(-1) * c + i_s.unsqueeze(-1) * (k.unsqueeze(-1) @ v.unsqueeze(-2))
    n_new = f_s * n + i_s * k
    q_hat = q * q.shape[-1] ** -0.5
    num = (q_hat.unsqueeze(-2) @ c_new).squeeze(-2)
    qn = (q_hat.unsqueeze(-2) @ n_new.unsqueeze(-1)).squeeze(-1)
    return num / (torch.max(qn.abs(), torch.exp(-m_new)) + eps), (c_new, n_new, m_new)


def recurrent_looped_with_step(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None,
                               return_last_states=False, eps=1e-6):
    B, NH, S, D = q.shape
    state = (torch.zeros(B, NH, D, v.shape[-1], dtype=q.dtype) if c_initial is None else c_initial,
             torch.zeros(B, NH, D, dtype=q.dtype) if n_initial is None else n_initial,
             torch.zeros(B, NH, 1, dtype=q.dtype) if m_initial is None else m_initial)
    out = torch.empty(B, NH, S, v.shape[-1], dtype=q.dtype)
    for t in range(S):
        h, state = step_with_matmul_and_detached_m(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t:t + 1],
                                                   f[:, :, t:t + 1], *state, eps=eps)
        out[:, :, t] = h
    return (out, state) if return_last_states else out


def parallel_with_explicit_loops(q, k, v, i, f, eps=1e-6, return_stats=False):
    B, NH, S, D = q.shape
    log_f = F.logsigmoid(f)
    rows_h, rows_n, rows_m = [], [], []
    for t in range(S):
        log_D = torch.stack([log_f[..., s + 1:t + 1].sum(-1) + i[..., s] for s in range(t + 1)], dim=-1)  # (B,NH,t+1)
        m_t = log_D.max(-1, keepdim=True).values
        scores = torch.einsum("bhd,bhsd->bhs", q[:, :, t] / math.sqrt(D), k[:, :, :t + 1]) * torch.exp(log_D - m_t)
        n_t = torch.maximum(scores.sum(-1, keepdim=True).abs(), torch.exp(-m_t))
        rows_h.append(torch.einsum("bhs,bhse->bhe", scores / (n_t + eps), v[:, :, :t + 1]))
        rows_n.append(n_t[..., 0])
        rows_m.append(m_t[..., 0])
    h = torch.stack(rows_h, dim=2)
    return (h, (torch.stack(rows_n, -1), torch.stack(rows_m, -1))) if return_stats else h


def chunkwise_by_padding(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False,
                         chunk_size=64, eps=1e-6):
    """Pad to a multiple of chunk_size with steps that write nothing (i = −inf) and forget nothing (f = +inf)."""
    S = q.shape[2]
    pad = -S % chunk_size
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        i = F.pad(i, (0, pad), value=-math.inf)
        f = F.pad(f, (0, pad), value=math.inf)
    out = ref.mlstm_chunkwise(q, k, v, i, f, c_initial, n_initial, m_initial, True, chunk_size, eps)
    h, states = out[0][:, :, :S], out[1]
    return (h, states) if return_last_states else h


def chunkwise_from_steps_inside_chunks(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None,
                                       return_last_states=False, chunk_size=64, eps=1e-6):
    """Chunk boundaries by hand, each chunk by the recurrent form (slow but correct)."""
    S = q.shape[2]
    hs, state = [], (c_initial, n_initial, m_initial)
    for s0 in range(0, S, chunk_size):
        part = [t[:, :, s0:s0 + chunk_size] for t in (q, k, v, i, f)]
        h, state = recurrent_looped_with_step(*part, *state, return_last_states=True, eps=eps)
        hs.append(h)
    h = torch.cat(hs, dim=2)
    return (h, state) if return_last_states else h


@pytest.mark.parametrize("exercise_id, fn", [
    ("mlstm_step", step_with_matmul_and_detached_m),
    ("mlstm_recurrent", recurrent_looped_with_step),
    ("mlstm_recurrent", lambda q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None,
     return_last_states=False, eps=1e-6: ref.mlstm_chunkwise(q, k, v, i, f, c_initial, n_initial, m_initial,
                                                             return_last_states, 5, eps)),
    ("mlstm_parallel", parallel_with_explicit_loops),
    ("mlstm_chunkwise", chunkwise_by_padding),
    ("mlstm_chunkwise", chunkwise_from_steps_inside_chunks),
], ids=["step-matmul-detached-m", "recurrent-looped", "recurrent-as-chunkwise", "parallel-loops",
        "chunkwise-padding", "chunkwise-steps"])
def test_other_correct_versions_pass(exercise_id, fn):
    passed, _, text = grade_outcome(exercise_id, fn)
    assert passed, text
    assert "diagnosis" not in text


@pytest.mark.parametrize("exercise_id", MODULE_06)
def test_float32_inputs_are_graded_and_must_stay_float32(exercise_id):
    # The reference passes the graders' float32 cases (above); one that returns float64 for them is told so.
    reference = REFERENCES[exercise_id]

    def always_float64(*args, **kwargs):
        args = [a.double() if isinstance(a, torch.Tensor) else a for a in args]
        kwargs = {k: a.double() if isinstance(a, torch.Tensor) else a for k, a in kwargs.items()}
        return reference(*args, **kwargs)

    always_float64.__signature__ = inspect.signature(reference)
    text = assert_rejected_at(exercise_id, always_float64, "dtype")
    assert "float32" in text


# --------------------------------------------------------------------------------------------
# Wrong versions caught at other sub-checks
# --------------------------------------------------------------------------------------------


def test_chunkwise_that_drops_the_ragged_chunk_is_named_at_shapes():
    def truncated(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False,
                  chunk_size=64, eps=1e-6):
        S = (q.shape[2] // chunk_size) * chunk_size
        return ref.mlstm_chunkwise(*(t[:, :, :S] for t in (q, k, v, i, f)), c_initial, n_initial, m_initial,
                                   return_last_states, chunk_size, eps)

    text = assert_rejected_at("mlstm_chunkwise", truncated, "shapes")
    assert "the last, shorter chunk" in text and "dropped" in text


def test_chunkwise_that_runs_the_parallel_form_is_caught_at_properties():
    def whole_sequence(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False,
                       chunk_size=64, eps=1e-6):
        return ref.mlstm_chunkwise(q, k, v, i, f, c_initial, n_initial, m_initial, return_last_states,
                                   max(chunk_size, q.shape[2]), eps)

    text = assert_rejected_at("mlstm_chunkwise", whole_sequence, "properties")
    assert "works chunk by chunk" in text


def test_parallel_with_the_public_kernels_stop_gradient_is_caught_at_gradients():
    def stopgrad(q, k, v, i, f, eps=1e-6, return_stats=False):
        h = ref.mlstm_parallel_stopgrad(q, k, v, i, f, eps)
        return (h, ref.mlstm_parallel(q, k, v, i, f, eps, True)[1]) if return_stats else h

    text = assert_rejected_at("mlstm_parallel", stopgrad, "gradients")
    assert "differs from the correct gradient" in text


def test_recurrent_that_ignores_the_initial_states_is_rejected():
    def ignores(q, k, v, i, f, c_initial=None, n_initial=None, m_initial=None, return_last_states=False, eps=1e-6):
        return ref.mlstm_recurrent(q, k, v, i, f, return_last_states=return_last_states, eps=eps)

    assert_rejected_at("mlstm_recurrent", ignores, "values")


def test_step_returning_a_flat_tuple_is_rejected_at_types():
    def flat(q, k, v, i, f, c, n, m, eps=1e-6):
        h, (c, n, m) = ref.mlstm_step(q, k, v, i, f, c, n, m, eps)
        return h, c, n, m

    text = assert_rejected_at("mlstm_step", flat, "types")
    assert "(h, (c, n, m))" in text


def test_parallel_without_the_causal_mask_fails_the_causality_property_too():
    fn = next(m.fn for m in MISTAKES["mlstm_parallel"] if "not masked" in m.description)
    # The value check trips first (and names it); the property exists for learners whose values pass by luck.
    assert_rejected_at("mlstm_parallel", fn, "values")
