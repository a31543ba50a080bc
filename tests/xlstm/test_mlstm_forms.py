"""mLSTM: the recurrent, parallel and chunkwise forms against a plain float64 oracle, and their invariants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from course_lib.xlstm.mlstm import (
    MLSTM_FORMS,
    log_decay_matrix,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_parallel_stopgrad,
    mlstm_recurrent,
    mlstm_step,
)


def inputs(B=2, NH=3, S=11, DQK=4, DV=5, dtype=torch.float64, seed=0, i_scale=1.0, f_offset=3.0):
    """q, k, v ~ N(0, 1), i ~ N(0, i_scale²), f ~ N(f_offset, 1): the regime REFERENCES.md advises."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k, v = randn(B, NH, S, DQK), randn(B, NH, S, DQK), randn(B, NH, S, DV)
    i, f = i_scale * randn(B, NH, S), f_offset + randn(B, NH, S)
    return tuple(t.to(dtype) for t in (q, k, v, i, f))


def oracle(q, k, v, i, f, C=None, n=None):
    """The unstabilised mLSTM written plainly in float64 (eps = 0): returns h and the true (C, n)."""
    B, NH, S, DQK = q.shape
    C = q.new_zeros(B, NH, DQK, v.shape[-1]) if C is None else C
    n = q.new_zeros(B, NH, DQK) if n is None else n
    hs = []
    for t in range(S):
        f_t = torch.sigmoid(f[:, :, t])[..., None]
        i_t = torch.exp(i[:, :, t])[..., None]
        C = f_t[..., None] * C + i_t[..., None] * torch.einsum("bhd,bhe->bhde", k[:, :, t], v[:, :, t])
        n = f_t * n + i_t * k[:, :, t]
        q_hat = q[:, :, t] / math.sqrt(DQK)
        num = torch.einsum("bhd,bhde->bhe", q_hat, C)
        den = torch.einsum("bhd,bhd->bh", q_hat, n).abs().clamp_min(1.0)[..., None]
        hs.append(num / den)
    return torch.stack(hs, dim=2), (C, n)


def run(name, q, k, v, i, f, eps, chunk_size=4):
    form = MLSTM_FORMS[name]
    return form(q, k, v, i, f, eps=eps, chunk_size=chunk_size) if name == "chunkwise" else form(q, k, v, i, f, eps=eps)


SHAPES = [  # (B, NH, S, DQK, DV)
    (2, 3, 11, 4, 5),
    (1, 1, 1, 3, 2),
    (2, 2, 16, 8, 8),
    (1, 2, 7, 16, 3),
]


@pytest.mark.parametrize("name", list(MLSTM_FORMS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mlstm_form_vs_float64_oracle(name, shape):
    q, k, v, i, f = inputs(*shape)
    assert_close(run(name, q, k, v, i, f, eps=0.0), oracle(q, k, v, i, f)[0], atol=1e-12, rtol=1e-10, name=name)


@pytest.mark.parametrize("name", list(MLSTM_FORMS))
def test_mlstm_form_vs_oracle_with_large_gates(name):
    # Pre-activations far beyond exp's float32 range: only the stabilised states keep float64 exact here.
    q, k, v, i, f = inputs(S=13, i_scale=8.0, f_offset=0.0, seed=3)
    assert_close(run(name, q, k, v, i, f, eps=0.0), oracle(q, k, v, i, f)[0], atol=1e-11, rtol=1e-9, name=name)


@pytest.mark.parametrize("S, chunk_size", [(11, 1), (11, 3), (11, 4), (11, 11), (11, 64), (16, 4), (16, 5),
                                           (1, 3), (2, 1)])
def test_mlstm_chunkwise_vs_recurrent_any_chunk_size(S, chunk_size):
    # With eps = 1e-6 too: the chunkwise stabiliser is the recurrent one, so results and states agree to rounding.
    q, k, v, i, f = inputs(S=S, seed=S + chunk_size)
    h_r, states_r = mlstm_recurrent(q, k, v, i, f, return_last_states=True)
    h_c, states_c = mlstm_chunkwise(q, k, v, i, f, return_last_states=True, chunk_size=chunk_size)
    assert_close(h_c, h_r, atol=1e-12, rtol=1e-10, name="h")
    for name, a, b in zip("Cnm", states_c, states_r, strict=True):
        assert_close(a, b, atol=1e-12, rtol=1e-10, name=name)


def test_mlstm_parallel_vs_recurrent_differs_only_through_eps():
    q, k, v, i, f = inputs(S=20, seed=5)
    exact = mlstm_recurrent(q, k, v, i, f, eps=0.0)
    assert_close(mlstm_parallel(q, k, v, i, f, eps=0.0), exact, atol=1e-12, rtol=1e-10)
    diff = float((mlstm_parallel(q, k, v, i, f, eps=1e-6) - mlstm_recurrent(q, k, v, i, f, eps=1e-6)).abs().max())
    assert 0 < diff < 1e-5  # eps is added to denominators in different units (m_0 = −inf vs m_0 = 0)


@pytest.mark.parametrize("name", ["recurrent", "chunkwise"])
def test_mlstm_states_are_the_true_states_in_stabilised_units(name):
    q, k, v, i, f = inputs(S=9, seed=7)
    _, (C, n, m) = MLSTM_FORMS[name](q, k, v, i, f, return_last_states=True, eps=0.0)
    _, (C_true, n_true) = oracle(q, k, v, i, f)
    assert m.shape == (2, 3, 1)
    assert_close(C * torch.exp(m)[..., None], C_true, name="C e^m")
    assert_close(n * torch.exp(m), n_true, name="n e^m")


@pytest.mark.parametrize("name, chunk_size", [("recurrent", None), ("chunkwise", 3), ("chunkwise", 4)])
def test_mlstm_two_halves_with_the_carried_state_equal_one_pass(name, chunk_size):
    q, k, v, i, f = inputs(S=14, seed=11)
    kw = {} if chunk_size is None else {"chunk_size": chunk_size}
    form = MLSTM_FORMS[name]
    h, last = form(q, k, v, i, f, return_last_states=True, **kw)
    first = [t[:, :, :6] for t in (q, k, v, i, f)]
    second = [t[:, :, 6:] for t in (q, k, v, i, f)]
    h1, (c, n, m) = form(*first, return_last_states=True, **kw)
    h2, last2 = form(*second, c_initial=c, n_initial=n, m_initial=m, return_last_states=True, **kw)
    assert_close(torch.cat([h1, h2], dim=2), h, atol=1e-12, rtol=1e-10, name="h")
    for name_, a, b in zip("Cnm", last2, last, strict=True):
        assert_close(a, b, atol=1e-12, rtol=1e-10, name=name_)


def test_mlstm_initial_states_enter_like_the_oracle():
    q, k, v, i, f = inputs(S=8, seed=13)
    g = torch.Generator().manual_seed(1)
    C0 = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    n0 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    m0 = torch.randn(2, 3, 1, generator=g, dtype=torch.float64)
    expected = oracle(q, k, v, i, f, C=C0 * torch.exp(m0)[..., None], n=n0 * torch.exp(m0))[0]
    for name in ("recurrent", "chunkwise"):
        h = MLSTM_FORMS[name](q, k, v, i, f, c_initial=C0, n_initial=n0, m_initial=m0, eps=0.0)
        assert_close(h, expected, atol=1e-12, rtol=1e-10, name=name)


def test_mlstm_step_vs_oracle_one_step():
    q, k, v, i, f = inputs(S=1, seed=17)
    c, n, m = torch.zeros(2, 3, 4, 5, dtype=torch.float64), torch.zeros(2, 3, 4, dtype=torch.float64), \
        torch.zeros(2, 3, 1, dtype=torch.float64)
    h, (c1, n1, m1) = mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[:, :, 0, None], f[:, :, 0, None], c, n, m,
                                 eps=0.0)
    h_ref, (C_true, n_true) = oracle(q, k, v, i, f)
    assert_close(h, h_ref[:, :, 0], name="h")
    # m_1 = max(log σ(f̃_1) + 0, ĩ_1) from m_0 = 0
    assert_close(m1, torch.maximum(F.logsigmoid(f[:, :, 0, None]), i[:, :, 0, None]), name="m")
    assert_close(c1 * torch.exp(m1)[..., None], C_true, name="C")


def test_mlstm_parallel_stats_match_the_recurrence_started_at_minus_inf():
    q, k, v, i, f = inputs(S=10, seed=19)
    h, (n, m) = mlstm_parallel(q, k, v, i, f, return_stats=True)
    assert n.shape == m.shape == (2, 3, 10)
    B, NH, S, DQK = q.shape
    c_t, n_t, m_t = torch.zeros(B, NH, DQK, 5, dtype=q.dtype), torch.zeros(B, NH, DQK, dtype=q.dtype), \
        torch.full((B, NH, 1), -math.inf, dtype=q.dtype)
    for t in range(S):
        _, (c_t, n_t, m_t) = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t, None], f[:, :, t, None],
                                        c_t, n_t, m_t)
        assert_close(m[:, :, t], m_t[..., 0], name=f"m[{t}]")
        qn = (q[:, :, t] / math.sqrt(DQK) * n_t).sum(-1).abs()
        assert_close(n[:, :, t], torch.maximum(qn, torch.exp(-m_t[..., 0])), name=f"n[{t}]")


def test_log_decay_matrix_is_masked_above_the_diagonal_and_sums_gates():
    _, _, _, i, f = inputs(B=1, NH=1, S=6, seed=23)
    log_D = log_decay_matrix(i, f)[0, 0]
    log_f = F.logsigmoid(f[0, 0])
    assert torch.isinf(log_D.triu(1)[torch.ones(6, 6, dtype=torch.bool).triu(1)]).all()
    for t in range(6):
        for s in range(t + 1):
            assert abs(float(log_D[t, s]) - float(log_f[s + 1:t + 1].sum() + i[0, 0, s])) < 1e-12


def test_log_decay_matrix_has_no_cancellation_for_long_sequences():
    # A difference of two cumulative sums loses the small decays of late rows; the column cumsum does not.
    S = 3000
    f = torch.full((1, 1, S), 12.0, dtype=torch.float32)
    i = torch.zeros(1, 1, S, dtype=torch.float32)
    log_D = log_decay_matrix(i, f)[0, 0]
    expected = F.logsigmoid(torch.tensor(12.0, dtype=torch.float64))
    assert abs(float(log_D[-1, -2]) - float(expected)) / abs(float(expected)) < 1e-5


@pytest.mark.parametrize("name", list(MLSTM_FORMS))
def test_mlstm_float32_close_to_float64(name):
    q, k, v, i, f = inputs(S=32, DQK=8, DV=8, seed=29)
    h64 = run(name, q, k, v, i, f, eps=1e-6, chunk_size=8)
    h32 = run(name, *(t.float() for t in (q, k, v, i, f)), eps=1e-6, chunk_size=8)
    assert h32.dtype == torch.float32
    assert_close(h32, h64, atol=1e-5, rtol=1e-4, name=name)


@pytest.mark.parametrize("name", list(MLSTM_FORMS))
def test_mlstm_float32_large_input_gate_stays_finite(name):
    # exp(100) overflows float32: the stabiliser must keep every exponent ≤ 0.
    q, k, v, i, f = inputs(S=12, seed=31)
    i = i + 100.0
    h = run(name, *(t.float() for t in (q, k, v, i, f)), eps=1e-6)
    assert torch.isfinite(h).all()
    assert_close(h, run(name, q, k, v, i, f, eps=1e-6), atol=1e-4, rtol=1e-3, name=name)


@pytest.mark.parametrize("name", list(MLSTM_FORMS))
def test_mlstm_gradcheck(name):
    q, k, v, i, f = (t.requires_grad_(True) for t in inputs(B=1, NH=2, S=5, DQK=3, DV=2, seed=37))
    if name == "parallel":
        args, fn = (q, k, v, i, f), lambda *a: mlstm_parallel(*a)
    else:
        g = torch.Generator().manual_seed(2)
        c0 = torch.randn(1, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
        n0 = torch.randn(1, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
        m0 = torch.randn(1, 2, 1, generator=g, dtype=torch.float64, requires_grad=True)
        form = MLSTM_FORMS[name]
        kw = {"chunk_size": 2} if name == "chunkwise" else {}
        args = (q, k, v, i, f, c0, n0, m0)

        def fn(*a):
            h, (c, n, m) = form(*a[:5], c_initial=a[5], n_initial=a[6], m_initial=a[7], return_last_states=True, **kw)
            return h, c, n
    assert torch.autograd.gradcheck(fn, args)


def test_stopgrad_has_the_same_forward_but_not_the_exact_gradient():
    q, k, v, i, f = (t.requires_grad_(True) for t in inputs(S=16, seed=41))
    h_exact = mlstm_parallel(q, k, v, i, f)
    h_stop = mlstm_parallel_stopgrad(q, k, v, i, f)
    assert_close(h_stop, h_exact, atol=0.0, rtol=0.0)
    w = torch.randn(h_exact.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g_exact = torch.autograd.grad((h_exact * w).sum(), (q, i, f))
    g_stop = torch.autograd.grad((h_stop * w).sum(), (q, i, f))
    for a, b in zip(g_exact, g_stop, strict=True):
        assert float((a - b).abs().max()) > 1e-3


@pytest.mark.parametrize("bad, match", [
    (dict(chunk_size=0), "chunk_size"),
    (dict(chunk_size=2.5), "chunk_size"),
    (dict(c_initial=torch.zeros(2, 3, 4, 4)), "c_initial"),
])
def test_mlstm_chunkwise_bad_arguments_raise(bad, match):
    q, k, v, i, f = inputs()
    with pytest.raises(ValueError, match=match):
        mlstm_chunkwise(q, k, v, i, f, **bad)


@pytest.mark.parametrize("name", list(MLSTM_FORMS))
def test_mlstm_wrong_shapes_raise(name):
    q, k, v, i, f = inputs()
    with pytest.raises(ValueError, match="i must have shape"):
        MLSTM_FORMS[name](q, k, v, i[..., :-1], f)
    with pytest.raises(ValueError, match="k must have"):
        MLSTM_FORMS[name](q, k[..., :-1], v, i, f)
