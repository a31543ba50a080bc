"""Figures of module 04: energy landscapes, capacity, image retrieval, β regimes, head classes.

Every function draws into the axes it is given (or new pyplot axes), so the notebook, the slide
figures (matplotlib's object API) and the tests share the code. ``beta_explorer`` is the
interactive view (ipywidgets); ``plot_beta_panels`` is its static fallback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch

from course_lib.hopfield.reference import effective_patterns, hopfield_energy, hopfield_retrieve

REGIME_COLOURS = {"global average": "#4c72b0", "metastable": "#dd8452", "single pattern": "#55a868"}


def _axes(ax, ncols: int = 1, figsize=(6, 3.5)):
    if ax is not None:
        return ax
    _, ax = plt.subplots(1, ncols, figsize=figsize, layout="constrained")
    return ax


def plot_energy_landscape(X: torch.Tensor, beta: float, starts: torch.Tensor | None = None, n_steps: int = 3,
                          ax=None, lim: float = 3.0, title: str | None = None):
    """The modern energy over a 2-D state space (contours), stored patterns (stars), update paths.

    ``X`` (N, 2) stored patterns; ``starts`` (K, 2) initial states, each followed for ``n_steps``.
    """
    ax = _axes(ax, figsize=(4.2, 4.0))
    grid = torch.linspace(-lim, lim, 121, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    states = torch.stack([gx.flatten(), gy.flatten()], dim=-1)  # (G, 2)
    E = hopfield_energy(states, X.double(), beta).reshape(gx.shape)
    ax.contourf(gx.numpy(), gy.numpy(), E.numpy(), levels=16, cmap="viridis")
    ax.contour(gx.numpy(), gy.numpy(), E.numpy(), levels=16, colors="white", linewidths=0.3, alpha=0.5)
    ax.plot(X[:, 0], X[:, 1], "*", ms=14, color="#ffdd33", mec="black", label="stored patterns")
    if starts is not None:
        for s in starts.double():
            path = [s]
            for _ in range(n_steps):
                path.append(hopfield_retrieve(path[-1][None], X.double(), beta)[0])
            p = torch.stack(path).numpy()
            ax.plot(p[:, 0], p[:, 1], "-o", color="white", ms=3, lw=1.2)
            ax.plot(p[0, 0], p[0, 1], "o", color="#ff6666", ms=5)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.grid(False)
    ax.set_title(title or f"energy, β = {beta:g}")
    return ax


def plot_capacity(rates: Mapping[str, Sequence[float]], ax=None, spread: Mapping[str, Sequence[float]] | None = None,
                  title: str = "one update, d = 32, 10 % of bits flipped"):
    """Retrieval success against the number of stored patterns N (log axis), one line per network.

    A ``"nearest neighbour"`` entry (an upper bound, not a network) is drawn as a dashed black line.
    """
    ax = _axes(ax)
    Ns = np.asarray(rates["N"])
    for i, (name, values) in enumerate((k, v) for k, v in rates.items() if k != "N"):
        values = np.asarray(values)
        if name == "nearest neighbour":
            ax.semilogx(Ns, values, "--", base=2, label="nearest neighbour (bound)", color="k", lw=1.2)
            continue
        ax.semilogx(Ns, values, "o-", base=2, label=name, color=f"C{i}")
        if spread is not None and name in spread:
            s = np.asarray(spread[name])
            ax.fill_between(Ns, values - s, values + s, color=f"C{i}", alpha=0.2, lw=0)
    ax.set_xlabel("stored patterns N")
    ax.set_ylabel("fraction retrieved")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title)
    ax.legend()
    return ax


def plot_classical_capacity(curve: Mapping[str, Sequence[float]], ax=None, d: int | None = None):
    """Classical network: fraction of stored patterns retrieved against the load N/d, with 0.138."""
    ax = _axes(ax)
    ax.plot(curve["load"], curve["retrieved"], "o-", label="patterns retrieved (≤ 1.5 % wrong bits)")
    ax.plot(curve["load"], curve["bit_error"], "s--", label="mean fraction of wrong bits")
    ax.axvline(0.138, color="0.4", ls=":", lw=1.2)
    ax.text(0.141, 0.92, "0.138", color="0.3")
    ax.set_xlabel("load N / d")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("classical Hopfield network" + (f", d = {d}" if d else ""))
    ax.legend(loc="center left")
    return ax


def plot_image_grid(rows: Mapping[str, torch.Tensor], axes=None, col_titles: Sequence[str] | None = None):
    """One row per entry: images (K, H, W) in ±1 (or continuous), shown black on white."""
    names = list(rows)
    K = rows[names[0]].shape[0]
    if axes is None:
        _, axes = plt.subplots(len(names), K, figsize=(1.1 * K + 1.2, 1.15 * len(names) + 0.3),
                               squeeze=False, layout="constrained")
    for r, name in enumerate(names):
        for c in range(K):
            ax = axes[r][c]
            ax.imshow(rows[name][c].detach().numpy(), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center")
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[c])
    return axes


def plot_beta_state(images: torch.Tensor, query: torch.Tensor, beta: float, axes=None, names=None):
    """For one β: the softmax weights over the stored images and the retrieved image.

    ``images`` (N, H, W) stored patterns, ``query`` (H, W) the state pattern.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 2.6), width_ratios=[3, 1], layout="constrained")
    N, H, W = images.shape
    X = images.reshape(N, H * W).double()
    new, p = hopfield_retrieve(query.reshape(1, H * W).double(), X, beta, return_weights=True)
    n_eff = float(effective_patterns(p)[0])
    energy = float(hopfield_energy(new, X, beta)[0])
    axes[0].bar(range(N), p[0].numpy(), color="#4c72b0")
    axes[0].set_ylim(0, 1.02)
    axes[0].set_xticks(range(N))
    axes[0].set_xticklabels(names if names is not None else range(N), rotation=45, ha="right")
    axes[0].set_title(f"β = {beta:.3g}: weights, N_eff = {n_eff:.1f}, E(ξ_new) = {energy:.1f}")
    axes[1].imshow(new[0].reshape(H, W).numpy(), cmap="gray_r", vmin=-1, vmax=1)
    axes[1].set_title("retrieved")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    axes[1].grid(False)
    return axes


def plot_beta_panels(images: torch.Tensor, query: torch.Tensor, betas: Sequence[float], names=None):
    """The static view of :func:`beta_explorer`: one row per β (the notebook's fallback image)."""
    fig, axes = plt.subplots(len(betas), 2, figsize=(8, 2.3 * len(betas)), width_ratios=[3, 1],
                             squeeze=False, layout="constrained")
    for row, beta in zip(axes, betas, strict=True):
        plot_beta_state(images, query, beta, axes=row, names=names)
    return fig


def beta_explorer(images: torch.Tensor, query: torch.Tensor, names=None, beta: float = 0.05):
    """Interactive :func:`plot_beta_state`: a logarithmic slider for β (ipywidgets)."""
    import ipywidgets as widgets

    def show(log10_beta: float) -> None:
        plot_beta_state(images, query, 10**log10_beta, names=names)
        plt.show()

    return widgets.interact(show, log10_beta=widgets.FloatSlider(value=math.log10(beta), min=-4, max=1, step=0.1,
                                                                 description="log10 β", continuous_update=False))


def plot_regimes(table: Mapping[str, Sequence[float]], axes=None):
    """Distances to the mean / the target and the effective number of patterns against β."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    b = table["beta"]
    axes[0].semilogx(b, table["to_mean"], "o-", label="‖ξ_new − mean‖ / ‖mean‖")
    axes[0].semilogx(b, table["to_target"], "s-", label="‖ξ_new − x_target‖ / ‖x_target‖")
    axes[0].set_yscale("symlog", linthresh=0.01)
    axes[0].set_xlabel("β")
    axes[0].set_title("what one update returns")
    axes[0].legend(loc="center right")
    axes[1].loglog(b, table["n_eff"], "o-", label="N_eff = 1/Σp²")
    axes[1].loglog(b, table["k90"], "s--", label="k (90 % of the weight)")
    axes[1].set_xlabel("β")
    axes[1].set_title("how many patterns it averages")
    axes[1].legend()
    return axes


def plot_head_regimes(rows: Sequence[Mapping[str, object]], ax=None, title: str = "heads of the trained model"):
    """Median k / visible keys of every head, grouped by layer, coloured by class."""
    ax = _axes(ax, figsize=(6, 3.2))
    labels = []
    for i, r in enumerate(rows):
        ax.bar(i, r["median_fraction"], color=REGIME_COLOURS[r["class"]])
        ax.text(i, r["median_fraction"] + 0.02, f"k={r['median_k']:g}", ha="center", fontsize=9)
        labels.append(f"L{r['layer']}H{r['head']}" + (f"\n{r['seed']}" if "seed" in r else ""))
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=9)
    ax.axhline(0.5, color="0.4", ls=":", lw=1)
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("median k / visible keys")
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in REGIME_COLOURS.values()]
    ax.legend(handles, list(REGIME_COLOURS), loc="upper center", ncol=3)
    return ax


def plot_energy_curve(energies: Sequence[float], ax=None, title: str = "energy along the dynamics"):
    """Energy against the step of an iterated update."""
    ax = _axes(ax, figsize=(5, 3))
    ax.plot(range(len(energies)), energies, "-")
    ax.set_xlabel("step")
    ax.set_ylabel("E")
    ax.set_title(title)
    return ax


def _box(ax, xy, text, color="#e8f0fb", w=1.6, h=0.62, fontsize=12):
    ax.add_patch(FancyBboxPatch((xy[0] - w / 2, xy[1] - h / 2), w, h, boxstyle="round,pad=0.05", fc=color,
                                ec="0.3", lw=1.2))
    ax.text(*xy, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": "0.25", "lw": 1.4,
                                                      "shrinkA": 0, "shrinkB": 0})


def draw_update_as_attention(ax=None):
    """Diagram: the Hopfield update ξ ← softmax(β ξ Xᵀ) X and attention softmax(Q Kᵀ/√d) V, side by side."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4.2)
    ax.axis("off")
    ax.text(2.4, 3.95, "modern Hopfield update", ha="center", fontsize=13, weight="bold")
    ax.text(7.6, 3.95, "attention", ha="center", fontsize=13, weight="bold")
    for x0, (state, stored, scale, vals, out) in ((2.4, ("state ξ (S, d)", "stored X (N, d)", "softmax(β ξ Xᵀ)",
                                                         "× X", "ξ_new")),
                                                  (7.6, ("Q = R W_Q", "K = Y W_K", "softmax(Q Kᵀ / √d_k)",
                                                         "× V,  V = K W_V", "Z"))):
        _box(ax, (x0 - 1.1, 3.1), state, color="#fde2e2")
        _box(ax, (x0 + 1.1, 3.1), stored, color="#e2f0d9")
        _box(ax, (x0, 2.0), scale, w=2.6)
        _box(ax, (x0, 1.05), vals, w=2.2, color="#e2f0d9")
        _box(ax, (x0, 0.25), out, w=1.2, h=0.45, color="#fde2e2")
        _arrow(ax, (x0 - 1.1, 2.78), (x0 - 0.4, 2.33))
        _arrow(ax, (x0 + 1.1, 2.78), (x0 + 0.4, 2.33))
        _arrow(ax, (x0, 1.68), (x0, 1.38))
        _arrow(ax, (x0, 0.73), (x0, 0.49))
    ax.text(5.0, 2.0, "β = 1/√d_k\n⟺", ha="center", va="center", fontsize=13)
    return ax
