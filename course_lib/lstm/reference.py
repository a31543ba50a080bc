"""The LSTM in plain PyTorch: the cell gate by gate, the sequence, and the constant error carousel.

Conventions are those of ``torch.nn.LSTMCell`` and ``torch.nn.LSTM(batch_first=True)``:

    ĩ, f̃, g̃, õ = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh       (pre-activations, rows stacked i, f, g, o)
    c_t = σ(f̃) ⊙ c_{t-1} + σ(ĩ) ⊙ tanh(g̃)
    h_t = σ(õ) ⊙ tanh(c_t)

with ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), biases (4H,), x (B, S, I), h and c (B, H).
Along the cell path (gates held fixed) ∂c_t/∂c_{t-1} = diag(σ(f̃_t)): the constant error carousel.

The GRU (``gru_cell``) follows ``torch.nn.GRUCell``: weights (3H, ·) with rows stacked r, z, n, and
the reset gate multiplies the whole recurrent term W_hn h + b_hn.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GATES = ("i", "f", "g", "o")


def _zeros_state(x: torch.Tensor, H: int) -> tuple[torch.Tensor, torch.Tensor]:
    zeros = x.new_zeros(x.shape[0], H)
    return zeros, zeros.clone()


def lstm_gates(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """The four gate activations of one step: x (B, I), h (B, H) -> (i, f, g, o), each (B, H)."""
    # $$[\tilde i, \tilde f, \tilde g, \tilde o] = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}$$
    a = x @ weight_ih.T + h @ weight_hh.T  # (B, 4H)
    if bias_ih is not None:
        a = a + bias_ih
    if bias_hh is not None:
        a = a + bias_hh
    i_pre, f_pre, g_pre, o_pre = a.chunk(4, dim=-1)  # each (B, H)
    # $$i_t = \sigma(\tilde i),\ f_t = \sigma(\tilde f),\ g_t = \tanh(\tilde g),\ o_t = \sigma(\tilde o)$$
    return torch.sigmoid(i_pre), torch.sigmoid(f_pre), torch.tanh(g_pre), torch.sigmoid(o_pre)


def lstm_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of ``torch.nn.LSTMCell``: x (B, I), state (h, c) each (B, H) or None -> (h, c)."""
    H = weight_hh.shape[1]
    h, c = _zeros_state(x, H) if state is None else state
    i, f, g, o = lstm_gates(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    # $$c_t = f_t \odot c_{t-1} + i_t \odot g_t$$
    c = f * c + i * g  # (B, H)
    # $$h_t = o_t \odot \tanh(c_t)$$
    h = o * torch.tanh(c)  # (B, H)
    return h, c


def lstm(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """``torch.nn.LSTM(batch_first=True)``, one layer: x (B, S, I) -> (out (B, S, H), (h_n, c_n)).

    ``state`` is ``(h0, c0)``, each (B, H), or None for zeros.
    """
    B, S, _ = x.shape
    H = weight_hh.shape[1]
    h, c = _zeros_state(x, H) if state is None else state
    outs = []
    for t in range(S):
        h, c = lstm_cell(x[:, t], (h, c), weight_ih, weight_hh, bias_ih, bias_hh)
        outs.append(h)
    return torch.stack(outs, dim=1), (h, c)  # (B, S, H), ((B, H), (B, H))


def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of ``torch.nn.GRUCell``: x (B, I), h (B, H) or None for zeros -> h_new (B, H).

    ``weight_ih`` (3H, I) and ``weight_hh`` (3H, H) stack the rows of the reset gate r, the update
    gate z and the candidate n, in that order; ``bias_ih``, ``bias_hh`` (3H,) or None.
    """
    H = weight_hh.shape[1]
    if h is None:
        h = x.new_zeros(x.shape[0], H)
    a_x = x @ weight_ih.T  # (B, 3H)
    a_h = h @ weight_hh.T  # (B, 3H)
    if bias_ih is not None:
        a_x = a_x + bias_ih
    if bias_hh is not None:
        a_h = a_h + bias_hh
    x_r, x_z, x_n = a_x.chunk(3, dim=-1)  # each (B, H)
    h_r, h_z, h_n = a_h.chunk(3, dim=-1)
    # $$r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr})$$
    r = torch.sigmoid(x_r + h_r)
    # $$z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})$$
    z = torch.sigmoid(x_z + h_z)
    # $$n_t = \tanh\big(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})\big)$$
    n = torch.tanh(x_n + r * h_n)
    # $$h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$$  (z_t near 1 keeps the old state)
    return (1 - z) * n + z * h


def lstm_gate_activations(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> dict[str, torch.Tensor]:
    """Everything the cell computes over a sequence, for plots: keys i, f, g, o, c, h, each (B, S, H)."""
    B, S, _ = x.shape
    H = weight_hh.shape[1]
    h, c = _zeros_state(x, H) if state is None else state
    trace: dict[str, list[torch.Tensor]] = {k: [] for k in (*GATES, "c", "h")}
    for t in range(S):
        i, f, g, o = lstm_gates(x[:, t], h, weight_ih, weight_hh, bias_ih, bias_hh)
        c = f * c + i * g
        h = o * torch.tanh(c)
        for k, v in zip((*GATES, "c", "h"), (i, f, g, o, c, h), strict=True):
            trace[k].append(v)
    return {k: torch.stack(v, dim=1) for k, v in trace.items()}  # each (B, S, H)


def layer_weights(layer: nn.LSTM | nn.RNN, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The first layer's ``weight_ih, weight_hh, bias_ih, bias_hh`` of an ``nn.LSTM``/``nn.RNN``, detached."""
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    out = {}
    for n in names:
        p = getattr(layer, f"{n}_l0", None)
        out[n] = None if p is None else p.detach().to(dtype or p.dtype)
    return out


def cec_gradient(f_pre: torch.Tensor) -> torch.Tensor:
    """∂c_S/∂c_0 along the cell path, for forget-gate pre-activations f_pre (B, S, H) -> (B, H).

    The Jacobian is diagonal; its entries are the product of the forget gates over the S steps.
    """
    # $$\frac{\partial c_S}{\partial c_0}\Big|_{\text{cell path}} = \prod_{t=1}^{S} \sigma(\tilde f_t)$$
    return torch.sigmoid(f_pre).prod(dim=1)  # (B, H)


def forget_half_life(forget_bias: torch.Tensor) -> torch.Tensor:
    """Steps n after which a stored value has decayed to half when f = σ(forget_bias): σ(b)^n = 1/2."""
    # $$n_{1/2} = \frac{\log 1/2}{\log \sigma(b)}$$
    return math.log(0.5) / F.logsigmoid(forget_bias)


@torch.no_grad()
def init_forget_bias(lstm_module: nn.LSTM, value: float) -> nn.LSTM:
    """Set the forget-gate bias of every layer and direction of ``lstm_module`` to ``value``, in place.

    The forget gate sees ``bias_ih + bias_hh``; rows H:2H of ``bias_ih`` get ``value`` and those of
    ``bias_hh`` get 0. Every other entry, and the Parameter objects themselves, are left as they
    were. Returns the module.
    """
    H = lstm_module.hidden_size
    for name, p in lstm_module.named_parameters():
        if name.startswith("bias_ih"):
            p[H:2 * H] = value
        elif name.startswith("bias_hh"):
            p[H:2 * H] = 0.0
    return lstm_module


def state_gradient_norms(layer: nn.LSTM | nn.RNN, x: torch.Tensor, seed: int = 0, paths: str = "all") -> torch.Tensor:
    """||∂L/∂s_{S-1-k}|| for lags k = 0..S-1, where s is c_t for an LSTM and h_t for an RNN.

    L = w · h_{S-1} with a fixed random w (the read-out of the last state, as in module 01's
    ``gradient_norms_over_lag``). Runs the first layer of ``layer`` in float64 on the real inputs
    x (B, S, I); the norm is averaged over the batch and divided by its value at lag 0. For the
    LSTM with ``paths="all"`` this is the total gradient through c_t: the cell path plus every path
    through h_t. With ``paths="cell"`` (LSTM only) the gates read a detached h_{t-1}, so the same
    forward values are differentiated along the cell path alone: ∂L/∂c_{S-1-k} = ∂L/∂c_{S-1} ⊙ ∏ f.
    Both are the same measurement (same read-out, same norm, same average), so their curves compare.
    """
    from course_lib.rnn import rnn_cell

    if paths not in ("all", "cell"):
        raise ValueError(f"paths must be 'all' or 'cell', got {paths!r}")
    if paths == "cell" and not isinstance(layer, nn.LSTM):
        raise ValueError("paths='cell' needs an nn.LSTM: an RNN has no cell path")
    gen = torch.Generator().manual_seed(seed)
    w = layer_weights(layer, torch.float64)
    x = x.to(torch.float64)
    B, S, _ = x.shape
    H = layer.hidden_size
    is_lstm = isinstance(layer, nn.LSTM)
    h, c = (s.requires_grad_(True) for s in _zeros_state(x, H))
    states = []
    with torch.enable_grad():
        for t in range(S):
            if is_lstm:
                h_in = h.detach() if paths == "cell" else h  # "cell": cut every path through the gates
                h, c = lstm_cell(x[:, t], (h_in, c), **w)
                c.retain_grad()
                states.append(c)
            else:
                h = rnn_cell(x[:, t], h, **w)
                h.retain_grad()
                states.append(h)
        readout = torch.randn(B, H, generator=gen, dtype=torch.float64)
        (h * readout).sum().backward()
    norms = torch.stack([s.grad.norm(dim=1).mean() for s in reversed(states)])  # lag 0 first
    return norms / norms[0]


def hand_built_adding_lstm(write: float = 30.0, keep: float = 15.0, scale: float = 0.01,
                           dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor | float]:
    """Weights of a one-unit LSTM (H = 1, W_hh = 0) that solves the adding problem by construction.

    For inputs x_t = (u_t, m_t) (value, marker), with a = ``write``, b = ``keep``, κ = ``scale``:
    ĩ = a (m - 1/2) opens the input gate at the markers only, f̃ = b keeps the cell, g̃ = κ u writes a
    small copy of the value (tanh is linear near 0) and õ = b shows the cell. Then c_T ≈ κ (u_1 + u_2)
    and the read-out ŷ = h_T / κ. Returns ``weight_ih`` (4, 2), ``weight_hh`` (4, 1), ``bias_ih`` (4,),
    ``bias_hh`` (None) for :func:`lstm`, and ``readout`` = 1/κ.
    """
    # rows i, f, g, o; columns (value u, marker m)
    weight_ih = torch.tensor([[0.0, write],   # ĩ = a·m − a/2
                              [0.0, 0.0],     # f̃ = b (from the bias)
                              [scale, 0.0],   # g̃ = κ·u
                              [0.0, 0.0]], dtype=dtype)  # õ = b (from the bias)
    bias_ih = torch.tensor([-write / 2, keep, 0.0, keep], dtype=dtype)
    return dict(weight_ih=weight_ih, weight_hh=torch.zeros(4, 1, dtype=dtype), bias_ih=bias_ih, bias_hh=None,
                readout=1.0 / scale)


@torch.inference_mode()
def lstm_bptt(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out) -> dict[str, torch.Tensor]:
    """Backpropagation through time for :func:`lstm`, by hand (no autograd).

    Gradients of L = Σ out ⊙ grad_out (out (B, S, H) the outputs h_1..h_S) with respect to ``x``,
    ``h0``, ``c0``, ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh``, returned as a dict.
    """
    B, S, _ = x.shape
    H = weight_hh.shape[1]
    # Forward pass, keeping what the backward pass needs.
    h, c = h0, c0
    cache = []
    for t in range(S):
        i, f, g, o = lstm_gates(x[:, t], h, weight_ih, weight_hh, bias_ih, bias_hh)
        c_new = f * c + i * g
        cache.append((h, c, i, f, g, o, c_new))
        h, c = o * torch.tanh(c_new), c_new
    grads = {k: torch.zeros_like(v) for k, v in dict(x=x, weight_ih=weight_ih, weight_hh=weight_hh).items()}
    db = torch.zeros(4 * H, dtype=x.dtype, device=x.device)
    dh_next = torch.zeros(B, H, dtype=x.dtype, device=x.device)  # ∂L/∂h_t from step t+1 (through the gates)
    dc_next = torch.zeros(B, H, dtype=x.dtype, device=x.device)  # f_{t+1} ⊙ δc_{t+1}: the carousel
    for t in reversed(range(S)):
        h_prev, c_prev, i, f, g, o, c_t = cache[t]
        tanh_c = torch.tanh(c_t)
        # $$\delta^h_t = \partial \ell / \partial h_t + W_{hh}^\top \varepsilon_{t+1}$$
        dh = grad_out[:, t] + dh_next
        # $$\delta^c_t = \delta^h_t \odot o_t \odot (1 - \tanh^2 c_t) + f_{t+1} \odot \delta^c_{t+1}$$
        dc = dh * o * (1 - tanh_c**2) + dc_next
        # $$\varepsilon^i = \delta^c_t\, g_t\, i_t(1-i_t), \quad \varepsilon^f = \delta^c_t\, c_{t-1}\, f_t(1-f_t)$$
        # $$\varepsilon^g = \delta^c_t\, i_t (1-g_t^2), \quad \varepsilon^o = \delta^h_t \tanh(c_t)\, o_t(1-o_t)$$
        eps = torch.cat([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g**2),
                         dh * tanh_c * o * (1 - o)], dim=-1)  # (B, 4H), rows i, f, g, o
        grads["x"][:, t] = eps @ weight_ih
        grads["weight_ih"] += eps.T @ x[:, t]
        grads["weight_hh"] += eps.T @ h_prev
        db += eps.sum(0)
        dh_next = eps @ weight_hh
        dc_next = dc * f
    grads.update(h0=dh_next, c0=dc_next, bias_ih=db, bias_hh=db.clone())
    return {k: grads[k] for k in ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")}
