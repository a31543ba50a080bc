"""The sLSTM reference: stabilised == unstabilised, the float32 overflow, gradients, conventions, layers."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close

from course_lib.xlstm import (
    SLSTMBlock,
    SLSTMLayer,
    SLSTMTokenModel,
    headwise_recurrence,
    initial_state,
    slstm,
    slstm_step,
    slstm_unstabilised,
    stabilise,
)


def _weights(B=2, S=7, NH=2, DH=3, dtype=torch.float64, seed=0, i_scale=1.0, i_shift=0.0, f_shift=0.0):
    g = torch.Generator().manual_seed(seed)
    H = NH * DH
    wx = torch.randn(B, S, 4 * H, generator=g, dtype=dtype)
    wx[..., :H] = wx[..., :H] * i_scale + i_shift
    wx[..., H:2 * H] += f_shift
    R = torch.randn(4, NH, DH, DH, generator=g, dtype=dtype) / math.sqrt(DH)
    b = torch.randn(4 * H, generator=g, dtype=dtype) * 0.5
    return wx, R, b


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
@pytest.mark.parametrize("NH, DH", [(1, 4), (2, 3), (4, 1)])
def test_slstm_stabilised_vs_unstabilised_float64(forget_gate, NH, DH):
    # exp forget gate: keep f̃ negative so the unstabilised states do not overflow even in float64
    wx, R, b = _weights(NH=NH, DH=DH, S=9, i_scale=3.0, f_shift=-1.5 if forget_gate == "exp" else 0.0)
    h, (h_n, c, n, m) = slstm(wx, R, b, forget_gate=forget_gate, return_last_states=True)
    h_ref, (h_ref_n, c_bar, n_bar) = slstm_unstabilised(wx, R, b, forget_gate=forget_gate, return_last_states=True)
    assert_close(h, h_ref, name="h")
    assert_close(h_n, h[:, -1], name="h_n")
    # the returned states are in stabilised units: c̄ = c e^m, n̄ = n e^m
    assert_close(c * torch.exp(m), c_bar, name="c")
    assert_close(n * torch.exp(m), n_bar, name="n")


def test_slstm_m_is_the_running_max_of_log_weights():
    # Unrolled: m_t = max_s (ĩ_s + Σ_{r=s+1..t} log f_r), the largest log weight of any past input.
    wx, R, b = _weights(B=1, S=6, NH=1, DH=2, i_scale=2.0)
    _, (_, _, _, m) = slstm(wx, R, b, return_last_states=True)
    # recompute the pre-activations along the trajectory
    state = initial_state(1, 2, torch.float64)
    logs, ipres = [], []
    for t in range(6):
        pre = wx[:, t] + headwise_recurrence(state[0], R) + b
        ipres.append(pre[:, :2])
        logs.append(torch.nn.functional.logsigmoid(pre[:, 2:4]))
        _, state = slstm_step(wx[:, t], R, b, state)
    candidates = [ipres[s] + sum(logs[s + 1:], torch.zeros_like(logs[0])) for s in range(6)]
    assert_close(m, torch.stack(candidates).amax(0), name="m")


def test_slstm_normaliser_is_at_least_one_in_stabilised_units():
    wx, R, b = _weights(S=20, i_scale=5.0)
    state = initial_state(2, 6, torch.float64)
    for t in range(20):
        _, state = slstm_step(wx[:, t], R, b, state)
        assert bool((state[2] >= 1 - 1e-12).all())


def test_slstm_float32_overflows_without_the_stabiliser():
    # input-gate pre-activations around 100: exp(100) > 3.4e38, the float32 maximum
    wx, R, b = _weights(S=6, i_scale=5.0, i_shift=100.0, dtype=torch.float32)
    h_plain = slstm_unstabilised(wx, R, b)
    assert not bool(torch.isfinite(h_plain).all())
    h = slstm(wx, R, b)
    assert bool(torch.isfinite(h).all())
    assert_close(h, slstm(wx.double(), R.double(), b.double()), name="h float32 vs float64")


def test_slstm_gradcheck_float64():
    wx, R, b = _weights(B=2, S=4, NH=2, DH=2, i_scale=2.0)
    g = torch.Generator().manual_seed(3)
    h0, c0 = torch.randn(2, 4, generator=g, dtype=torch.float64), torch.randn(2, 4, generator=g, dtype=torch.float64)
    n0 = torch.rand(2, 4, generator=g, dtype=torch.float64) + 1.0
    m0 = torch.randn(2, 4, generator=g, dtype=torch.float64)
    for forget_gate in ("sigmoid", "exp"):
        def f(wx, R, b, h0, c0, n0, fg=forget_gate):
            return slstm(wx, R, b, (h0, c0, n0, m0), fg)

        args = tuple(t.clone().requires_grad_(True) for t in (wx, R, b, h0, c0, n0))
        assert torch.autograd.gradcheck(f, args)


def test_slstm_gradients_equal_those_of_the_unstabilised_recurrence():
    wx, R, b = _weights(S=6, i_scale=2.0)
    grads = []
    for fn in (slstm, slstm_unstabilised):
        leaves = [t.clone().requires_grad_(True) for t in (wx, R, b)]
        (fn(*leaves) ** 2).sum().backward()
        grads.append([t.grad for t in leaves])
    for name, a, r in zip(("wx", "R", "b"), *grads, strict=True):
        assert_close(a, r, name=f"grad {name}")


def _xlstm_vanilla(wx, R, b):
    """The `xlstm` package's vanilla sLSTM cell, re-stated: zero states, m_1 = ĩ_1 while n == 0."""
    B, S, H4 = wx.shape
    H = H4 // 4
    NH, DH = R.shape[1], R.shape[2]
    y, c, n, m = (wx.new_zeros(B, H) for _ in range(4))
    outs = []
    for t in range(S):
        # the package multiplies y (B, NH, 1, DH) by a (NH, DH, 4·DH) matrix per head, gate-major after
        Ry = torch.stack([torch.einsum("koj,bkj->bko", R[gate], y.view(B, NH, DH)).reshape(B, H) for gate in range(4)],
                         dim=1).reshape(B, 4 * H)
        iraw, fraw, zraw, oraw = torch.unbind((wx[:, t] + Ry + b).view(B, 4, H), dim=1)
        logfplusm = m + torch.nn.functional.logsigmoid(fraw)
        mnew = iraw if bool(torch.all(n == 0.0)) else torch.max(iraw, logfplusm)
        igate, fgate = torch.exp(iraw - mnew), torch.exp(logfplusm - mnew)
        c = fgate * c + igate * torch.tanh(zraw)
        n = fgate * n + igate
        y = torch.sigmoid(oraw) * c / n
        m = mnew
        outs.append(y)
    return torch.stack(outs, 1), (y, c, n, m)


def test_slstm_reproduces_the_xlstm_vanilla_cell():
    wx, R, b = _weights(S=8, NH=2, DH=4, i_scale=3.0)
    h, states = slstm(wx, R, b, return_last_states=True)
    h_ref, states_ref = _xlstm_vanilla(wx, R, b)
    assert_close(h, h_ref, name="h")
    for name, s, r in zip("hcnm", states, states_ref, strict=True):
        assert_close(s, r, name=name)


def test_slstm_carried_state_two_halves_equal_one_pass():
    wx, R, b = _weights(S=10, i_scale=2.0)
    for forget_gate in ("sigmoid", "exp"):
        h, last = slstm(wx, R, b, forget_gate=forget_gate, return_last_states=True)
        h1, mid = slstm(wx[:, :4], R, b, forget_gate=forget_gate, return_last_states=True)
        h2, last2 = slstm(wx[:, 4:], R, b, state=mid, forget_gate=forget_gate, return_last_states=True)
        assert_close(torch.cat([h1, h2], 1), h, name="h")
        for name, s, r in zip("hcnm", last2, last, strict=True):
            assert_close(s, r, name=name)


def test_slstm_step_equals_one_step_of_the_sequence():
    wx, R, b = _weights(S=1)
    h, (h_n, c, n, m) = slstm_step(wx[:, 0], R, b, initial_state(2, 6, torch.float64))
    assert_close(h, slstm(wx, R, b)[:, 0])
    assert_close(m, wx[:, 0, :6] + b[:6], name="m_1 = ĩ_1")  # h_0 = 0: no recurrent contribution


def test_headwise_recurrence_is_a_block_diagonal_matrix():
    g = torch.Generator().manual_seed(1)
    NH, DH, B = 3, 2, 4
    R = torch.randn(4, NH, DH, DH, generator=g, dtype=torch.float64)
    h = torch.randn(B, NH * DH, generator=g, dtype=torch.float64)
    dense = torch.stack([torch.block_diag(*R[gate]) for gate in range(4)])  # (4, H, H)
    expected = torch.cat([h @ dense[gate].T for gate in range(4)], dim=-1)  # gate-major (B, 4H)
    assert_close(headwise_recurrence(h, R), expected)


def test_stabilise_from_minus_infinity():
    i_pre = torch.tensor([[0.5, -2.0, 90.0]], dtype=torch.float64)
    log_f = torch.tensor([[-0.1, -3.0, -0.5]], dtype=torch.float64)
    i_s, f_s, m = stabilise(i_pre, log_f, torch.full_like(i_pre, -math.inf))
    assert torch.equal(m, i_pre) and torch.equal(i_s, torch.ones_like(i_s)) and torch.equal(f_s, torch.zeros_like(f_s))


@pytest.mark.parametrize("H, NH", [(5, 1), (6, 3)])
def test_slstm_layer_lstm_config_vs_torch_lstm(H, NH):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(3, H, batch_first=True).double()
    if NH > 1:  # heads: torch's LSTM with a block-diagonal weight_hh is the head-wise LSTM
        DH = H // NH
        mask = torch.block_diag(*[torch.ones(DH, DH)] * NH).repeat(4, 1).double()
        with torch.no_grad():
            ref.weight_hh_l0.mul_(mask)
    layer = SLSTMLayer.from_lstm(ref) if NH == 1 else SLSTMLayer(3, H, NH, cell="lstm").double()
    if NH > 1:
        with torch.no_grad():
            layer.W.weight.copy_(ref.weight_ih_l0)
            w = ref.weight_hh_l0.reshape(4, H, H)
            layer.R.copy_(torch.stack([torch.stack([w[gt, k * DH:(k + 1) * DH, k * DH:(k + 1) * DH]
                                                    for k in range(NH)]) for gt in range(4)]))
            layer.b.copy_(ref.bias_ih_l0 + ref.bias_hh_l0)
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    out_ref, (h_ref, c_ref) = ref(x)
    out, (h, c) = layer(x, return_last_states=True)
    assert_close(out, out_ref, name="out")
    assert_close(c, c_ref[0], name="c")


def test_slstm_layer_and_block_shapes_causality_and_gradients():
    torch.manual_seed(0)
    block = SLSTMBlock(8, num_heads=2).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    x2 = x.detach().clone()
    x2[:, 4:] += 1.0
    assert_close(block(x2)[:, :4], y[:, :4], name="earlier outputs do not see later inputs")
    y.sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in block.parameters())
    model = SLSTMTokenModel(vocab_size=3, n_out=2, d_model=8, num_heads=2, num_blocks=2)
    assert model(torch.randint(0, 3, (4, 5))).shape == (4, 5, 2)


def test_slstm_bad_inputs_raise_clear_errors():
    wx, R, b = _weights()
    with pytest.raises(ValueError, match="forget_gate"):
        slstm(wx, R, b, forget_gate="tanh")
    with pytest.raises(ValueError, match="R must have shape"):
        slstm(wx, R[:, :, :, :2], b)
    with pytest.raises(ValueError, match="b must have shape"):
        slstm(wx, R, b[:-1])
    with pytest.raises(ValueError, match="wx must have shape"):
        slstm(wx[..., :-1], R, b)
    with pytest.raises(ValueError, match="state"):
        slstm(wx, R, b, state=initial_state(3, 6, torch.float64))
    with pytest.raises(ValueError, match="divisible"):
        SLSTMLayer(4, 6, num_heads=4)


def test_slstm_block_state_continues_a_sequence_and_char_model_samples():
    from course_lib.lm import CHAR_LMS
    from course_lib.xlstm.slstm import CharSLSTM

    torch.manual_seed(0)
    block = SLSTMBlock(8, num_heads=2).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    whole = block(x)
    first, state = block(x[:, :4], return_last_states=True)
    second = block(x[:, 4:], state=state)
    assert_close(torch.cat([first, second], 1), whole, name="block, two halves")
    model = CharSLSTM(vocab_size=5, d_model=8, num_heads=2, num_blocks=2)
    ids = torch.randint(0, 5, (3, 7))
    logits, states = model.forward_with_state(ids[:, :3])
    more, _ = model.forward_with_state(ids[:, 3:], states)
    assert_close(torch.cat([logits, more], 1), model(ids), name="char model, stepped")
    assert CHAR_LMS["CharSLSTM"] is CharSLSTM
