"""The LSTM reference against torch.nn.LSTMCell / torch.nn.LSTM, and the carousel's invariants."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close
from torch import nn

from course_lib.lstm import (
    cec_gradient,
    forget_half_life,
    init_forget_bias,
    layer_weights,
    lstm,
    lstm_cell,
    lstm_gate_activations,
    state_gradient_norms,
)
from course_lib.training import SequenceRegressor

DTYPES = [torch.float32, torch.float64]
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _inputs(B, S, I, H, dtype, seed=0):
    """Inputs with a non-trivial initial state (zeros would hide state-handling bugs)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, S, I, generator=gen, dtype=dtype)
    h0 = 0.5 * torch.randn(B, H, generator=gen, dtype=dtype)
    c0 = torch.randn(B, H, generator=gen, dtype=dtype)
    return x, h0, c0


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_vs_torch_lstm_cell(dtype, bias):
    torch.manual_seed(0)
    B, I, H = 3, 4, 5
    cell = nn.LSTMCell(I, H, bias=bias, dtype=dtype)
    x, h0, c0 = _inputs(B, 1, I, H, dtype)
    x = x[:, 0]
    xt, ht, ct = _leaves(x, h0, c0)
    h_ref, c_ref = cell(xt, (ht, ct))
    xm, hm, cm = _leaves(x, h0, c0)
    params = {n: getattr(cell, n) if bias or n.startswith("weight") else None for n in PARAMS}
    mine = {n: None if p is None else p.detach().clone().requires_grad_(True) for n, p in params.items()}
    h, c = lstm_cell(xm, (hm, cm), **mine)
    assert h.dtype == dtype and c.dtype == dtype
    assert_close(h, h_ref, name="h")
    assert_close(c, c_ref, name="c")
    gen = torch.Generator().manual_seed(1)
    wh, wc = (torch.randn(B, H, generator=gen, dtype=dtype) for _ in range(2))
    ((h_ref * wh).sum() + (c_ref * wc).sum()).backward()
    ((h * wh).sum() + (c * wc).sum()).backward()
    for name, a, b in [("x", xm, xt), ("h0", hm, ht), ("c0", cm, ct)]:
        assert_close(a.grad, b.grad, name=f"d/d{name}")
    for n, p in mine.items():
        if p is not None:
            assert_close(p.grad, getattr(cell, n).grad, name=f"d/d{n}")


def test_lstm_cell_state_none_is_zeros():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    w = dict(weight_ih=torch.randn(8, 3, generator=gen, dtype=torch.float64),
             weight_hh=torch.randn(8, 2, generator=gen, dtype=torch.float64))
    zeros = torch.zeros(2, 2, dtype=torch.float64)
    for a, b in zip(lstm_cell(x, None, **w), lstm_cell(x, (zeros, zeros), **w), strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_vs_torch_lstm(dtype, bias):
    torch.manual_seed(0)
    B, S, I, H = 2, 9, 3, 4
    layer = nn.LSTM(I, H, bias=bias, batch_first=True, dtype=dtype)
    x, h0, c0 = _inputs(B, S, I, H, dtype)
    xt, ht, ct = _leaves(x, h0, c0)
    out_ref, (hn_ref, cn_ref) = layer(xt, (ht[None], ct[None]))
    xm, hm, cm = _leaves(x, h0, c0)
    mine = {n: (None if p is None else p.clone().requires_grad_(True)) for n, p in layer_weights(layer).items()}
    out, (hn, cn) = lstm(xm, (hm, cm), **mine)
    assert out.dtype == hn.dtype == cn.dtype == dtype
    assert_close(out, out_ref, name="out")
    assert_close(hn, hn_ref[0], name="h_n")
    assert_close(cn, cn_ref[0], name="c_n")
    gen = torch.Generator().manual_seed(1)
    w_out, w_h, w_c = (torch.randn(t.shape, generator=gen, dtype=dtype) for t in (out, hn, cn))
    ((out_ref * w_out).sum() + (hn_ref[0] * w_h).sum() + (cn_ref[0] * w_c).sum()).backward()
    ((out * w_out).sum() + (hn * w_h).sum() + (cn * w_c).sum()).backward()
    for name, a, b in [("x", xm, xt), ("h0", hm, ht), ("c0", cm, ct)]:
        assert_close(a.grad, b.grad, name=f"d/d{name}")
    for n, p in mine.items():
        if p is not None:
            assert_close(p.grad, getattr(layer, f"{n}_l0").grad, name=f"d/d{n}")


def test_lstm_state_none_matches_torch_default():
    torch.manual_seed(0)
    layer = nn.LSTM(3, 4, batch_first=True, dtype=torch.float64)
    x, _, _ = _inputs(2, 5, 3, 4, torch.float64)
    out_ref, (hn_ref, cn_ref) = layer(x)
    out, (hn, cn) = lstm(x, None, **layer_weights(layer))
    assert_close(out, out_ref, name="out")
    assert_close(cn, cn_ref[0], name="c_n")


@pytest.mark.parametrize("split", [1, 4, 7])
def test_lstm_carried_state_two_halves_equal_one_pass(split):
    gen = torch.Generator().manual_seed(3)
    B, S, I, H = 2, 8, 3, 4
    x, h0, c0 = _inputs(B, S, I, H, torch.float64, seed=3)
    w = dict(weight_ih=torch.randn(4 * H, I, generator=gen, dtype=torch.float64),
             weight_hh=torch.randn(4 * H, H, generator=gen, dtype=torch.float64) / 2,
             bias_ih=torch.randn(4 * H, generator=gen, dtype=torch.float64))
    out, (hn, cn) = lstm(x, (h0, c0), **w)
    out1, state1 = lstm(x[:, :split], (h0, c0), **w)
    out2, (hn2, cn2) = lstm(x[:, split:], state1, **w)
    assert_close(torch.cat([out1, out2], dim=1), out, name="out")
    assert_close(hn2, hn, name="h_n")
    assert_close(cn2, cn, name="c_n")


def test_lstm_gate_activations_match_lstm_and_gate_ranges():
    torch.manual_seed(0)
    layer = nn.LSTM(3, 4, batch_first=True, dtype=torch.float64)
    x, h0, c0 = _inputs(2, 6, 3, 4, torch.float64)
    trace = lstm_gate_activations(x, (h0, c0), **layer_weights(layer))
    out, (hn, cn) = layer(x, (h0[None], c0[None]))
    assert set(trace) == {"i", "f", "g", "o", "c", "h"}
    assert all(v.shape == (2, 6, 4) for v in trace.values())
    assert_close(trace["h"], out, name="h trace")
    assert_close(trace["c"][:, -1], cn[0], name="last c")
    for k in "ifo":
        assert bool(((trace[k] > 0) & (trace[k] < 1)).all()), k
    assert bool((trace["g"].abs() < 1).all())
    # The recurrence the trace claims: c_t = f_t c_{t-1} + i_t g_t.
    c_prev = torch.cat([c0[:, None], trace["c"][:, :-1]], dim=1)
    assert_close(trace["c"], trace["f"] * c_prev + trace["i"] * trace["g"], name="c recurrence")


def test_cec_gradient_vs_autograd_through_the_cell_path():
    """With the h path cut, dc_S/dc_0 from autograd is diagonal and equals the product of forget gates."""
    torch.manual_seed(0)
    B, S, I, H = 1, 12, 3, 4
    layer = nn.LSTM(I, H, batch_first=True, dtype=torch.float64)
    w = layer_weights(layer)
    x, h0, c0 = _inputs(B, S, I, H, torch.float64)

    def c_last(c_init):
        h, c = h0, c_init
        for t in range(S):
            h, c = lstm_cell(x[:, t], (h.detach(), c), **w)
        return c

    jac = torch.autograd.functional.jacobian(c_last, c0)[0, :, 0, :]  # (H, H)
    f_pre = (x @ w["weight_ih"].T + w["bias_ih"] + w["bias_hh"])[..., H:2 * H]  # only valid without the h path
    h_prev = torch.cat([h0[:, None], lstm_gate_activations(x, (h0, c0), **w)["h"][:, :-1]], dim=1)
    f_pre = f_pre + (h_prev @ w["weight_hh"].T)[..., H:2 * H]
    assert_close(torch.diagonal(jac), cec_gradient(f_pre)[0], name="diag")
    assert_close(jac - torch.diag(torch.diagonal(jac)), torch.zeros(H, H, dtype=torch.float64), name="off-diagonal")


def test_forget_half_life_halves_the_memory():
    b = torch.tensor([0.0, 1.0, 3.0, -2.0], dtype=torch.float64)
    n = forget_half_life(b)
    assert_close(torch.sigmoid(b) ** n, torch.full_like(b, 0.5))
    assert_close(n[0], torch.tensor(1.0, dtype=torch.float64))
    assert n.dtype == torch.float64 and forget_half_life(b.float()).dtype == torch.float32


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, False), (2, True)])
def test_init_forget_bias_sets_only_the_forget_rows(layers, bidirectional):
    torch.manual_seed(0)
    H = 5
    module = nn.LSTM(3, H, num_layers=layers, bidirectional=bidirectional)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    ids = {n: id(p) for n, p in module.named_parameters()}
    assert init_forget_bias(module, 2.5) is module
    params = dict(module.named_parameters())
    assert {n: id(p) for n, p in params.items()} == ids
    n_bias = 0
    for n, p in params.items():
        if n.startswith("bias_ih"):
            n_bias += 1
            other = params[n.replace("bias_ih", "bias_hh")]
            assert_close(p[H:2 * H] + other[H:2 * H], torch.full((H,), 2.5), name=n)
        rows = torch.ones(p.shape[0], dtype=torch.bool)
        if n.startswith("bias"):
            rows[H:2 * H] = False
        assert torch.equal(p.detach()[rows], before[n][rows]), n
        assert p.requires_grad
    assert n_bias == layers * (2 if bidirectional else 1)


def test_init_forget_bias_agrees_with_sequence_regressor():
    torch.manual_seed(0)
    a = SequenceRegressor("lstm", 2, 6, forget_bias=3.0)
    torch.manual_seed(0)
    b = SequenceRegressor("lstm", 2, 6)
    init_forget_bias(b.rnn, 3.0)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def _torch_state_gradient_norms(layer, x, seed=0):
    """The same measurement with torch's own layer, independent of the reference.

    For every t, torch's layer runs the rest of the sequence from the state (h_t, c_t); the total
    dL/dc_t is the gradient reaching c_t directly plus the one reaching h_t = o_t tanh(c_t).
    """
    layer = layer.to(torch.float64)
    x = x.to(torch.float64)
    B, S, _ = x.shape
    H = layer.hidden_size
    is_lstm = isinstance(layer, nn.LSTM)
    readout = torch.randn(B, H, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    zeros = torch.zeros(1, B, H, dtype=torch.float64)
    with torch.no_grad():
        out, _ = layer(x, (zeros, zeros) if is_lstm else zeros)
    norms = []
    for t in range(S):
        with torch.no_grad():
            state = layer(x[:, :t + 1], (zeros, zeros) if is_lstm else zeros)[1]
        if is_lstm:
            h_t, c_t = (s.clone().requires_grad_(True) for s in state)
            h_last = layer(x[:, t + 1:], (h_t, c_t))[1][0] if t < S - 1 else h_t
            g_h, g_c = torch.autograd.grad((h_last[0] * readout).sum(), (h_t, c_t), allow_unused=True)
            tanh_c = torch.tanh(c_t.detach())
            grad = (0 if g_c is None else g_c) + g_h * (out[:, t] / tanh_c) * (1 - tanh_c**2)
        else:
            h_t = state.clone().requires_grad_(True)
            h_last = layer(x[:, t + 1:], h_t)[1] if t < S - 1 else h_t
            (grad,) = torch.autograd.grad((h_last[0] * readout).sum(), (h_t,))
        norms.append(grad[0].norm(dim=1).mean())
    norms = torch.stack(norms[::-1])  # lag 0 first
    return norms / norms[0]


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_state_gradient_norms_vs_torch_layer(kind):
    torch.manual_seed(0)
    layer = {"lstm": nn.LSTM, "rnn": nn.RNN}[kind](2, 6, batch_first=True)
    x = torch.randn(3, 15, 2, generator=torch.Generator().manual_seed(1))
    norms = state_gradient_norms(layer, x, seed=2)
    assert norms.shape == (15,) and norms.dtype == torch.float64
    assert_close(norms, _torch_state_gradient_norms(layer, x, seed=2))


def test_state_gradient_norms_follow_the_forget_gate_when_gates_ignore_the_state():
    """weight_hh = 0: the only path back in time is the carousel, so the norm decays like σ(b_f)^k."""
    H, S = 4, 10
    layer = nn.LSTM(2, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        layer.weight_hh_l0.zero_()
        layer.weight_ih_l0.zero_()
        layer.bias_hh_l0.zero_()
        layer.bias_ih_l0.copy_(torch.tensor([0.0] * H + [1.5] * H + [0.3] * H + [0.0] * H))
    x = torch.randn(2, S, 2, dtype=torch.float64)
    norms = state_gradient_norms(layer, x)
    f = 1 / (1 + math.exp(-1.5))
    assert_close(norms, torch.tensor([f**k for k in range(S)], dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# GRU, the cell-path measurement, the hand-built solution
# --------------------------------------------------------------------------------------------

from course_lib.lstm import gru_cell, hand_built_adding_lstm  # noqa: E402
from course_lib.tasks.adding import adding_accuracy, adding_problem  # noqa: E402


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_vs_torch_gru_cell(dtype, bias):
    B, I, H = 3, 4, 5
    torch.manual_seed(0)
    cell = nn.GRUCell(I, H, bias=bias, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(B, I, generator=gen, dtype=torch.float64)
    h = torch.randn(B, H, generator=gen, dtype=torch.float64)
    params = [cell.weight_ih, cell.weight_hh] + ([cell.bias_ih, cell.bias_hh] if bias else [None, None])
    # forward and every gradient, float64 reference from torch itself
    leaves = _leaves(x, h, *[p for p in params if p is not None])
    mine_args = [t.to(dtype) for t in leaves]
    full = mine_args + [None] * (6 - len(mine_args))
    out = gru_cell(*full)
    assert out.dtype == dtype
    expected = cell(x, h)
    assert_close(out, expected, name="h_new")
    g_out = torch.randn(B, H, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((out.double() * g_out).sum(), leaves)
    ref_x, ref_h = _leaves(x, h)
    ref_grads = torch.autograd.grad((cell(ref_x, ref_h) * g_out).sum(), [ref_x, ref_h, *cell.parameters()])
    for name, a, b in zip(["x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], grads, ref_grads,
                          strict=False):  # without biases the last two names have no gradient
        assert_close(a.double(), b, atol=1e-5 if dtype == torch.float32 else None,
                     rtol=1e-4 if dtype == torch.float32 else None, name=f"d/d{name}")


def test_gru_cell_h_none_is_zeros():
    torch.manual_seed(0)
    cell = nn.GRUCell(3, 4, dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64)
    assert_close(gru_cell(x, None, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), cell(x))


def test_gru_update_gate_near_one_keeps_the_state():
    H, I = 4, 2
    w_ih, w_hh = torch.zeros(3 * H, I, dtype=torch.float64), torch.zeros(3 * H, H, dtype=torch.float64)
    b = torch.zeros(3 * H, dtype=torch.float64)
    b[H:2 * H] = 40.0  # z = sigma(40) = 1 to double precision
    h = torch.randn(2, H, dtype=torch.float64)
    assert torch.equal(gru_cell(torch.randn(2, I, dtype=torch.float64), h, w_ih, w_hh, b, None), h)


def test_state_gradient_norms_cell_path_is_the_gradient_at_lag0_times_the_forget_products():
    torch.manual_seed(0)
    layer = init_forget_bias(nn.LSTM(2, 6, batch_first=True), 1.0)
    x, _ = adding_problem(5, 30, torch.Generator().manual_seed(2))
    norms = state_gradient_norms(layer, x, seed=3, paths="cell")
    # Independent computation: dL/dc_S = w * o_S * (1 - tanh^2 c_S), then multiply by the forget gates backwards.
    w = layer_weights(layer, torch.float64)
    trace = lstm_gate_activations(x.double(), None, **w)
    readout = torch.randn(5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    g = readout * trace["o"][:, -1] * (1 - torch.tanh(trace["c"][:, -1]) ** 2)  # (B, H)
    expected = []
    for k in range(30):
        expected.append(g.norm(dim=1).mean())
        g = g * trace["f"][:, 29 - k]
    expected = torch.stack(expected)
    assert_close(norms, expected / expected[0])
    total = state_gradient_norms(layer, x, seed=3)
    assert not torch.allclose(total, norms)  # the gate paths contribute with W_hh != 0
    with pytest.raises(ValueError, match="no cell path"):
        state_gradient_norms(nn.RNN(2, 3, batch_first=True), x, paths="cell")
    with pytest.raises(ValueError, match="paths must be"):
        state_gradient_norms(layer, x, paths="gates")


@pytest.mark.parametrize("T", [10, 200])
def test_hand_built_lstm_solves_the_adding_problem(T):
    weights = hand_built_adding_lstm()
    readout = weights.pop("readout")
    assert weights["weight_ih"].shape == (4, 2) and weights["weight_hh"].shape == (4, 1)
    x, y = adding_problem(500, T, torch.Generator().manual_seed(0), dtype=torch.float64)
    _, (h_T, _) = lstm(x, None, **weights)
    y_hat = h_T[:, 0] * readout
    assert float(((y_hat - y) ** 2).mean()) < 1e-6
    assert adding_accuracy(y_hat, y) == 1.0
    # Without the open forget gate the first value is lost: the construction depends on it.
    weights["bias_ih"] = weights["bias_ih"].clone()
    weights["bias_ih"][1] = 0.0
    _, (h_T, _) = lstm(x, None, **weights)
    assert float(((h_T[:, 0] * readout - y) ** 2).mean()) > 1 / 24
