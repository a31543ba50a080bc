"""The sLSTM: exponential gating, a normaliser, the stabiliser, and head-wise memory mixing.

One step, with gate pre-activations ĩ, f̃, z̃, õ (xLSTM paper §2.2 and App. A.2)::

    [ĩ, f̃, z̃, õ] = W x_t + R h_{t-1} + b           R block-diagonal over heads
    c_t = f_t c_{t-1} + i_t z_t,   n_t = f_t n_{t-1} + i_t,   h_t = o_t ⊙ c_t / n_t
    i_t = exp(ĩ),  f_t = σ(f̃) or exp(f̃),  z_t = tanh(z̃),  o_t = σ(õ)

exp(ĩ) overflows float32 above ĩ ≈ 88, so the recurrence is carried in *stabilised units*: with
m_t = max(log f_t + m_{t-1}, ĩ_t) (m_0 = −inf), the states c_t e^{−m_t} and n_t e^{−m_t} are kept
instead of c_t and n_t; their ratio, and so h_t, is unchanged.

Conventions (the course's contract, those of the ``xlstm`` package's vanilla sLSTM cell):

- ``wx`` (B, S, 4H) holds the input pre-activations W x_t, **gate-major**: [i | f | z | o], each H
  wide, and inside a gate head 0's DH units first.
- ``R`` (4, NH, DH, DH) holds the recurrent weights ``[gate, head, out, in]``: head k's pre-activation
  of gate g is ``R[g, k] @ h_{t-1}[head k]``. No weight connects two heads.
- ``b`` (4H,), gate-major like ``wx``.
- ``state = (h, c, n, m)``, each (B, H); the default is zeros with m = −inf. Returned states are in
  stabilised units (``m`` the stabiliser).

Also here: the unstabilised recurrence (the float64 reference the tests compare with), the LSTM
written with the same head-wise recurrence (one head and R = ``weight_hh`` gives ``torch.nn.LSTM``),
and the sLSTM as layers: :class:`SLSTMLayer`, :class:`SLSTMBlock` (post up-projection, as in xLSTM)
and :class:`SLSTMTokenModel`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.lm import register_char_lm

GATES = ("i", "f", "z", "o")
FORGET_GATES = ("sigmoid", "exp")

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# ---------------------------------------------------------------------------------------------------
# Checks


def _check_forget_gate(forget_gate: str) -> None:
    if forget_gate not in FORGET_GATES:
        raise ValueError(f"forget_gate must be 'sigmoid' or 'exp', got {forget_gate!r}")


def _check_weights(R: torch.Tensor, b: torch.Tensor) -> int:
    """Validate R (4, NH, DH, DH) and b (4H,); return H = NH * DH."""
    if R.dim() != 4 or R.shape[0] != 4 or R.shape[2] != R.shape[3]:
        raise ValueError(f"R must have shape (4, NH, DH, DH) [gate, head, out, in], got {tuple(R.shape)}")
    H = R.shape[1] * R.shape[2]
    if tuple(b.shape) != (4 * H,):
        raise ValueError(f"b must have shape (4H,) = ({4 * H},) for R of shape {tuple(R.shape)}, got {tuple(b.shape)}")
    return H


def _check_state(state, B: int, H: int, n: int = 4) -> None:
    if not isinstance(state, (tuple, list)) or len(state) != n:
        raise ValueError(f"state must be a tuple of {n} tensors (h, c, n, m)[:{n}], each (B, H)")
    for name, s in zip(("h", "c", "n", "m"), state, strict=False):
        if tuple(s.shape) != (B, H):
            raise ValueError(f"state {name} must have shape (B, H) = ({B}, {H}), got {tuple(s.shape)}")


# ---------------------------------------------------------------------------------------------------
# The pieces of one step


def headwise_recurrence(h: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """The recurrent pre-activations R h_{t-1}, head by head: h (B, H), R (4, NH, DH, DH) -> (B, 4H).

    The output is gate-major like ``wx``: entry ``g*H + k*DH + o`` is Σ_j R[g, k, o, j] h[k*DH + j].
    """
    B, H = h.shape
    _, NH, DH, _ = R.shape
    if H != NH * DH:
        raise ValueError(f"h has {H} units but R has NH*DH = {NH}*{DH} = {NH * DH}")
    # $$(R h)_{g,k} = R_{g,k}\, h_{k}$$   (block-diagonal: head k reads only head k)
    Rh = torch.einsum("gkoj,bkj->bgko", R, h.reshape(B, NH, DH))  # (B, 4, NH, DH)
    return Rh.reshape(B, 4 * H)


def log_forget_gate(f_pre: torch.Tensor, forget_gate: str = "sigmoid") -> torch.Tensor:
    """log f_t: logσ(f̃) for the sigmoid forget gate, f̃ itself for the exponential one."""
    _check_forget_gate(forget_gate)
    return F.logsigmoid(f_pre) if forget_gate == "sigmoid" else f_pre


def stabilise(i_pre: torch.Tensor, log_f: torch.Tensor, m_prev: torch.Tensor):
    """The stabiliser update: -> (i', f', m), each the shape of ``i_pre``.

    m = max(log f + m_prev, ĩ),  i' = exp(ĩ − m),  f' = exp(log f + m_prev − m). Both exponents are
    ≤ 0, so neither exponential can overflow; m_prev = −inf (no past) gives m = ĩ and f' = 0.
    """
    # $$m_t = \max(\log f_t + m_{t-1},\ \tilde\imath_t)$$
    m = torch.maximum(log_f + m_prev, i_pre)
    # $$i'_t = \exp(\tilde\imath_t - m_t), \qquad f'_t = \exp(\log f_t + m_{t-1} - m_t)$$
    return torch.exp(i_pre - m), torch.exp(log_f + m_prev - m), m


def initial_state(B: int, H: int, dtype: torch.dtype = torch.float32, device=None) -> State:
    """The default state: h = c = n = 0 and m = −inf, each (B, H)."""
    zeros = torch.zeros(B, H, dtype=dtype, device=device)
    return zeros, zeros.clone(), zeros.clone(), torch.full((B, H), -math.inf, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------------
# The sLSTM: one step and the sequence


def slstm_step(wx_t, R, b, state, forget_gate="sigmoid"):
    """One sLSTM step: wx_t (B, 4H), state (h, c, n, m) each (B, H) -> (h, (h, c, n, m)).

    ``wx_t`` holds the input pre-activations of this step (gate-major [i, f, z, o]); ``R`` (4, NH, DH,
    DH) and ``b`` (4H,) as in the module docstring; states in stabilised units.
    """
    _check_forget_gate(forget_gate)
    H = _check_weights(R, b)
    if wx_t.dim() != 2 or wx_t.shape[1] != 4 * H:
        raise ValueError(f"wx_t must have shape (B, 4H) = (B, {4 * H}), got {tuple(wx_t.shape)}")
    _check_state(state, wx_t.shape[0], H)
    h, c, n, m = state
    # $$[\tilde\imath, \tilde f, \tilde z, \tilde o] = W x_t + R h_{t-1} + b$$
    pre = wx_t + headwise_recurrence(h, R) + b  # (B, 4H)
    i_pre, f_pre, z_pre, o_pre = pre.chunk(4, dim=-1)  # each (B, H)
    # The stabiliser: exp(ĩ) and f in units of e^{m_t}, so nothing overflows.
    i_s, f_s, m = stabilise(i_pre, log_forget_gate(f_pre, forget_gate), m)
    z, o = torch.tanh(z_pre), torch.sigmoid(o_pre)
    # $$c_t = f'_t c_{t-1} + i'_t z_t, \qquad n_t = f'_t n_{t-1} + i'_t$$
    c = f_s * c + i_s * z
    n = f_s * n + i_s
    # $$h_t = o_t \odot c_t / n_t$$
    h = o * c / n
    return h, (h, c, n, m)


def slstm(wx, R, b, state=None, forget_gate="sigmoid", return_last_states=False):
    """The sLSTM over a sequence: wx (B, S, 4H) -> h (B, S, H), or (h, (h, c, n, m)).

    ``state`` (h, c, n, m), each (B, H), or None for zeros with m = −inf.
    """
    _check_forget_gate(forget_gate)
    H = _check_weights(R, b)
    if wx.dim() != 3 or wx.shape[2] != 4 * H:
        raise ValueError(f"wx must have shape (B, S, 4H) = (B, S, {4 * H}), got {tuple(wx.shape)}")
    B, S, _ = wx.shape
    state = initial_state(B, H, wx.dtype, wx.device) if state is None else tuple(state)
    _check_state(state, B, H)
    hs = []
    for t in range(S):
        h, state = slstm_step(wx[:, t], R, b, state, forget_gate)
        hs.append(h)
    out = torch.stack(hs, dim=1) if hs else wx.new_zeros(B, 0, H)  # (B, S, H)
    return (out, state) if return_last_states else out


def slstm_unstabilised(wx, R, b, state=None, forget_gate="sigmoid", return_last_states=False):
    """The sLSTM exactly as written in the paper, without the stabiliser (a reference for tests).

    ``state`` is (h, c̄, n̄) with c̄, n̄ in true units (default zeros). Overflows in float32 once
    exp(ĩ) does; in float64 it agrees with :func:`slstm`: c̄ = c·e^m and n̄ = n·e^m.
    """
    _check_forget_gate(forget_gate)
    H = _check_weights(R, b)
    B, S, _ = wx.shape
    h, c, n = (wx.new_zeros(B, H) for _ in range(3)) if state is None else state
    hs = []
    for t in range(S):
        pre = wx[:, t] + headwise_recurrence(h, R) + b
        i_pre, f_pre, z_pre, o_pre = pre.chunk(4, dim=-1)
        # $$i_t = e^{\tilde\imath_t}, \quad f_t = \sigma(\tilde f_t)\ \text{or}\ e^{\tilde f_t}$$
        i = torch.exp(i_pre)
        f = torch.sigmoid(f_pre) if forget_gate == "sigmoid" else torch.exp(f_pre)
        c = f * c + i * torch.tanh(z_pre)
        n = f * n + i
        h = torch.sigmoid(o_pre) * c / n
        hs.append(h)
    out = torch.stack(hs, dim=1)
    return (out, (h, c, n)) if return_last_states else out


# ---------------------------------------------------------------------------------------------------
# The LSTM with the same head-wise recurrence


def lstm_step_headwise(wx_t, R, b, state):
    """One LSTM step written like :func:`slstm_step`: state (h, c) -> (h, (h, c)).

    σ input and forget gates, no normaliser, h = o ⊙ tanh(c). With one head, ``wx_t = x W_ihᵀ``,
    ``R = weight_hh.reshape(4, 1, H, H)`` and ``b = b_ih + b_hh`` this is ``torch.nn.LSTMCell``
    (torch's gate order i, f, g, o is the sLSTM's i, f, z, o).
    """
    _check_weights(R, b)
    h, c = state
    pre = wx_t + headwise_recurrence(h, R) + b  # (B, 4H)
    i_pre, f_pre, z_pre, o_pre = pre.chunk(4, dim=-1)
    # $$c_t = \sigma(\tilde f) c_{t-1} + \sigma(\tilde\imath) \tanh(\tilde z), \quad h_t = \sigma(\tilde o) \tanh(c_t)$$
    c = torch.sigmoid(f_pre) * c + torch.sigmoid(i_pre) * torch.tanh(z_pre)
    h = torch.sigmoid(o_pre) * torch.tanh(c)
    return h, (h, c)


def lstm_headwise(wx, R, b, state=None, return_last_states=False):
    """:func:`lstm_step_headwise` over a sequence: wx (B, S, 4H) -> h (B, S, H), or (h, (h, c))."""
    H = _check_weights(R, b)
    B, S, _ = wx.shape
    state = (wx.new_zeros(B, H), wx.new_zeros(B, H)) if state is None else tuple(state)
    hs = []
    for t in range(S):
        h, state = lstm_step_headwise(wx[:, t], R, b, state)
        hs.append(h)
    out = torch.stack(hs, dim=1)
    return (out, state) if return_last_states else out


# ---------------------------------------------------------------------------------------------------
# Layers


class SLSTMLayer(nn.Module):
    """An sLSTM (or, with ``cell="lstm"``, an LSTM) layer with ``num_heads`` heads.

    Parameters: ``W`` (a ``Linear(input_size, 4H)`` without bias: wx = x Wᵀ), ``R`` (4, NH, DH, DH),
    ``b`` (4H,). The forget-gate bias starts between 3 and 6 (long memory, as in xLSTM), the other
    biases at 0, R uniform in ±1/√DH. ``forward(x (B, S, I)) -> h (B, S, H)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 1, forget_gate: str = "sigmoid",
                 cell: str = "slstm") -> None:
        super().__init__()
        _check_forget_gate(forget_gate)
        if cell not in ("slstm", "lstm"):
            raise ValueError(f"cell must be 'slstm' or 'lstm', got {cell!r}")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        self.input_size, self.hidden_size, self.num_heads = input_size, hidden_size, num_heads
        self.forget_gate, self.cell = forget_gate, cell
        H, DH = hidden_size, hidden_size // num_heads
        self.W = nn.Linear(input_size, 4 * H, bias=False)
        self.R = nn.Parameter(torch.empty(4, num_heads, DH, DH).uniform_(-DH**-0.5, DH**-0.5))
        b = torch.zeros(4 * H)
        if cell == "slstm":
            b[H:2 * H] = torch.linspace(3.0, 6.0, H)
        self.b = nn.Parameter(b)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM) -> SLSTMLayer:
        """A one-head ``cell="lstm"`` layer with the weights of a one-layer ``nn.LSTM`` (same outputs)."""
        if lstm.num_layers != 1 or lstm.bidirectional or lstm.proj_size:
            raise ValueError("from_lstm takes a one-layer, unidirectional nn.LSTM without projection")
        H = lstm.hidden_size
        layer = cls(lstm.input_size, H, num_heads=1, cell="lstm").to(lstm.weight_ih_l0.dtype)
        with torch.no_grad():
            layer.W.weight.copy_(lstm.weight_ih_l0)
            # weight_hh (4H, H), rows i, f, g, o -> R [gate, head, out, in] with one head
            layer.R.copy_(lstm.weight_hh_l0.reshape(4, 1, H, H))
            bias = torch.zeros_like(layer.b)
            for name in ("bias_ih_l0", "bias_hh_l0"):
                if getattr(lstm, name, None) is not None:
                    bias += getattr(lstm, name)
            layer.b.copy_(bias)
        return layer

    def forward(self, x: torch.Tensor, state=None, return_last_states: bool = False):
        wx = self.W(x)  # (B, S, 4H)
        if self.cell == "lstm":
            return lstm_headwise(wx, self.R, self.b, state, return_last_states)
        return slstm(wx, self.R, self.b, state, self.forget_gate, return_last_states)


class GatedMLP(nn.Module):
    """x -> down(gelu(gate(x)) ⊙ up(x)), inner width ``round(proj_factor * d_model)``."""

    def __init__(self, d_model: int, proj_factor: float = 4 / 3) -> None:
        super().__init__()
        inner = max(1, round(proj_factor * d_model))
        self.up = nn.Linear(d_model, 2 * inner)
        self.down = nn.Linear(inner, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.up(x).chunk(2, dim=-1)
        return self.down(F.gelu(gate) * value)


class SLSTMBlock(nn.Module):
    """The xLSTM sLSTM block (post up-projection), (B, S, d_model) -> (B, S, d_model).

        x = x + GroupNorm_heads(sLSTM(LayerNorm(x)))      memory: the sLSTM layer with NH heads
        x = x + GatedMLP(LayerNorm(x))                    the up-projection comes *after* the memory

    ``SLSTMBlock(d_model, num_heads=4, proj_factor=4/3, forget_gate="sigmoid")``; the group norm
    normalises each head's DH units separately (heads do not mix before the MLP).
    """

    def __init__(self, d_model: int, num_heads: int = 4, proj_factor: float = 4 / 3,
                 forget_gate: str = "sigmoid") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.slstm = SLSTMLayer(d_model, d_model, num_heads, forget_gate)
        self.group_norm = nn.GroupNorm(num_heads, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = GatedMLP(d_model, proj_factor)

    def forward(self, x: torch.Tensor, state=None, return_last_states: bool = False):
        """x (B, S, D) -> (B, S, D); with ``return_last_states`` also the sLSTM's (h, c, n, m), which
        ``state`` accepts back (to continue a sequence, e.g. when sampling one character at a time)."""
        B, S, D = x.shape
        h, last = self.slstm(self.norm1(x), state, return_last_states=True)  # (B, S, D)
        h = self.group_norm(h.reshape(B * S, D)).reshape(B, S, D)
        x = x + h
        x = x + self.mlp(self.norm2(x))
        return (x, last) if return_last_states else x


class SLSTMTokenModel(nn.Module):
    """Token embedding, ``num_blocks`` :class:`SLSTMBlock`, a final LayerNorm and a linear head.

    ``forward(tokens (B, S)) -> logits (B, S, n_out)``, one prediction per position (as
    ``course_lib.attention.TinyTransformer``).
    """

    def __init__(self, vocab_size: int, n_out: int, d_model: int = 32, num_heads: int = 4, num_blocks: int = 1,
                 forget_gate: str = "sigmoid") -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(SLSTMBlock(d_model, num_heads, forget_gate=forget_gate)
                                    for _ in range(num_blocks))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (B, S, D)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (B, S, n_out)


class RecurrentClassifier(nn.Module):
    """One recurrent layer and a linear read-out of the last output: x (B, S, I) -> logits (B, n_out).

    ``cell="lstm"`` uses ``torch.nn.LSTM`` (the structure of :class:`SLSTMLayer` with ``cell="lstm"``,
    tested equal, and much faster); ``cell="slstm"`` an :class:`SLSTMLayer` with ``num_heads`` heads.
    """

    def __init__(self, cell: str, input_size: int, hidden: int, n_out: int, num_heads: int = 1,
                 forget_gate: str = "sigmoid") -> None:
        super().__init__()
        if cell not in ("lstm", "slstm"):
            raise ValueError(f"cell must be 'lstm' or 'slstm', got {cell!r}")
        self.cell = cell
        self.rnn = (nn.LSTM(input_size, hidden, batch_first=True) if cell == "lstm"
                    else SLSTMLayer(input_size, hidden, num_heads, forget_gate))
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rnn(x)
        out = out[0] if isinstance(out, tuple) else out  # nn.LSTM returns (out, (h, c))
        return self.head(out[:, -1])


@register_char_lm
class CharSLSTM(nn.Module):
    """A character language model: embedding, ``num_blocks`` :class:`SLSTMBlock`, LayerNorm, read-out.

    The sLSTM counterpart of ``course_lib.lm.CharLSTM`` for the shared training path
    (``course_lib.lm.train_lm``); ``hparams`` holds the constructor's arguments for checkpoints,
    ``forward_with_state`` lets ``course_lib.lm.sample`` step one character at a time.
    """

    def __init__(self, vocab_size: int, d_model: int = 64, num_heads: int = 4, num_blocks: int = 1) -> None:
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, d_model=d_model, num_heads=num_heads, num_blocks=num_blocks)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(SLSTMBlock(d_model, num_heads) for _ in range(num_blocks))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward_with_state(self, x: torch.Tensor, state=None):
        """Logits (B, S, V) for ids (B, S), from ``state`` (None: every block's default), and the new state."""
        h = self.embed(x)  # (B, S, D)
        states = []
        for k, block in enumerate(self.blocks):
            h, last = block(h, None if state is None else state[k], return_last_states=True)
            states.append(last)
        return self.head(self.norm(h)), states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_state(x)[0]
