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
