"""The RNN reference against torch.nn.RNNCell / torch.nn.RNN, manual BPTT against autograd, and the
spectral-radius helpers."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close
from torch import nn

from course_lib.rnn import (
    gradient_norms_over_lag,
    rnn,
    rnn_bptt,
    rnn_cell,
    scale_to_spectral_radius,
    spectral_radius,
)

DTYPES = [torch.float32, torch.float64]
NONLINEARITIES = ["tanh", "relu"]
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
BPTT_KEYS = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _torch_rnn(module_cls, I, H, dtype, nonlinearity, bias=True, seed=0, **kwargs):
    torch.manual_seed(seed)
    return module_cls(I, H, bias=bias, nonlinearity=nonlinearity, dtype=dtype, **kwargs)


def _inputs(B, S, I, H, dtype, seed=1):
    """x and a non-zero initial state (zeros would hide state-handling bugs)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, S, I, generator=gen, dtype=dtype)
    h0 = 0.5 * torch.randn(B, H, generator=gen, dtype=dtype)
    return x, h0


def _weights(module, suffix=""):
    return [getattr(module, name + suffix) for name in PARAMS]


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_cell_vs_torch_rnn_cell(dtype, nonlinearity):
    cell = _torch_rnn(nn.RNNCell, 3, 5, dtype, nonlinearity)
    x, h = _inputs(4, 1, 3, 5, dtype)
    x = x[:, 0]
    x_mine, h_mine = (t.clone().requires_grad_(True) for t in (x, h))
    x_torch, h_torch = (t.clone().requires_grad_(True) for t in (x, h))
    mine = rnn_cell(x_mine, h_mine, *_weights(cell), nonlinearity=nonlinearity)
    expected = cell(x_torch, h_torch)
    assert mine.dtype == dtype
    assert_close(mine, expected, name="h_new")
    # Gradients of one random projection, w.r.t. the inputs, the state and every parameter.
    w = torch.randn(mine.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    grads_mine = torch.autograd.grad((mine * w).sum(), [x_mine, h_mine, *_weights(cell)])
    grads_torch = torch.autograd.grad((expected * w).sum(), [x_torch, h_torch, *_weights(cell)])
    for name, gm, gt in zip(("x", "h", *PARAMS), grads_mine, grads_torch, strict=True):
        assert_close(gm, gt, name=f"d/d{name}")


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_vs_torch_rnn_batch_first(dtype, nonlinearity):
    net = _torch_rnn(nn.RNN, 3, 6, dtype, nonlinearity, batch_first=True)
    x, h0 = _inputs(2, 7, 3, 6, dtype)
    x_mine, h_mine = (t.clone().requires_grad_(True) for t in (x, h0))
    x_torch, h_torch = (t.clone().requires_grad_(True) for t in (x, h0))
    out, h_n = rnn(x_mine, h_mine, *_weights(net, "_l0"), nonlinearity=nonlinearity)
    out_t, h_n_t = net(x_torch, h_torch.unsqueeze(0))
    assert out.shape == (2, 7, 6) and h_n.shape == (2, 6)
    assert out.dtype == h_n.dtype == dtype
    assert_close(out, out_t, name="out")
    assert_close(h_n, h_n_t[0], name="h_n")
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    v = torch.randn(h_n.shape, generator=torch.Generator().manual_seed(4), dtype=dtype)
    leaves = [x_mine, h_mine, *_weights(net, "_l0")]
    grads_mine = torch.autograd.grad((out * w).sum() + (h_n * v).sum(), leaves)
    leaves_t = [x_torch, h_torch, *_weights(net, "_l0")]
    grads_torch = torch.autograd.grad((out_t * w).sum() + (h_n_t[0] * v).sum(), leaves_t)
    for name, gm, gt in zip(("x", "h0", *PARAMS), grads_mine, grads_torch, strict=True):
        assert_close(gm, gt, name=f"d/d{name}")


def test_rnn_without_biases_vs_torch_rnn_bias_false():
    net = _torch_rnn(nn.RNN, 3, 4, torch.float64, "tanh", bias=False, batch_first=True)
    x, h0 = _inputs(2, 5, 3, 4, torch.float64)
    out, h_n = rnn(x, h0, net.weight_ih_l0, net.weight_hh_l0)
    out_t, h_n_t = net(x, h0.unsqueeze(0))
    assert_close(out, out_t, name="out")
    assert_close(h_n, h_n_t[0], name="h_n")


def test_rnn_h0_none_means_zeros():
    net = _torch_rnn(nn.RNN, 3, 4, torch.float64, "tanh", batch_first=True)
    x, _ = _inputs(2, 5, 3, 4, torch.float64)
    out, _ = rnn(x, None, *_weights(net, "_l0"))
    assert_close(out, net(x)[0], name="out")


def test_rnn_cell_rejects_unknown_nonlinearity():
    x, h = torch.zeros(1, 2), torch.zeros(1, 3)
    with pytest.raises(ValueError, match="nonlinearity"):
        rnn_cell(x, h, torch.zeros(3, 2), torch.zeros(3, 3), nonlinearity="sigmoid")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_carried_state_two_halves_equal_one_pass(dtype):
    net = _torch_rnn(nn.RNN, 3, 5, dtype, "tanh", batch_first=True)
    x, h0 = _inputs(2, 9, 3, 5, dtype)
    weights = _weights(net, "_l0")
    out, h_n = rnn(x, h0, *weights)
    out_a, h_mid = rnn(x[:, :4], h0, *weights)
    out_b, h_end = rnn(x[:, 4:], h_mid, *weights)
    assert_close(torch.cat([out_a, out_b], dim=1), out, name="out")
    assert_close(h_end, h_n, name="h_n")


def _bptt_case(B, S, I, H, seed):
    """float64 inputs with a non-zero h0 and a gradient arriving at every output step."""
    gen = torch.Generator().manual_seed(seed)
    args = dict(
        x=torch.randn(B, S, I, generator=gen, dtype=torch.float64),
        h0=0.5 * torch.randn(B, H, generator=gen, dtype=torch.float64),
        weight_ih=torch.randn(H, I, generator=gen, dtype=torch.float64) / I**0.5,
        weight_hh=0.9 * torch.randn(H, H, generator=gen, dtype=torch.float64) / H**0.5,
        bias_ih=0.1 * torch.randn(H, generator=gen, dtype=torch.float64),
        bias_hh=0.1 * torch.randn(H, generator=gen, dtype=torch.float64),
    )
    grad_out = torch.randn(B, S, H, generator=gen, dtype=torch.float64)
    return args, grad_out


def _autograd_grads(args, grad_out, nonlinearity):
    leaves = {k: v.clone().requires_grad_(True) for k, v in args.items()}
    out, _ = rnn(**leaves, nonlinearity=nonlinearity)
    grads = torch.autograd.grad((out * grad_out).sum(), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True))


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("B, S, I, H", [(3, 8, 4, 5), (2, 1, 3, 4), (1, 13, 2, 6)])
def test_rnn_bptt_vs_autograd_float64(B, S, I, H, nonlinearity):
    args, grad_out = _bptt_case(B, S, I, H, seed=S)
    assert bool((args["h0"] != 0).all()) and bool((grad_out != 0).all())
    mine = rnn_bptt(**args, grad_out=grad_out, nonlinearity=nonlinearity)
    expected = _autograd_grads(args, grad_out, nonlinearity)
    assert set(mine) == set(BPTT_KEYS)
    for key in BPTT_KEYS:
        assert mine[key].shape == args[key].shape, key
        assert_close(mine[key], expected[key], atol=1e-12, rtol=1e-10, name=f"grad[{key}]")


def test_rnn_bptt_needs_no_autograd():
    """Under inference_mode autograd cannot run: the manual BPTT still gives autograd's answer."""
    args, grad_out = _bptt_case(2, 6, 3, 4, seed=7)
    with torch.inference_mode():
        mine = rnn_bptt(**args, grad_out=grad_out)
    expected = _autograd_grads(args, grad_out, "tanh")
    for key in BPTT_KEYS:
        assert_close(mine[key], expected[key], name=f"grad[{key}]")


def test_rnn_bptt_float32_keeps_dtype_and_matches_float64():
    args, grad_out = _bptt_case(2, 6, 3, 4, seed=8)
    args32 = {k: v.float() for k, v in args.items()}
    mine = rnn_bptt(**args32, grad_out=grad_out.float())
    expected = _autograd_grads(args, grad_out, "tanh")
    for key in BPTT_KEYS:
        assert mine[key].dtype == torch.float32, key
        assert_close(mine[key], expected[key], name=f"grad[{key}]")


def test_rnn_bptt_leaves_inputs_unchanged():
    args, grad_out = _bptt_case(2, 5, 3, 4, seed=9)
    before = {k: v.clone() for k, v in args.items()}
    rnn_bptt(**args, grad_out=grad_out)
    for key, value in args.items():
        assert torch.equal(value, before[key]), key


def test_spectral_radius_of_known_matrices():
    assert spectral_radius(torch.diag(torch.tensor([0.3, -2.5, 1.0]))) == pytest.approx(2.5, rel=1e-12)
    # A rotation has complex eigenvalues of modulus 1: scaled by r, its spectral radius is r.
    theta = 0.7
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    assert spectral_radius(1.7 * rotation) == pytest.approx(1.7, rel=1e-6)
    # A nilpotent matrix has spectral radius 0 although its norm is 1: radius and norm differ.
    assert spectral_radius(torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)) == 0.0


@pytest.mark.parametrize("rho", [0.5, 1.0, 3.0])
def test_scale_to_spectral_radius_hits_the_target(rho):
    w = torch.randn(16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scaled = scale_to_spectral_radius(w, rho)
    assert spectral_radius(scaled) == pytest.approx(rho, rel=1e-10)
    # Only a rescaling: the direction of the matrix is unchanged.
    assert_close(scaled / scaled.norm(), w / w.norm(), name="direction")


def test_gradient_norms_over_lag_vs_autograd():
    """The curve is ||dL/dh_{S-1-k}|| averaged over the batch, L = <v, h_{S-1}>, relative to lag 0."""
    H, S, B, I, seed = 6, 12, 4, 3, 5
    w_hh = scale_to_spectral_radius(torch.randn(H, H, generator=torch.Generator().manual_seed(1),
                                                dtype=torch.float64), 1.2)
    norms = gradient_norms_over_lag(w_hh, S=S, B=B, I=I, seed=seed)
    # The same draws as the helper, in the same order, then autograd through an explicit loop.
    gen = torch.Generator().manual_seed(seed)
    w_ih = torch.randn(H, I, generator=gen, dtype=torch.float64) / I**0.5
    x = torch.randn(B, S, I, generator=gen, dtype=torch.float64)
    v = torch.randn(B, H, generator=gen, dtype=torch.float64)
    # Keep every state's gradient: hs[S - k] is h_{S-1-k}.
    hs = [torch.zeros(B, H, dtype=torch.float64, requires_grad=True)]
    for t in range(S):
        hs.append(rnn_cell(x[:, t], hs[-1], w_ih, w_hh))
        hs[-1].retain_grad()
    (hs[-1] * v).sum().backward()
    expected = torch.stack([hs[S - k].grad.norm(dim=1).mean() for k in range(S)])
    assert_close(norms, expected / expected[0], name="relative gradient norms")


def test_gradient_norms_over_lag_bounded_by_largest_singular_value():
    """tanh' <= 1, so ||dh_{t-k}|| <= ||W_hh||_2^k ||dh_t||: the measured curve stays below the bound."""
    w = torch.randn(32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 32**0.5
    for rho in (0.5, 0.9, 1.5, 3.0):
        w_hh = scale_to_spectral_radius(w, rho)
        sigma = float(torch.linalg.matrix_norm(w_hh, ord=2))
        norms = gradient_norms_over_lag(w_hh, S=40)
        bound = sigma ** torch.arange(40, dtype=torch.float64)
        assert bool((norms <= bound * (1 + 1e-9)).all()), rho


def test_gradient_norms_over_lag_vanish_for_small_and_explode_for_large_radius():
    w = torch.randn(32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 32**0.5
    small = gradient_norms_over_lag(scale_to_spectral_radius(w, 0.5), S=40)
    large = gradient_norms_over_lag(scale_to_spectral_radius(w, 3.0), S=40)
    assert float(small[0]) == pytest.approx(1.0) and float(large[0]) == pytest.approx(1.0)
    assert float(small[-1]) < 1e-10
    assert float(large[-1]) > 1e2


def test_nonnormal_example_has_radius_rho_but_powers_that_grow():
    """rho = 0.9 is not a bound: the leaky delay line's powers exceed 1 for dozens of steps, then decay at rate rho."""
    from course_lib.rnn import largest_singular_value, matrix_power_norms, nonnormal_example

    w = nonnormal_example(H=8, rho=0.9, coupling=0.3)
    assert spectral_radius(w) == pytest.approx(0.9, abs=1e-12)
    assert not torch.allclose(w @ w.T, w.T @ w), "the example is non-normal"
    norms = matrix_power_norms(w, 400)
    expected = torch.stack([torch.linalg.matrix_norm(torch.linalg.matrix_power(w, k), ord=2) for k in (0, 1, 7, 50)])
    assert_close(norms[[0, 1, 7, 50]], expected, name="||W^k||")
    sigma = largest_singular_value(w)
    k = torch.arange(401, dtype=torch.float64)
    assert bool((norms <= sigma**k * (1 + 1e-9)).all()), "sigma_max^k bounds ||W^k||"
    assert bool((norms >= 0.9**k * (1 - 1e-9)).all()), "rho^k is a lower bound of ||W^k||"
    assert float(norms[50]) > 1.0 > 0.9**50
    assert float(norms.max()) > 100 and float(norms[400]) < 1
    # Gelfand: ||W^k||^(1/k) -> rho; after the transient the decay rate approaches 0.9
    assert float(norms[400] / norms[399]) == pytest.approx(0.9, abs=0.03)


def test_nonnormal_example_rejects_a_single_unit():
    from course_lib.rnn import nonnormal_example

    with pytest.raises(ValueError, match="H >= 2"):
        nonnormal_example(H=1)


def test_matrix_power_norms_of_a_normal_matrix_are_rho_to_the_k():
    from course_lib.rnn import matrix_power_norms

    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    w = q @ torch.diag(torch.linspace(-0.8, 0.5, 8, dtype=torch.float64)) @ q.T  # symmetric: normal
    assert_close(matrix_power_norms(w, 20), 0.8 ** torch.arange(21, dtype=torch.float64), name="||W^k||")


def test_state_gradient_norms_vs_manual_bptt():
    """||dL_b/dh_t|| from the measurement tool == the carried gradient of rnn_bptt with a loss on the last state."""
    from course_lib.rnn import state_gradient_norms

    gen = torch.Generator().manual_seed(4)
    B, S, I, H = 3, 7, 2, 5
    x = torch.randn(B, S, I, generator=gen, dtype=torch.float64)
    h0 = 0.3 * torch.randn(B, H, generator=gen, dtype=torch.float64)
    w_ih = torch.randn(H, I, generator=gen, dtype=torch.float64)
    w_hh = torch.randn(H, H, generator=gen, dtype=torch.float64) / H**0.5
    b_ih, b_hh = torch.randn(2, H, generator=gen, dtype=torch.float64).unbind(0)
    v = torch.randn(B, H, generator=gen, dtype=torch.float64)
    norms = state_gradient_norms(x, h0, w_ih, w_hh, b_ih, b_hh, loss_of_last_state=lambda h: (h * v).sum(-1))
    assert norms.shape == (B, S)
    for t in range(1, S + 1):  # the gradient reaching h_t is dL/dh0 of the remaining steps t+1..S, started at h_t
        out, _ = rnn(x, h0, w_ih, w_hh, b_ih, b_hh)
        h_t = out[:, t - 1]
        grad_out = torch.zeros(B, S - t, H, dtype=torch.float64)
        if S - t == 0:
            expected = v.norm(dim=-1)
        else:
            grad_out[:, -1] = v
            expected = rnn_bptt(x[:, t:], h_t, w_ih, w_hh, b_ih, b_hh, grad_out)["h0"].norm(dim=-1)
        assert_close(norms[:, t - 1], expected, name=f"||dL/dh_{t}||")
    with pytest.raises(ValueError, match="loss_of_last_state"):
        state_gradient_norms(x, h0, w_ih, w_hh)
