"""Figures for module 03: softmax saturation, masks, attention weights (static and interactive), cost."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

SCALE_SWEEP_PANELS = (
    ("score_std", "std of the scores (inverse temperature)", "log"),
    ("max_weight", "mean max weight", "linear"),
    ("entropy", "mean entropy (nats)", "linear"),
    ("grad", "‖∂L/∂s‖ (mean)", "log"),
    ("grad_q", "‖∂L/∂q‖ (mean)", "log"),
    ("grad_typical", "median over keys of |∂L/∂s_j|", "log"),
)


def plot_scale_sweep(dims: Sequence[int], curves: dict[str, dict[str, Sequence[float]]], axes=None,
                     panels: Sequence[tuple[str, str, str]] = SCALE_SWEEP_PANELS):
    """One panel per measured quantity against the head dimension d (see :func:`scale_sweep`).

    ``curves`` maps a label (e.g. "q·k" and "q·k/√d") to a dict with one list per key of ``panels``
    (key, y label, y scale); panels whose key is missing from the curves are skipped.
    """
    panels = [p for p in panels if all(p[0] in c for c in curves.values())]
    if axes is None:
        ncols = min(3, len(panels))
        nrows = -(-len(panels) // ncols)
        _, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.1 * nrows), squeeze=False)
    axes = list(np.ravel(axes))
    for ax, (key, ylabel, yscale) in zip(axes, panels, strict=True):
        for label, c in curves.items():
            ax.plot(dims, c[key], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale(yscale)
        ax.set_xlabel("head dimension d")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend()
    plt.tight_layout()
    return axes


def plot_masks(masks: dict[str, torch.Tensor], axes=None):
    """Bool masks (Sq, Sk) side by side; dark = may attend."""
    if axes is None:
        _, axes = plt.subplots(1, len(masks), figsize=(3.2 * len(masks), 3.2))
    axes = np.atleast_1d(axes)
    for ax, (title, m) in zip(axes, masks.items(), strict=True):
        ax.imshow(m.to(torch.float32).cpu().numpy(), cmap="Greys", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
    plt.tight_layout()
    return axes


def plot_attention_weights(weights: torch.Tensor, query_labels: Sequence[str] | None = None,
                           key_labels: Sequence[str] | None = None, ax=None, title: str | None = None):
    """Heatmap of one (Sq, Sk) weight matrix, queries as rows."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    w = weights.detach().to(torch.float32).cpu().numpy()
    im = ax.imshow(w, cmap="viridis", vmin=0, vmax=1)
    if query_labels is not None:
        ax.set_yticks(range(len(query_labels)), query_labels)
    if key_labels is not None:
        ax.set_xticks(range(len(key_labels)), key_labels, rotation=90)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    plt.colorbar(im, ax=ax, fraction=0.046)
    return ax


def attention_heatmap(weights: Sequence[torch.Tensor], tokens: Sequence[str], title: str = "attention weights"):
    """Interactive (plotly) view of one sequence's attention: hover a cell to read query → key and weight.

    ``weights`` holds one (NH, S, S) tensor per layer; a drop-down menu switches layer and head. Layers
    and heads are counted from 1, as in the text and the static figures.
    """
    import plotly.graph_objects as go

    S = len(tokens)
    ticks = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = go.Figure()
    labels = []
    for layer, w in enumerate(weights):
        for head in range(w.shape[0]):
            z = w[head].detach().to(torch.float64).cpu().numpy()
            fig.add_trace(go.Heatmap(
                z=z, x=ticks, y=ticks, zmin=0, zmax=1, colorscale="Viridis", visible=not labels,
                hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
            labels.append(f"layer {layer + 1}, head {head + 1}")
    buttons = [dict(label=lab, method="update",
                    args=[{"visible": [j == i for j in range(len(labels))]}, {"title.text": f"{title}: {lab}"}])
               for i, lab in enumerate(labels)]
    fig.update_layout(title=f"{title}: {labels[0]}", width=560, height=520,
                      yaxis=dict(autorange="reversed", title="query (hover a row)"), xaxis=dict(title="key"),
                      updatemenus=[dict(buttons=buttons, x=1.0, y=1.15, xanchor="right")])
    fig.update_xaxes(tickangle=-90, nticks=S)
    return fig


def plot_cost_vs_length(lengths: Sequence[int], seconds: dict[str, Sequence[float]],
                        nbytes: dict[str, Sequence[float]], axes=None):
    """Log–log time and memory against the sequence length S."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, t in seconds.items():
        axes[0].loglog(lengths, np.asarray(t) * 1e3, marker="o", label=label)
    axes[0].set_ylabel("time per call (ms)")
    for label, b in nbytes.items():
        axes[1].loglog(lengths, np.asarray(b) / 2**20, marker="o", label=label)
    axes[1].set_ylabel("memory (MiB)")
    for ax in axes:
        ax.set_xlabel("sequence length S")
        # Label the measured lengths only: matplotlib's minor log labels overlap within a decade.
        ax.set_xticks(list(lengths), [str(s) for s in lengths])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    plt.tight_layout()
    return axes


# ---------------------------------------------------------------------------------------------------
# Diagrams: boxes and arrows drawn with matplotlib, so they follow the notebook's theme.


def _canvas(width: float, height: float, ax=None):
    if ax is None:
        _, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _node(ax, x: float, y: float, text: str, color: str = "#e8f0fb", w: float = 1.3, h: float = 0.6,
          fontsize: int = 11) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="0.3", lw=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _link(ax, start: tuple[float, float], end: tuple[float, float], color: str = "0.25", style: str = "-|>",
          **kw) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": style, "color": color, "lw": 1.4, "shrinkA": 0, "shrinkB": 0, **kw})


def draw_attention_diagram(ax=None):
    """Scaled dot-product attention as a data flow: X → Q, K, V → scores → mask → softmax → weighted sum."""
    ax = _canvas(11.5, 4.2, ax)
    _node(ax, 0.9, 2.1, "X\n(S, E)", "#f3f3f3", h=0.9)
    projections = ((3.4, "Q = X W_Q", "#fde2e1"), (2.1, "K = X W_K", "#e1f0fd"), (0.8, "V = X W_V", "#e4f7e4"))
    for y, name, colour in projections:
        _link(ax, (1.55, 2.1), (2.4, y))
        _node(ax, 3.1, y, name, colour, w=1.4)
    _node(ax, 5.3, 2.8, "s = Q Kᵀ / √D\n(S, S)", "#fff4d6", w=1.8, h=0.9)
    _link(ax, (3.8, 3.4), (4.4, 3.0))
    _link(ax, (3.8, 2.1), (4.4, 2.6))
    _node(ax, 7.3, 2.8, "+ mask\n(−∞ blocks)", "#f3f3f3", w=1.5, h=0.9)
    _link(ax, (6.2, 2.8), (6.55, 2.8))
    _node(ax, 9.1, 2.8, "softmax\nover keys", "#fff4d6", w=1.4, h=0.9)
    _link(ax, (8.05, 2.8), (8.4, 2.8))
    _node(ax, 9.1, 1.0, "α V\n(S, D_V)", "#e4f7e4", w=1.4, h=0.9)
    _link(ax, (9.1, 2.35), (9.1, 1.45))
    _link(ax, (3.8, 0.8), (8.4, 0.95))
    _link(ax, (9.8, 1.0), (10.9, 1.0))
    ax.text(11.0, 1.0, "out", va="center", fontsize=11)
    ax.text(7.3, 3.75, "weights α: every row sums to 1", ha="center", fontsize=10, color="0.3")
    ax.set_title("scaled dot-product attention", fontsize=12)
    return ax


def draw_multihead_diagram(num_heads: int = 3, ax=None):
    """Multi-head attention: one projection split into heads, attention per head, concatenate, W_O."""
    ax = _canvas(11.0, 1.0 + 1.1 * num_heads, ax)
    mid = (1.0 + 1.1 * num_heads) / 2
    _node(ax, 0.8, mid, "X\n(S, E)", "#f3f3f3", h=0.9)
    _node(ax, 2.8, mid, "Q, K, V\n(S, E) each", "#fff4d6", w=1.6, h=0.9)
    _link(ax, (1.45, mid), (2.0, mid))
    for h in range(num_heads):
        y = 1.0 + 1.1 * (num_heads - 1 - h)
        _link(ax, (3.6, mid), (4.6, y))
        _node(ax, 5.6, y, f"head {h + 1}: attention\non D_H = E / N_H", "#e1f0fd", w=2.0, h=0.8, fontsize=10)
        _link(ax, (6.6, y), (7.4, mid))
    _node(ax, 8.2, mid, "concat\n(S, E)", "#f3f3f3", w=1.3, h=0.9)
    _node(ax, 9.9, mid, "· W_O", "#fde2e1", w=1.0, h=0.7)
    _link(ax, (8.85, mid), (9.4, mid))
    ax.text(2.8, mid - 0.85, "split_heads:\n(B, NH, S, D_H)", ha="center", va="top", fontsize=9, color="0.3")
    ax.text(8.2, mid - 0.85, "merge_heads", ha="center", va="top", fontsize=9, color="0.3")
    ax.set_title(f"multi-head attention, N_H = {num_heads}: every head has its own weights (S × S each)",
                 fontsize=12)
    return ax


def draw_transformer_block(ax=None):
    """A pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x)); the residual stream is the spine."""
    ax = _canvas(5.6, 7.2, ax)
    x0 = 1.2
    _link(ax, (x0, 0.3), (x0, 6.9), color="0.45", lw=3)  # the residual stream
    ax.text(x0 - 0.2, 0.35, "x", ha="right", fontsize=12)
    ax.text(x0 - 0.2, 6.75, "x′", ha="right", fontsize=12)
    for y0, sub, colour in ((1.0, "MHA\n(causal mask)", "#e1f0fd"), (3.9, "MLP\nE → 4E → E", "#e4f7e4")):
        _link(ax, (x0, y0), (3.4, y0), color="0.45", style="-")
        _link(ax, (3.4, y0), (3.4, y0 + 0.2), color="0.45")
        _node(ax, 3.4, y0 + 0.45, "LayerNorm", "#f3f3f3", w=1.6, h=0.5, fontsize=10)
        _node(ax, 3.4, y0 + 1.4, sub, colour, w=1.8, h=0.9, fontsize=10)
        _link(ax, (3.4, y0 + 0.7), (3.4, y0 + 0.95))
        _link(ax, (3.4, y0 + 1.85), (3.4, y0 + 2.3))
        _link(ax, (3.4, y0 + 2.3), (x0 + 0.25, y0 + 2.3))
        ax.add_patch(plt.Circle((x0, y0 + 2.3), 0.22, fc="white", ec="0.3", lw=1.2, zorder=3))
        ax.text(x0, y0 + 2.3, "+", ha="center", va="center", fontsize=13, zorder=4)
    ax.text(0.2, 3.6, "residual\nstream", fontsize=9, color="0.35", rotation=90, va="center")
    ax.set_title("pre-norm transformer block", fontsize=12)
    return ax
