"""Figures for module 06: the matrix memory, the decay matrix, the chunkwise form, the blocks, the cost.

Every function draws into ``ax``/``axes`` when given (else a new pyplot figure) and returns the axes.
The block diagrams are drawn *from* a module instance: sizes and parameter counts are read off it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch, Rectangle

from course_lib.xlstm.cost import fit_exponent
from course_lib.xlstm.mlstm import log_decay_matrix


def _canvas(width: float, height: float, ax=None):
    if ax is None:
        _, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.axis("off")
    return ax


def _node(ax, x: float, y: float, text: str, color: str = "#e8f0fb", w: float = 1.6, h: float = 0.6,
          fontsize: int = 10) -> None:
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="0.3", lw=1.1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _link(ax, start, end, color: str = "0.3", style: str = "-|>", **kw) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": style, "color": color, "lw": 1.3, "shrinkA": 0, "shrinkB": 0, **kw})


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------------
# 1. The matrix memory


def plot_matrix_memory(n_pairs: int = 3, d: int = 8, query: int = 1, seed: int = 0, axes=None):
    """Store ``n_pairs`` key–value pairs as C = Σ k vᵀ, read with q = k_query: h = Cᵀq ≈ v_query.

    Keys are orthonormal (so retrieval is exact); the three panels show the outer product of the
    queried pair, the memory C, and the read-out next to the stored values.
    """
    g = torch.Generator().manual_seed(seed)
    own = axes is None
    keys = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:n_pairs]  # (N, d) orthonormal
    values = torch.randn(n_pairs, d, generator=g, dtype=torch.float64)  # (N, d)
    C = keys.T @ values  # (d, d) = Σ_j k_j v_jᵀ
    h = C.T @ keys[query]  # (d,)
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    lim = float(C.abs().max())
    axes[0].imshow(torch.outer(keys[query], values[query]).numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[0].set_title(f"one write: $k_{query + 1} v_{query + 1}^\\top$")
    axes[1].imshow(C.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[1].set_title(f"memory $C = \\sum_j k_j v_j^\\top$ ({n_pairs} pairs)")
    for ax in axes[:2]:
        ax.set_xlabel("value dimension")
        ax.set_ylabel("key dimension")
        ax.set_xticks([])
        ax.set_yticks([])
    x = np.arange(d)
    width = 0.8 / (n_pairs + 1)
    for j in range(n_pairs):
        axes[2].bar(x + j * width, values[j].numpy(), width, alpha=0.45, label=f"$v_{j + 1}$")
    axes[2].bar(x + n_pairs * width, h.numpy(), width, color="k", label=f"$h = C^\\top k_{query + 1}$")
    axes[2].set_title(f"read-out with $q = k_{{{query + 1}}}$")
    axes[2].set_xlabel("value dimension")
    axes[2].legend(fontsize=8, ncols=2)
    if own:
        axes[0].figure.tight_layout()
    return axes


# ---------------------------------------------------------------------------------------------------
# 2. The decay matrix of the parallel form


def plot_decay_matrix(i: torch.Tensor, f: torch.Tensor, axes=None):
    """For one head's gates ĩ, f̃ (S,): the gates, log D (−inf above the diagonal) and D' = exp(log D − m)."""
    if i.dim() != 1 or f.shape != i.shape:
        raise ValueError("i and f must be 1-D of equal length (one head)")
    log_D = log_decay_matrix(i.double(), f.double())  # (S, S)
    m = log_D.amax(-1, keepdim=True)
    D = torch.exp(log_D - m)
    own = axes is None
    if own:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    S = len(i)
    axes[0].plot(range(S), torch.sigmoid(f).numpy(), "o-", ms=3, label=r"forget $\sigma(\tilde f_t)$")
    axes[0].plot(range(S), torch.exp(i - i.max()).numpy(), "s-", ms=3,
                 label=r"input $e^{\tilde\imath_t - \max\tilde\imath}$")
    axes[0].set_xlabel("time step $t$")
    axes[0].set_title("gates")
    axes[0].legend(fontsize=8)
    shown = log_D.masked_fill(torch.isinf(log_D), float("nan")).numpy()
    im = axes[1].imshow(shown, cmap="viridis")
    axes[1].set_title(r"$\log D_{ts}$ (blank: $-\infty$, the future)")
    axes[1].figure.colorbar(im, ax=axes[1], shrink=0.8)
    im = axes[2].imshow(D.numpy(), cmap="Blues", vmin=0, vmax=1)
    axes[2].set_title(r"$D'_{ts} = e^{\log D_{ts} - m_t}$ (row max 1)")
    axes[2].figure.colorbar(im, ax=axes[2], shrink=0.8)
    for ax in axes[1:]:
        ax.set_xlabel("key position $s$")
        ax.set_ylabel("query position $t$")
        ax.grid(False)
    if own:
        axes[0].figure.tight_layout()
    return axes


# ---------------------------------------------------------------------------------------------------
# 3. The chunkwise form


def draw_chunkwise(S: int = 12, chunk_size: int = 4, ax=None, fontsize: int = 10):
    """The S × S causal matrix cut into chunks: diagonal blocks by attention, the rest through the state C_k."""
    if S < 1 or chunk_size < 1:
        raise ValueError("S and chunk_size must be positive")
    n_chunks = math.ceil(S / chunk_size)
    size = 6.0
    cell = size / S
    ax = _canvas(size + 5.2, size + 1.6, ax)
    top = size + 0.3

    def cell_xy(t, s):  # lower-left corner of cell (query t, key s)
        return 0.3 + s * cell, top - (t + 1) * cell

    for t in range(S):
        for s in range(t + 1):
            same = t // chunk_size == s // chunk_size
            ax.add_patch(Rectangle(cell_xy(t, s), cell, cell, fc="#fde2b0" if same else "#cfe3f7", ec="white", lw=0.8))
    for c in range(1, n_chunks):
        edge = c * chunk_size * cell
        ax.plot([0.3 + edge, 0.3 + edge], [top, top - size], color="0.3", lw=1.2)
        ax.plot([0.3, 0.3 + size], [top - edge, top - edge], color="0.3", lw=1.2)
    ax.add_patch(Rectangle((0.3, top - size), size, size, fill=False, ec="0.3", lw=1.2))
    ax.text(0.3 + size / 2, top + 0.25, "key position s →", ha="center", fontsize=fontsize)
    ax.text(0.05, top - size / 2, "query t →", rotation=-90, va="center", ha="center", fontsize=fontsize)
    # The recurrence between chunks, on the right.
    x = size + 1.6
    for c in range(n_chunks):
        y = top - (c * chunk_size + min(chunk_size, S - c * chunk_size) / 2) * cell
        _node(ax, x, y, f"chunk {c + 1}", "#fde2b0", w=1.3, h=0.45, fontsize=fontsize - 1)
        _node(ax, x + 2.2, y, f"$C_{c}, n_{c}, m_{c}$", "#cfe3f7", w=1.5, h=0.45, fontsize=fontsize - 1)
        _link(ax, (x + 1.45, y), (x + 0.7, y), color="#3b78b0")
        if c + 1 < n_chunks:
            y_next = top - ((c + 1) * chunk_size + min(chunk_size, S - (c + 1) * chunk_size) / 2) * cell
            _link(ax, (x + 0.3, y - 0.25), (x + 2.2, y_next + 0.25), color="0.4")
    ax.text(x + 1.1, -0.35, "state in (blue), updated\nby each chunk (grey)", ha="center", fontsize=fontsize - 1,
            color="0.3")
    ax.add_patch(Rectangle((0.3, -0.35), 0.3, 0.3, fc="#fde2b0"))
    ax.text(0.7, -0.2, "inside a chunk: masked attention (L × L)", va="center", fontsize=fontsize - 1)
    ax.add_patch(Rectangle((0.3, -0.95), 0.3, 0.3, fc="#cfe3f7"))
    ax.text(0.7, -0.8, "earlier chunks: only through the state", va="center", fontsize=fontsize - 1)
    ax.set_ylim(-1.1, top + 0.5)
    ax.set_title(f"chunkwise mLSTM, S = {S}, chunk size L = {chunk_size}", fontsize=fontsize + 1)
    return ax


# ---------------------------------------------------------------------------------------------------
# 4. The blocks, drawn from a module


def draw_mlstm_block(block, ax=None, fontsize: int = 10):
    """The data flow of an :class:`~course_lib.xlstm.blocks.MLSTMBlock`, with its sizes and parameter counts."""

    def node(*args, **kw):
        _node(*args, **{"fontsize": fontsize, **kw})

    E, inner, NH = block.up.in_features, block.inner, block.num_heads
    K = block.conv.kernel_size
    ax = _canvas(13.0, 6.8, ax)
    x_res = 0.6
    _link(ax, (x_res, 0.2), (x_res, 6.5), color="0.5", lw=3)
    ax.text(x_res - 0.15, 0.25, f"x ({E})", ha="right", fontsize=fontsize)
    node(ax, 2.4, 0.7, f"LayerNorm, up-proj\n{E} → 2×{inner} [{_params(block.norm) + _params(block.up)}]",
          "#f3f3f3", w=3.0, h=0.8)
    _link(ax, (x_res, 0.7), (0.9, 0.7), style="-")
    node(ax, 2.0, 2.2, f"causal conv k={K}\nSiLU [{_params(block.conv)}]", "#fff4d6", w=2.8, h=0.8)
    _link(ax, (2.0, 1.1), (2.0, 1.8))
    node(ax, 2.0, 3.7, f"q, k from x_c\nv from x_m [{_params(block.q) + _params(block.k) + _params(block.v)}]",
          "#e1f0fd", w=2.8, h=0.8)
    _link(ax, (2.0, 2.6), (2.0, 3.3))
    node(ax, 5.4, 3.7, f"gates ĩ, f̃\n[{_params(block.igate) + _params(block.fgate)}]",
          "#fde2e1", w=2.8, h=0.8)
    _link(ax, (3.4, 3.7), (4.0, 3.7))
    node(ax, 5.4, 5.1, f"mLSTM: {NH} heads\n× {inner // NH}, {block.form}", "#d9f2d9", w=2.8, h=0.8)
    _link(ax, (2.0, 4.1), (4.0, 4.9))
    _link(ax, (5.4, 4.1), (5.4, 4.7))
    node(ax, 8.5, 5.1, f"GroupNorm\n+ s ⊙ x_c [{_params(block.group_norm) + block.skip.numel()}]", "#f3f3f3",
          w=2.6, h=0.8)
    _link(ax, (6.8, 5.1), (7.2, 5.1))
    node(ax, 8.5, 2.2, "output gate\nz → SiLU(z)", "#fde2e1", w=2.2, h=0.8)
    _link(ax, (3.9, 0.9), (7.4, 2.0))
    ax.text(5.6, 1.2, "z", fontsize=fontsize, color="0.3")
    ax.add_patch(plt.Circle((10.4, 3.6), 0.25, fc="white", ec="0.3"))
    ax.text(10.4, 3.6, "×", ha="center", va="center", fontsize=fontsize + 2)
    _link(ax, (9.8, 4.7), (10.3, 3.85))
    _link(ax, (9.6, 2.2), (10.3, 3.35))
    node(ax, 11.6, 5.1, f"down-proj\n{inner} → {E} [{_params(block.down)}]", "#f3f3f3", w=2.2, h=0.8)
    _link(ax, (10.6, 3.8), (11.4, 4.7))
    _link(ax, (11.6, 5.5), (11.6, 6.3), style="-")
    _link(ax, (11.6, 6.3), (x_res + 0.2, 6.3))
    ax.text(x_res - 0.15, 6.45, "x + …", ha="right", fontsize=fontsize)
    ax.set_xlim(-1.4, 13.0)  # room for the residual stream's labels on the left
    ax.set_title(f"mLSTM block (pre up-projection), d_model = {E}, inner = {inner}: "
                 f"{_params(block)} parameters", fontsize=fontsize + 1)
    return ax


def draw_xlstm_stack(stack, ax=None, fontsize: int = 10):
    """The blocks of an :class:`~course_lib.xlstm.blocks.XLSTMStack` bottom to top, with parameter counts."""

    def node(*args, **kw):
        _node(*args, **{"fontsize": fontsize, **kw})

    blocks = list(stack.blocks)
    height = 1.2 * len(blocks) + 1.0
    ax = _canvas(7.0, height, ax)
    _link(ax, (1.0, 0.2), (1.0, height - 0.2), color="0.5", lw=3)
    for n, block in enumerate(blocks):
        y = 0.9 + 1.2 * n
        kind = type(block).__name__
        colour = "#d9f2d9" if kind.startswith("M") else "#e1f0fd"
        what = "pre up-projection, matrix memory" if kind.startswith("M") else "post up-projection, memory mixing"
        node(ax, 4.0, y, f"{kind}  [{_params(block)}]\n{what}", colour, w=4.6, h=0.85)
        _link(ax, (1.0, y - 0.2), (1.7, y - 0.2), color="0.5")
        _link(ax, (1.7, y + 0.2), (1.05, y + 0.2), color="0.2")
        ax.text(1.35, y + 0.27, "+", ha="center", fontsize=fontsize)
    ax.text(1.0, height - 0.1, "residual stream", ha="center", fontsize=fontsize - 1, color="0.3")
    ratio = f"{stack.pattern.count('m')}:{stack.pattern.count('s')}"
    ax.set_title(f"xLSTM[{ratio}] stack '{stack.pattern}': {_params(stack)} parameters", fontsize=fontsize + 1)
    return ax


# ---------------------------------------------------------------------------------------------------
# 5. Cost against sequence length


def plot_mlstm_cost(rows: Sequence[dict], axes=None, keys: Sequence[str] = ("seconds", "peak_bytes"),
                    fontsize: int = 9):
    """Log–log time and peak memory of each form (rows from ``measure_mlstm_forms``), fitted exponents in the legend.

    ``keys`` picks the panels: ``("seconds", "peak_bytes")`` by default, one of them for a single panel.
    """
    own = axes is None
    if own:
        _, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8))
    forms = list(dict.fromkeys(r["form"] for r in rows))
    for n, form in enumerate(forms):
        mine = [r for r in rows if r["form"] == form]
        S = [r["S"] for r in mine]
        for ax, key in zip(axes, keys, strict=True):
            ys = [r[key] for r in mine]
            slope = fit_exponent(S, ys) if len(S) > 1 else float("nan")
            ax.loglog(S, np.asarray(ys) * _COST_SCALE[key], "o-", color=f"C{n}",
                      label=f"{form}: $\\propto S^{{{slope:.2f}}}$")
    for ax, key in zip(axes, keys, strict=True):
        ax.set_ylabel(_COST_LABEL[key])
    lengths = sorted({r["S"] for r in rows})
    for ax in axes:
        ax.set_xlabel("sequence length S")
        ax.set_xticks(lengths, [str(s) for s in lengths])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=fontsize)
    if own:
        axes[0].figure.tight_layout()
    return axes


_COST_SCALE = {"seconds": 1e3, "peak_bytes": 2.0**-20}
_COST_LABEL = {"seconds": "time (ms, best of runs)", "peak_bytes": "peak tensor memory (MiB)"}
