"""Module 03's interactive view: the soft dictionary of section 1 under a temperature slider.

The look-up has four stored items whose keys are unit vectors (compass directions) and whose values
are numbers. A query of length β points at a bearing; the weights are softmax(β · cos(angle to each
key)). :func:`plot_soft_lookup` draws one state (the query among the keys, the weights, and the
output on the value axis); :func:`plot_soft_lookup_sweep` the static strip of several β that the
notebook stores as the fallback image; :func:`soft_lookup_explorer` the sliders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def soft_lookup(keys: torch.Tensor, values: torch.Tensor, degrees: float, beta: float):
    """Weights (N,) and output of the soft look-up for a query of length ``beta`` at ``degrees``.

    ``keys`` (N, 2) in the plane, y pointing north; the bearing is measured clockwise from north.
    """
    rad = math.radians(degrees)
    query = beta * torch.tensor([math.sin(rad), math.cos(rad)], dtype=keys.dtype)  # (2,)
    # $$\alpha = \operatorname{softmax}(K q), \qquad \text{out} = \alpha^\top v$$
    weights = torch.softmax(keys @ query, dim=0)  # (N,)
    return weights, float(weights @ values)


def plot_soft_lookup(keys: torch.Tensor, values: torch.Tensor, names: Sequence[str], degrees: float,
                     beta: float, axes=None):
    """Left: keys and the query in the plane; right: the weights as bars and the output value."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.5, 3.4), gridspec_kw={"width_ratios": [1, 1.5]})
    weights, out = soft_lookup(keys, values, degrees, beta)
    ax = axes[0]
    for (x, y), name, w in zip(keys.tolist(), names, weights.tolist(), strict=True):
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": "0.6", "lw": 1.2})
        ax.scatter([x], [y], s=40 + 900 * w, color="tab:blue", alpha=0.6, zorder=3)
        ax.text(1.22 * x, 1.22 * y, name, ha="center", va="center", fontsize=11)
    rad = math.radians(degrees)
    length = min(beta, 16) / 16  # drawn length: β up to 16 fills the circle
    ax.annotate("", xy=(length * math.sin(rad), length * math.cos(rad)), xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "color": "tab:red", "lw": 2})
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"query: {degrees:g}°, β = {beta:g}", fontsize=11)
    ax = axes[1]
    ax.bar(list(names), weights.tolist(), color="tab:blue")
    for i, (w, v) in enumerate(zip(weights.tolist(), values.tolist(), strict=True)):
        ax.text(i, w + 0.02, f"{w:.2f}", ha="center", fontsize=10)
        ax.text(i, -0.12, f"value {v:g}", ha="center", fontsize=9, color="0.35")
    ax.set_ylim(-0.17, 1.12)
    ax.set_ylabel("weight α_j")
    ax.set_title(f"output = Σ α_j v_j = {out:.2f}   (mean of the values: {float(values.mean()):g})", fontsize=11)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(range(len(names)), list(names))
    ax.grid(alpha=0.3, axis="y")
    return axes


def plot_soft_lookup_sweep(keys: torch.Tensor, values: torch.Tensor, names: Sequence[str], degrees: float = 60,
                           betas: Sequence[float] = (0, 1, 4, 16, 64)):
    """The static fallback of the explorer: weights and output for several β at one bearing."""
    fig, axes = plt.subplots(1, len(betas), figsize=(2.6 * len(betas), 2.9), sharey=True)
    for ax, beta in zip(np.atleast_1d(axes), betas, strict=True):
        weights, out = soft_lookup(keys, values, degrees, beta)
        ax.bar(list(names), weights.tolist(), color="tab:blue")
        ax.set_title(f"β = {beta:g}: output {out:.2f}", fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3, axis="y")
    np.atleast_1d(axes)[0].set_ylabel("weight α_j")
    fig.suptitle(f"query at {degrees:g}°: from averaging everything (β = 0) to a hard look-up (large β)",
                 fontsize=11)
    plt.tight_layout()
    return axes


def soft_lookup_explorer(keys: torch.Tensor, values: torch.Tensor, names: Sequence[str], degrees: float = 60,
                         beta: float = 4):
    """Sliders for the bearing and the length β of the query (ipywidgets); redraws :func:`plot_soft_lookup`."""
    import ipywidgets as widgets

    def show(degrees: float, log2_beta: float) -> None:
        plot_soft_lookup(keys, values, names, degrees, 0.0 if log2_beta <= -3 else 2.0**log2_beta)
        plt.show()

    return widgets.interact(
        show,
        degrees=widgets.FloatSlider(value=degrees, min=0, max=360, step=5, description="bearing (°)"),
        log2_beta=widgets.FloatSlider(value=math.log2(beta) if beta > 0 else -3, min=-3, max=7, step=0.25,
                                      description="log₂ β", readout_format=".2f"),
    )
