"""Hopfield references against torch built-ins and plain float64 loops: contract, energy, attention."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close

from course_lib.attention import scaled_dot_product_attention
from course_lib.hopfield import (
    classical_energy,
    classical_update,
    classical_update_async,
    dense_energy,
    dense_update,
    effective_patterns,
    hebbian_weights,
    hopfield_energy,
    hopfield_retrieve,
    keys_for_mass,
    lse,
    update_as_attention,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def signs(*shape, seed=0):
    return torch.randint(0, 2, shape, generator=gen(seed)).double() * 2 - 1


# ---------------------------------------------------------------------------------------------------
# hopfield_retrieve


@pytest.mark.parametrize("n_steps", [1, 2, 5])
def test_hopfield_retrieve_vs_torch_sdpa_iterated(n_steps):
    xi, X = randn(2, 3, 5, 8, seed=1), randn(2, 3, 7, 8, seed=2)
    beta = 0.7
    expected = xi
    for _ in range(n_steps):
        expected = F.scaled_dot_product_attention(expected, X, X, scale=beta)
    assert_close(hopfield_retrieve(xi, X, beta, n_steps=n_steps), expected)


def test_hopfield_retrieve_weights_are_those_of_the_last_update():
    xi, X = randn(4, 6, seed=3), randn(9, 6, seed=4)
    beta = 1.3
    after_one = hopfield_retrieve(xi, X, beta, n_steps=1)
    new, weights = hopfield_retrieve(xi, X, beta, n_steps=2, return_weights=True)
    expected_w = torch.softmax(beta * after_one @ X.T, dim=-1)
    assert_close(weights, expected_w)
    assert_close(new, expected_w @ X)
    assert weights.shape == (4, 9)


def test_hopfield_retrieve_leading_dims_equal_a_loop_and_none():
    xi, X = randn(2, 3, 4, 5, seed=5), randn(2, 3, 6, 5, seed=6)
    out, w = hopfield_retrieve(xi, X, 0.9, n_steps=2, return_weights=True)
    for b, h in itertools.product(range(2), range(3)):
        o, ww = hopfield_retrieve(xi[b, h], X[b, h], 0.9, n_steps=2, return_weights=True)
        assert_close(out[b, h], o)
        assert_close(w[b, h], ww)
    # stored patterns without leading dimensions broadcast over the batch
    shared = hopfield_retrieve(xi, X[0, 0], 0.9)
    assert_close(shared[1, 2], hopfield_retrieve(xi[1, 2], X[0, 0], 0.9))


def test_hopfield_retrieve_keeps_dtype_and_gradients():
    xi, X = randn(3, 4, dtype=torch.float32).requires_grad_(), randn(5, 4, dtype=torch.float32).requires_grad_()
    out, w = hopfield_retrieve(xi, X, 1.0, return_weights=True)
    assert out.dtype == w.dtype == torch.float32
    (out.sum() + w[:, 0].sum()).backward()
    assert xi.grad is not None and X.grad is not None and torch.isfinite(xi.grad).all()


def test_hopfield_retrieve_bad_input():
    with pytest.raises(ValueError, match="n_steps"):
        hopfield_retrieve(randn(2, 3), randn(4, 3), 1.0, n_steps=0)
    with pytest.raises(ValueError, match="d=3"):
        hopfield_retrieve(randn(2, 3), randn(4, 5), 1.0)


def test_update_with_inverse_sqrt_d_is_attention():
    # The central result: one update with beta = 1/sqrt(d) is attention with K = V = X.
    xi, X = randn(2, 4, 10, 16, seed=7), randn(2, 4, 12, 16, seed=8)
    beta = 1 / math.sqrt(16)
    new, weights = hopfield_retrieve(xi, X, beta, return_weights=True)
    out, w = scaled_dot_product_attention(xi, X, X)
    assert_close(new, out, atol=1e-13, rtol=1e-12)
    assert_close(weights, w, atol=1e-13, rtol=1e-12)
    assert_close(new, F.scaled_dot_product_attention(xi, X, X), atol=1e-13, rtol=1e-12)


def test_update_with_projections_is_attention():
    R, Y = randn(2, 5, 6, seed=9), randn(2, 7, 10, seed=10)
    W_Q, W_K, W_V = randn(6, 4, seed=11), randn(10, 4, seed=12), randn(4, 3, seed=13)
    Z, w = update_as_attention(R, Y, W_Q, W_K, W_V)
    K = Y @ W_K
    assert_close(Z, F.scaled_dot_product_attention(R @ W_Q, K, K @ W_V))
    # The same as one Hopfield update of the queries in the key space, then W_V.
    assert_close(Z, hopfield_retrieve(R @ W_Q, K, 1 / math.sqrt(4)) @ W_V)
    assert w.shape == (2, 5, 7)


# ---------------------------------------------------------------------------------------------------
# hopfield_energy


def energy_loop(xi, X, beta):
    """E for one state pattern with Python floats: −β⁻¹ log Σ exp(β x·ξ) + ½‖ξ‖² + β⁻¹ log N + ½ M²."""
    overlaps = [float(x @ xi) for x in X]
    top = max(overlaps)
    lse_value = top + math.log(sum(math.exp(beta * (o - top)) for o in overlaps)) / beta
    M = max(float(x.norm()) for x in X)
    return -lse_value + 0.5 * float(xi @ xi) + math.log(len(X)) / beta + 0.5 * M * M


def test_hopfield_energy_vs_python_loop_with_m_per_leading_index():
    xi = randn(2, 3, 4, seed=14)
    X = randn(2, 5, 4, seed=15)
    X[1] *= 3.0  # the second memory has larger patterns: M must be taken per leading index
    beta = 0.8
    E = hopfield_energy(xi, X, beta)
    assert E.shape == (2, 3)
    expected = torch.tensor([[energy_loop(xi[b, s], X[b], beta) for s in range(3)] for b in range(2)],
                            dtype=torch.float64)
    assert_close(E, expected)


def test_lse_is_a_smooth_max():
    z = randn(7, seed=16)
    assert_close(lse(1.0, z), torch.logsumexp(z, 0))
    assert abs(float(lse(1e4, z)) - float(z.max())) < 1e-3


@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0, 8.0])
def test_energy_never_increases_along_updates(beta):
    X = randn(32, 16, seed=17) * 2
    xi = randn(400, 16, seed=18) * 3
    e = hopfield_energy(xi, X, beta)
    for _ in range(8):
        xi = hopfield_retrieve(xi, X, beta)
        e_new = hopfield_energy(xi, X, beta)
        assert float((e_new - e).max()) <= 1e-12 * float(e.abs().max()), float((e_new - e).max())
        e = e_new


def test_energy_is_bounded_by_zero_and_two_m_squared_after_an_update():
    X = randn(20, 8, seed=19)
    xi = hopfield_retrieve(randn(50, 8, seed=20) * 4, X, 1.5)  # updated states lie in the convex hull of X
    E = hopfield_energy(xi, X, 1.5)
    M = float(X.norm(dim=-1).max())
    assert float(E.min()) >= -1e-12 and float(E.max()) <= 2 * M * M


def test_one_update_retrieves_a_well_separated_pattern():
    X = signs(16, 64, seed=21)
    query = X[3].clone()
    query[:8] *= -1  # 8 of 64 bits wrong
    out = hopfield_retrieve(query[None], X, 1.0)
    assert float((out[0] - X[3]).norm() / X[3].norm()) < 1e-6


# ---------------------------------------------------------------------------------------------------
# Retrieval statistics


def test_keys_for_mass_and_effective_patterns():
    w = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    assert keys_for_mass(w, 0.9).tolist() == [3, 4, 1]
    assert keys_for_mass(w, 0.5).tolist() == [1, 2, 1]
    assert_close(effective_patterns(w)[1:], torch.tensor([4.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        keys_for_mass(w, 0.0)


# ---------------------------------------------------------------------------------------------------
# Classical network


def test_hebbian_weights_vs_sum_of_outer_products():
    X = signs(2, 5, 7, seed=22)
    W = hebbian_weights(X)
    for b in range(2):
        expected = sum(torch.outer(x, x) for x in X[b])
        expected.fill_diagonal_(0.0)
        assert_close(W[b], expected)
    assert torch.equal(W, W.transpose(-2, -1))


def test_orthogonal_patterns_are_fixed_points_of_both_updates():
    H = torch.tensor([[1.0]], dtype=torch.float64)
    for _ in range(4):
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)  # 16 x 16 Hadamard
    X = H[1:4]  # three orthogonal ±1 patterns
    W = hebbian_weights(X)
    assert torch.equal(classical_update(X, W, n_steps=3), X)
    assert torch.equal(classical_update_async(X, W, n_sweeps=2), X)


def test_classical_update_is_synchronous_and_ties_keep_the_state():
    W = torch.tensor([[0.0, 1.0, -1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    xi = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    # fields: 1 - 1 = 0 (tie: keep +1), 1 (-> +1), -1 (-> -1)
    assert classical_update(xi, W).tolist() == [[1.0, 1.0, -1.0]]
    loop = xi.clone()
    for _ in range(3):
        loop = torch.stack([torch.where((W @ s) > 0, 1.0, torch.where((W @ s) < 0, -1.0, s)).double() for s in loop])
    assert torch.equal(classical_update(xi, W, n_steps=3), loop)


def test_asynchronous_updates_never_increase_the_classical_energy():
    X = signs(30, 40, seed=23)  # overloaded on purpose: many spurious states
    W = hebbian_weights(X)
    xi = signs(25, 40, seed=24)
    e = classical_energy(xi, W)
    g = gen(25)
    for _ in range(4):
        xi = classical_update_async(xi, W, n_sweeps=1, generator=g)
        e_new = classical_energy(xi, W)
        assert bool((e_new <= e + 1e-9).all())
        e = e_new


def test_classical_energy_vs_formula():
    X, xi = signs(4, 6, seed=26), signs(3, 6, seed=27)
    W = hebbian_weights(X)
    expected = torch.stack([-0.5 * s @ W @ s for s in xi])
    assert_close(classical_energy(xi, W), expected)


# ---------------------------------------------------------------------------------------------------
# Dense associative memory


def test_dense_update_with_n_2_is_the_classical_update():
    X, xi = signs(12, 20, seed=28), signs(30, 20, seed=29)
    assert torch.equal(dense_update(xi, X, n=2), classical_update(xi, hebbian_weights(X)))


@pytest.mark.parametrize("n", [3, 4, "exp"])
def test_dense_update_picks_the_lower_energy_sign_of_each_unit(n):
    X, xi = signs(9, 10, seed=30), signs(6, 10, seed=31)
    new = dense_update(xi, X, n=n, chunk=50)  # a small chunk exercises the chunked path
    for s in range(xi.shape[0]):
        for i in range(10):
            up, down = xi[s].clone(), xi[s].clone()
            up[i], down[i] = 1.0, -1.0
            e_up, e_down = float(dense_energy(up[None], X, n)), float(dense_energy(down[None], X, n))
            expected = xi[s, i] if e_up == e_down else (1.0 if e_up < e_down else -1.0)
            assert float(new[s, i]) == expected


def test_dense_bad_interaction():
    with pytest.raises(ValueError, match="n must be"):
        dense_update(signs(2, 4), signs(3, 4), n=0)
