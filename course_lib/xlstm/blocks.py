"""xLSTM blocks: the mLSTM block (pre up-projection) and stacks mixing mLSTM and sLSTM blocks.

The mLSTM block, (B, S, d_model) -> (B, S, d_model), as in the xLSTM paper (Fig. 10) and the
``xlstm`` package's mLSTM layer, with inner width ``inner = proj_factor · d_model``::

    x_m, z = split(W_up LayerNorm(x))                 the up-projection comes *before* the memory
    x_c    = SiLU(CausalConv(x_m))                    a short causal convolution (kernel 4)
    q, k   = W_q x_c, W_k x_c;   v = W_v x_m          heads: NH slices of inner / NH units
    ĩ, f̃   = W_i [q, k, v] + b_i,  W_f [q, k, v] + b_f   one input and one forget gate per head
    h      = mLSTM(q, k, v, ĩ, f̃)                      any form of course_lib.xlstm.mlstm
    h      = GroupNorm_heads(h) + s ⊙ x_c             learnable skip s from the convolution
    x      = x + W_down (h ⊙ SiLU(z))                 output gate, down-projection, residual

Deviation from ``xlstm``: q, k, v are full linear maps here (the package uses small block-diagonal
head-wise projections); the structure is the same, the parameter count a little larger.

An xLSTM[a:b] model stacks a mLSTM blocks for every b sLSTM blocks (the sLSTM block, post
up-projection, is :class:`course_lib.xlstm.slstm.SLSTMBlock`); here a stack is written as a string
of block kinds, e.g. ``"ms"`` for xLSTM[1:1] with two blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.xlstm.mlstm import MLSTM_FORMS
from course_lib.xlstm.slstm import SLSTMBlock


class CausalConv1d(nn.Module):
    """Depthwise 1-D convolution over time that sees only the present and the past: (B, S, C) -> (B, S, C)."""

    def __init__(self, channels: int, kernel_size: int = 4) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pad kernel_size − 1 steps on the left only: output t mixes inputs t − kernel_size + 1 … t.
        x = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))  # (B, C, S + kernel_size − 1)
        return self.conv(x).transpose(1, 2)  # (B, S, C)


class MLSTMBlock(nn.Module):
    """The xLSTM mLSTM block (pre up-projection); see the module docstring for the equations.

    ``MLSTMBlock(d_model, num_heads=4, proj_factor=2.0, conv_kernel=4, form="chunkwise", chunk_size=64)``;
    ``form`` is ``"recurrent"``, ``"parallel"`` or ``"chunkwise"`` (all give the same output).
    ``forward(x (B, S, d_model)) -> (B, S, d_model)``.
    """

    def __init__(self, d_model: int, num_heads: int = 4, proj_factor: float = 2.0, conv_kernel: int = 4,
                 form: str = "chunkwise", chunk_size: int = 64) -> None:
        super().__init__()
        inner = round(proj_factor * d_model)
        if inner % num_heads:
            raise ValueError(f"inner width proj_factor * d_model = {inner} must be divisible by num_heads={num_heads}")
        if form not in MLSTM_FORMS:
            raise ValueError(f"form must be one of {sorted(MLSTM_FORMS)}, got {form!r}")
        self.num_heads, self.inner, self.form, self.chunk_size = num_heads, inner, form, chunk_size
        self.norm = nn.LayerNorm(d_model)
        self.up = nn.Linear(d_model, 2 * inner)
        self.conv = CausalConv1d(inner, conv_kernel)
        self.q = nn.Linear(inner, inner)
        self.k = nn.Linear(inner, inner)
        self.v = nn.Linear(inner, inner)
        self.igate = nn.Linear(3 * inner, num_heads)
        self.fgate = nn.Linear(3 * inner, num_heads)
        self.group_norm = nn.GroupNorm(num_heads, inner)
        self.skip = nn.Parameter(torch.ones(inner))
        self.down = nn.Linear(inner, d_model)
        # Gates start input-independent: forget-gate biases 3 … 6 (σ ≈ 0.95 … 0.998, long memory from the
        # start), input-gate biases near 0 (as the xlstm package initialises them).
        with torch.no_grad():
            self.igate.weight.zero_()
            self.fgate.weight.zero_()
            self.igate.bias.normal_(0.0, 0.1)
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, num_heads))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        return x.reshape(B, S, self.num_heads, -1).transpose(1, 2)  # (B, NH, S, DH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        # 1. Up-projection into the memory branch x_m and the output-gate branch z.
        x_m, z = self.up(self.norm(x)).chunk(2, dim=-1)  # (B, S, inner) each
        # 2. Causal convolution: q and k see a few neighbouring tokens; v comes straight from x_m.
        x_c = F.silu(self.conv(x_m))  # (B, S, inner)
        q, k, v = self.q(x_c), self.k(x_c), self.v(x_m)  # (B, S, inner)
        # 3. One input and one forget gate pre-activation per head.
        qkv = torch.cat([q, k, v], dim=-1)  # (B, S, 3 inner)
        i, f = self.igate(qkv).transpose(1, 2), self.fgate(qkv).transpose(1, 2)  # (B, NH, S)
        # 4. The matrix memory, head by head.
        cell = MLSTM_FORMS[self.form]
        kw = {"chunk_size": self.chunk_size} if self.form == "chunkwise" else {}
        h = cell(self._heads(q), self._heads(k), self._heads(v), i, f, **kw)  # (B, NH, S, DH)
        h = h.transpose(1, 2).reshape(B, S, self.inner)  # (B, S, inner)
        # 5. Per-head normalisation, learnable skip, output gate, down-projection, residual.
        h = self.group_norm(h.reshape(B * S, self.inner)).reshape(B, S, self.inner) + self.skip * x_c
        return x + self.down(h * F.silu(z))


BLOCK_KINDS = {"m": "mLSTM", "s": "sLSTM"}


def xlstm_pattern(a: int, b: int, num_blocks: int) -> str:
    """The block kinds of an xLSTM[a:b] stack of ``num_blocks`` blocks: a mLSTM blocks per b sLSTM blocks.

    ``xlstm_pattern(1, 1, 2) == "ms"``, ``xlstm_pattern(7, 1, 8) == "mmmmmmms"``, ``xlstm_pattern(1, 0, 3) == "mmm"``.
    """
    if a < 0 or b < 0 or a + b == 0 or num_blocks < 1 or num_blocks % (a + b):
        raise ValueError(f"need a, b >= 0 with a + b > 0 dividing num_blocks; got a={a}, b={b}, "
                         f"num_blocks={num_blocks}")
    return ("m" * a + "s" * b) * (num_blocks // (a + b))


class XLSTMStack(nn.Module):
    """Residual blocks in the order given by ``blocks`` ("m" = :class:`MLSTMBlock`, "s" = ``SLSTMBlock``).

    ``XLSTMStack(d_model, blocks="ms", num_heads=4, form="chunkwise", chunk_size=64)``;
    ``forward(x (B, S, d_model)) -> (B, S, d_model)``.
    """

    def __init__(self, d_model: int, blocks: str = "ms", num_heads: int = 4, form: str = "chunkwise",
                 chunk_size: int = 64) -> None:
        super().__init__()
        if not blocks or set(blocks) - set(BLOCK_KINDS):
            raise ValueError(f"blocks must be a non-empty string of 'm' (mLSTM) and 's' (sLSTM), got {blocks!r}")
        self.pattern = blocks
        self.blocks = nn.ModuleList(
            MLSTMBlock(d_model, num_heads, form=form, chunk_size=chunk_size) if kind == "m"
            else SLSTMBlock(d_model, num_heads) for kind in blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class XLSTMTokenModel(nn.Module):
    """Token embedding, an :class:`XLSTMStack`, a final LayerNorm and a linear head.

    ``XLSTMTokenModel(vocab_size, n_out, d_model=32, blocks="m", num_heads=4, form="chunkwise")``;
    ``forward(tokens (B, S)) -> logits (B, S, n_out)``, one prediction per position (as
    ``SLSTMTokenModel`` and ``course_lib.attention.TinyTransformer``). ``blocks="m"`` is an mLSTM
    model, ``"ms"`` is xLSTM[1:1].
    """

    def __init__(self, vocab_size: int, n_out: int, d_model: int = 32, blocks: str = "m", num_heads: int = 4,
                 form: str = "chunkwise", chunk_size: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.stack = XLSTMStack(d_model, blocks, num_heads, form, chunk_size)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.stack(self.embed(tokens))))  # (B, S, n_out)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
