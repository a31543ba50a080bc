"""Module 04 graders: references and differently written correct versions pass; plausible mistakes are
rejected at the sub-check they should trip, and the catalogue names them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_passes, assert_rejected_at, assert_stub_not_attempted

from course_lib.attention import scaled_dot_product_attention
from course_lib.grading import EXERCISES
from course_lib.grading.core import MISTAKES
from course_lib.hopfield import reference as ref

MODULE_04 = {"hopfield_retrieve": ["xi", "X", "beta", "n_steps", "return_weights"],
             "hopfield_energy": ["xi", "X", "beta"],
             "hebbian_weights": ["X"],
             "classical_update": ["xi", "W", "n_steps"],
             "update_is_attention": ["R", "Y", "W_Q", "W_K", "W_V"]}


def update_is_attention_solution(R, Y, W_Q, W_K, W_V):
    """The solution notebook's code. (``ref.update_as_attention`` calls the attention function from
    inside course_lib, which the grader's rule does not count as the learner's own call.)"""
    K = Y @ W_K
    return scaled_dot_product_attention(R @ W_Q, K, K @ W_V)


REFERENCES = {"hopfield_retrieve": ref.hopfield_retrieve, "hopfield_energy": ref.hopfield_energy,
              "hebbian_weights": ref.hebbian_weights, "classical_update": ref.classical_update,
              "update_is_attention": update_is_attention_solution}


def named(text: str, description: str) -> bool:
    return f"your output matches what you get when {description}" in text


def description(exercise_id: str, fragment: str) -> str:
    """The catalogued description of ``exercise_id`` that contains ``fragment`` (exactly one)."""
    found = [m.description for m in MISTAKES[exercise_id] if fragment in m.description]
    assert len(found) == 1, (fragment, found)
    return found[0]


def test_module_04_exercises_are_registered_with_catalogues():
    assert all(EXERCISES[e].module == "04" for e in MODULE_04)
    assert all(len(MISTAKES[e]) >= 4 for e in MODULE_04)


@pytest.mark.parametrize("exercise_id", list(MODULE_04))
def test_reference_passes_without_diagnosis(exercise_id):
    assert_passes(exercise_id, REFERENCES[exercise_id])


@pytest.mark.parametrize("exercise_id", list(MODULE_04))
def test_unsolved_stub_is_not_attempted(exercise_id):
    assert_stub_not_attempted(exercise_id, MODULE_04[exercise_id])


@pytest.mark.parametrize("wrong", [m for e in MODULE_04 for m in MISTAKES[e]],
                         ids=lambda m: f"{m.exercise_id}: {m.description[:40]}")
def test_every_catalogued_mistake_is_rejected_and_named(wrong):
    stage = "finite" if "overflows" in wrong.description else "values"
    text = assert_rejected_at(wrong.exercise_id, wrong.fn, stage)
    assert named(text, wrong.description), text


# --------------------------------------------------------------------------------------------
# hopfield_retrieve
# --------------------------------------------------------------------------------------------


def retrieve_einsum(xi, X, beta, n_steps=1, return_weights=False):
    """Correct: einsum and a hand-written, max-shifted softmax."""
    for _ in range(n_steps):
        s = beta * torch.einsum("...sd,...nd->...sn", xi, X)
        e = torch.exp(s - s.amax(-1, keepdim=True))
        p = e / e.sum(-1, keepdim=True)
        xi = torch.einsum("...sn,...nd->...sd", p, X)
    return (xi, p) if return_weights else xi


def retrieve_looped(xi, X, beta, n_steps=1, return_weights=False):
    """Correct: a loop over the leading indices and the state patterns, one vector at a time."""
    lead = torch.broadcast_shapes(xi.shape[:-2], X.shape[:-2])
    xs, Xs = xi.expand(*lead, *xi.shape[-2:]).reshape(-1, *xi.shape[-2:]), X.expand(*lead, *X.shape[-2:]).reshape(
        -1, *X.shape[-2:])
    outs, weights = [], []
    for x_b, X_b in zip(xs, Xs, strict=True):
        rows, wrows = [], []
        for s in x_b:
            for _ in range(n_steps):
                p = torch.softmax(beta * (X_b @ s), dim=0)
                s = X_b.T @ p
            rows.append(s)
            wrows.append(p)
        outs.append(torch.stack(rows))
        weights.append(torch.stack(wrows))
    out = torch.stack(outs).reshape(*lead, *xi.shape[-2:])
    w = torch.stack(weights).reshape(*lead, xi.shape[-2], X.shape[-2])
    return (out, w) if return_weights else out


def retrieve_via_attention(xi, X, beta, n_steps=1, return_weights=False):
    """Correct: the course's attention with scale = beta."""
    for _ in range(n_steps):
        xi, w = scaled_dot_product_attention(xi, X, X, scale=beta)
    return (xi, w) if return_weights else xi


@pytest.mark.parametrize("fn", [retrieve_einsum, retrieve_looped, retrieve_via_attention])
def test_retrieve_other_correct_versions_pass(fn):
    assert_passes("hopfield_retrieve", fn)


def retrieve_softmax_over_states(xi, X, beta, n_steps=1, return_weights=False):
    for _ in range(n_steps):
        p = torch.softmax(beta * xi @ X.transpose(-2, -1), dim=-2)
        xi = p @ X
    return (xi, p) if return_weights else xi


def retrieve_beta_outside(xi, X, beta, n_steps=1, return_weights=False):
    for _ in range(n_steps):
        p = torch.softmax(xi @ X.transpose(-2, -1), dim=-1)
        xi = beta * p @ X
    return (xi, p) if return_weights else xi


def retrieve_one_extra_step(xi, X, beta, n_steps=1, return_weights=False):
    for _ in range(n_steps + 1):
        p = torch.softmax(beta * xi @ X.transpose(-2, -1), dim=-1)
        xi = p @ X
    return (xi, p) if return_weights else xi


def retrieve_state_not_updated(xi, X, beta, n_steps=1, return_weights=False):
    new = xi
    for _ in range(n_steps):
        p = torch.softmax(beta * xi @ X.transpose(-2, -1), dim=-1)
        new = p @ X  # always from the initial state
    return (new, p) if return_weights else new


def retrieve_first_weights(xi, X, beta, n_steps=1, return_weights=False):
    first = None
    for _ in range(n_steps):
        p = torch.softmax(beta * xi @ X.transpose(-2, -1), dim=-1)
        first = p if first is None else first
        xi = p @ X
    return (xi, first) if return_weights else xi


@pytest.mark.parametrize("fn, fragment", [
    (retrieve_softmax_over_states, "over the state patterns"),
    (retrieve_beta_outside, "β multiplies the result"),
    (retrieve_one_extra_step, "n_steps + 1"),
    (retrieve_state_not_updated, "starts again from the initial ξ"),
    (retrieve_first_weights, "first update instead of the last"),
])
def test_retrieve_mistakes_are_rejected_and_named(fn, fragment):
    text = assert_rejected_at("hopfield_retrieve", fn, "values")
    assert named(text, description("hopfield_retrieve", fragment)), text


def test_retrieve_detached_and_wrong_dtype_are_rejected():
    assert_rejected_at("hopfield_retrieve", lambda xi, X, beta, n_steps=1, return_weights=False:
                       ref.hopfield_retrieve(xi.detach(), X.detach(), beta, n_steps, return_weights), "gradients")
    assert_rejected_at("hopfield_retrieve", lambda xi, X, beta, n_steps=1, return_weights=False:
                       ref.hopfield_retrieve(xi.double(), X.double(), beta, n_steps, return_weights), "dtype")


# --------------------------------------------------------------------------------------------
# hopfield_energy
# --------------------------------------------------------------------------------------------


def energy_by_hand(xi, X, beta):
    """Correct: the max subtracted by hand, einsum, M from a sqrt of sums of squares."""
    s = beta * torch.einsum("...sd,...nd->...sn", xi, X)
    top = s.amax(-1, keepdim=True)
    lse_value = (top.squeeze(-1) + torch.log(torch.exp(s - top).sum(-1))) / beta
    M = torch.sqrt((X**2).sum(-1)).max(dim=-1).values.unsqueeze(-1)
    return -lse_value + 0.5 * torch.einsum("...d,...d->...", xi, xi) + math.log(X.shape[-2]) / beta + 0.5 * M * M


def energy_with_lib_lse(xi, X, beta):
    """Correct: through the library's lse helper and torch.linalg.vector_norm."""
    M = torch.linalg.vector_norm(X, dim=-1).amax(-1)[..., None]
    return (-ref.lse(beta, xi @ X.mT) + 0.5 * xi.pow(2).sum(-1) + math.log(X.shape[-2]) / beta
            + 0.5 * M.pow(2))


@pytest.mark.parametrize("fn", [energy_by_hand, energy_with_lib_lse])
def test_energy_other_correct_versions_pass(fn):
    assert_passes("hopfield_energy", fn)


def energy_without_half_norm(xi, X, beta):
    M = X.norm(dim=-1).amax(-1, keepdim=True)
    return -torch.logsumexp(beta * xi @ X.mT, -1) / beta + math.log(X.shape[-2]) / beta + 0.5 * M**2


def energy_without_log_n(xi, X, beta):
    M = X.norm(dim=-1).amax(-1, keepdim=True)
    return -torch.logsumexp(beta * xi @ X.mT, -1) / beta + 0.5 * (xi * xi).sum(-1) + 0.5 * M**2


def energy_lse_without_inverse_beta(xi, X, beta):
    M = X.norm(dim=-1).amax(-1, keepdim=True)
    return (-torch.logsumexp(beta * xi @ X.mT, -1) + 0.5 * (xi * xi).sum(-1) + math.log(X.shape[-2]) / beta
            + 0.5 * M**2)


def energy_global_m(xi, X, beta):
    M = X.norm(dim=-1).max()  # over every leading index at once
    return (-torch.logsumexp(beta * xi @ X.mT, -1) / beta + 0.5 * (xi * xi).sum(-1) + math.log(X.shape[-2]) / beta
            + 0.5 * M**2)


def energy_m_wrong_axis(xi, X, beta):
    M = X.norm(dim=-2).amax(-1, keepdim=True)
    return (-torch.logsumexp(beta * xi @ X.mT, -1) / beta + 0.5 * (xi * xi).sum(-1) + math.log(X.shape[-2]) / beta
            + 0.5 * M**2)


def energy_overflowing(xi, X, beta):
    M = X.norm(dim=-1).amax(-1, keepdim=True)
    lse_value = torch.log(torch.exp(beta * xi @ X.mT).sum(-1)) / beta
    return -lse_value + 0.5 * (xi * xi).sum(-1) + math.log(X.shape[-2]) / beta + 0.5 * M**2


@pytest.mark.parametrize("fn, fragment, stage", [
    (energy_without_half_norm, "½ ξᵀξ", "values"),
    (energy_without_log_n, "β⁻¹ log N", "values"),
    (energy_lse_without_inverse_beta, "without the 1/β", "values"),
    (energy_global_m, "over all leading indices", "values"),
    (energy_m_wrong_axis, "wrong axis", "values"),
    (energy_overflowing, "overflows", "finite"),
])
def test_energy_mistakes_are_rejected_and_named(fn, fragment, stage):
    text = assert_rejected_at("hopfield_energy", fn, stage)
    assert named(text, description("hopfield_energy", fragment)), text


# --------------------------------------------------------------------------------------------
# hebbian_weights
# --------------------------------------------------------------------------------------------


def hebbian_outer_loop(X):
    """Correct: a sum of outer products, one pattern at a time, then the diagonal zeroed by a mask."""
    W = torch.zeros(*X.shape[:-2], X.shape[-1], X.shape[-1], dtype=X.dtype)
    for mu in range(X.shape[-2]):
        x = X[..., mu, :]
        W = W + x.unsqueeze(-1) * x.unsqueeze(-2)
    return W * (1 - torch.eye(X.shape[-1], dtype=X.dtype))


def hebbian_einsum(X):
    """Correct: einsum, then the diagonal subtracted."""
    W = torch.einsum("...ni,...nj->...ij", X, X)
    return W - torch.diag_embed(torch.diagonal(W, dim1=-2, dim2=-1))


@pytest.mark.parametrize("fn", [hebbian_outer_loop, hebbian_einsum])
def test_hebbian_other_correct_versions_pass(fn):
    assert_passes("hebbian_weights", fn)


@pytest.mark.parametrize("fn, fragment, stage", [
    (lambda X: X.mT @ X, "not set to zero", "values"),
    (lambda X: (X.mT @ X).masked_fill(torch.eye(X.shape[-1], dtype=torch.bool), 1.0), "set to 1", "values"),
    (lambda X: ref.hebbian_weights(X) / X.shape[-2], "number of patterns", "values"),
    (lambda X: ref.hebbian_weights(X) / X.shape[-1], "dimension d", "values"),
], ids=["diagonal-kept", "diagonal-one", "over-N", "over-d"])
def test_hebbian_mistakes_are_rejected_and_named(fn, fragment, stage):
    text = assert_rejected_at("hebbian_weights", fn, stage)
    assert named(text, description("hebbian_weights", fragment)), text


def test_hebbian_shape_and_dtype_mistakes_are_rejected():
    # X Xᵀ holds the N × N overlaps between patterns, not the d × d couplings between units
    text = assert_rejected_at("hebbian_weights", lambda X: (X @ X.mT).masked_fill(
        torch.eye(X.shape[-2], dtype=torch.bool), 0.0), "shapes")
    assert "(3, 3)" in text and "(8, 8)" in text
    assert_rejected_at("hebbian_weights", lambda X: ref.hebbian_weights(X.double()), "dtype")


# --------------------------------------------------------------------------------------------
# classical_update
# --------------------------------------------------------------------------------------------


def classical_unit_loop(xi, W, n_steps=1):
    """Correct: a loop over units that reads only the old state (synchronous), written per unit."""
    for _ in range(n_steps):
        old = xi
        new = old.clone()
        for i in range(xi.shape[-1]):
            h = (old * W[..., i, :].unsqueeze(-2)).sum(-1)  # (..., S)
            new[..., i] = torch.where(h > 0, torch.ones_like(h), torch.where(h < 0, -torch.ones_like(h), old[..., i]))
        xi = new
    return xi


def classical_sign_fixed(xi, W, n_steps=1):
    """Correct: torch.sign, with the zeros replaced by the old state."""
    for _ in range(n_steps):
        s = torch.sign(torch.einsum("...ij,...sj->...si", W, xi))
        xi = torch.where(s == 0, xi, s)
    return xi


@pytest.mark.parametrize("fn", [classical_unit_loop, classical_sign_fixed])
def test_classical_other_correct_versions_pass(fn):
    assert_passes("classical_update", fn)


def classical_plain_sign(xi, W, n_steps=1):
    for _ in range(n_steps):
        xi = torch.sign(xi @ W.mT)
    return xi


def classical_async(xi, W, n_steps=1):
    xi = xi.clone()
    for _ in range(n_steps):
        for i in range(xi.shape[-1]):
            h = (xi * W[..., i, :].unsqueeze(-2)).sum(-1)
            xi[..., i] = torch.where(h > 0, 1.0, torch.where(h < 0, -1.0, xi[..., i])).to(xi.dtype)
    return xi


def classical_transposed(xi, W, n_steps=1):
    for _ in range(n_steps):
        h = xi @ W
        xi = torch.where(h > 0, 1.0, torch.where(h < 0, -1.0, xi)).to(xi.dtype)
    return xi


def classical_state_not_carried(xi, W, n_steps=1):
    new = xi
    for _ in range(n_steps):
        h = xi @ W.mT
        new = torch.where(h > 0, 1.0, torch.where(h < 0, -1.0, xi)).to(xi.dtype)
    return new


def classical_one_step_too_few(xi, W, n_steps=1):
    for _ in range(n_steps - 1):
        h = xi @ W.mT
        xi = torch.where(h > 0, 1.0, torch.where(h < 0, -1.0, xi)).to(xi.dtype)
    return xi


@pytest.mark.parametrize("fn, fragment", [
    (classical_plain_sign, "torch.sign"),
    (classical_async, "one after another"),
    (classical_transposed, "transposed"),
    (classical_state_not_carried, "starts again from the initial ξ"),
    (classical_one_step_too_few, "n_steps − 1"),
])
def test_classical_mistakes_are_rejected_and_named(fn, fragment):
    text = assert_rejected_at("classical_update", fn, "values")
    assert named(text, description("classical_update", fragment)), text


def test_classical_tie_mistakes_are_caught_where_a_field_is_zero():
    text = assert_rejected_at("classical_update", classical_plain_sign, "values")
    assert "FAIL values     xi_new values (xi: (5, 7), W: (7, 7), float64, a non-symmetric integer W (a field of " \
           "exactly 0 occurs))" in text


# --------------------------------------------------------------------------------------------
# update_is_attention
# --------------------------------------------------------------------------------------------


def attention_torch(R, Y, W_Q, W_K, W_V):
    """Correct: torch's fused attention for Z, the weights computed beside it."""
    Q, K = R @ W_Q, Y @ W_K
    Z = F.scaled_dot_product_attention(Q, K, K @ W_V)
    return Z, torch.softmax(Q @ K.mT / math.sqrt(K.shape[-1]), dim=-1)


def attention_course_keywords(R, Y, W_Q, W_K, W_V):
    """Correct: module 03's function with keyword arguments and an explicit scale."""
    K = Y @ W_K
    return scaled_dot_product_attention(q=R @ W_Q, k=K, v=K @ W_V, scale=K.shape[-1] ** -0.5)


@pytest.mark.parametrize("fn", [attention_torch, attention_course_keywords])
def test_attention_other_correct_versions_pass(fn):
    assert_passes("update_is_attention", fn)


def attention_as_hopfield_update(R, Y, W_Q, W_K, W_V):
    """Right numbers, but not the attention call: one Hopfield update in the key space, then W_V."""
    Q, K = R @ W_Q, Y @ W_K
    new, w = ref.hopfield_retrieve(Q, K, K.shape[-1] ** -0.5, return_weights=True)
    return new @ W_V, w


def attention_by_hand(R, Y, W_Q, W_K, W_V):
    """Right numbers, but the softmax and the weighted sum written out instead of the attention call."""
    Q, K = R @ W_Q, Y @ W_K
    w = torch.softmax(Q @ K.mT / math.sqrt(K.shape[-1]), dim=-1)
    return w @ (K @ W_V), w


@pytest.mark.parametrize("fn", [attention_as_hopfield_update, attention_by_hand])
def test_attention_without_the_attention_call_is_rejected_at_rules(fn):
    text = assert_rejected_at("update_is_attention", fn, "rules")
    assert "scaled_dot_product_attention" in text and "diagnosis" not in text, text


def _attn(R, Y, W_Q, W_K, W_V, values="YWkWv", scale=None, dim=-1):
    Q, K = R @ W_Q, Y @ W_K
    V = K @ W_V if values == "YWkWv" else (Y @ W_V if values == "YWv" else K)
    beta = 1 / math.sqrt(K.shape[-1]) if scale is None else scale(Q, K, Y)
    w = torch.softmax(beta * Q @ K.mT, dim=dim)
    return w @ V, w


@pytest.mark.parametrize("fn, fragment", [
    (lambda R, Y, W_Q, W_K, W_V: _attn(R, Y, W_Q, W_K, W_V, values="YWv"), "Y W_V instead"),
    (lambda R, Y, W_Q, W_K, W_V: _attn(R, Y, W_Q, W_K, W_V, values="K"), "W_V is not applied"),
    (lambda R, Y, W_Q, W_K, W_V: _attn(R, Y, W_Q, W_K, W_V, scale=lambda Q, K, Y: Y.shape[-1] ** -0.5),
     "size of the stored patterns"),
    (lambda R, Y, W_Q, W_K, W_V: _attn(R, Y, W_Q, W_K, W_V, scale=lambda Q, K, Y: 1.0), "not scaled"),
    (lambda R, Y, W_Q, W_K, W_V: _attn(R, Y, W_Q, W_K, W_V, dim=-2), "over the queries"),
], ids=["values-YWv", "no-WV", "sqrt-dy", "no-scale", "softmax-queries"])
def test_attention_mistakes_are_rejected_and_named(fn, fragment):
    text = assert_rejected_at("update_is_attention", fn, "values")
    assert named(text, description("update_is_attention", fragment)), text
