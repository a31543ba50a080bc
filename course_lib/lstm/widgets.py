"""Figures for module 02: the LSTM cell diagram, gate activations over a sequence (static and
interactive, with a static fallback), gradient norms, and the equal-budget comparison on the adding problem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Circle, FancyBboxPatch


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


def _mark(ax, marks: np.ndarray) -> None:
    for t in marks:
        ax.axvline(t, color="tab:red", alpha=0.35, lw=2)


def plot_gate_trace(trace: Mapping[str, torch.Tensor], x: torch.Tensor, unit: int, sample: int = 0, axes=None):
    """One unit of an LSTM on one adding-problem sequence: the input, the gates i, f, o, and c, h.

    ``trace`` is :func:`course_lib.lstm.lstm_gate_activations`'s dict (each (B, S, H)); ``x`` the
    inputs (B, S, 2) with the values in channel 0 and the markers in channel 1. Marked steps are
    drawn as red vertical lines.
    """
    if axes is None:
        _, axes = plt.subplots(3, 1, figsize=(10, 6), sharex=True)
    S = x.shape[1]
    steps = np.arange(S)
    marks = np.flatnonzero(_np(x[sample, :, 1]) > 0.5)
    values = _np(x[sample, :, 0])
    axes[0].bar(steps, values, color="0.7", width=0.8)
    axes[0].bar(marks, values[marks], color="tab:red", width=0.8)
    axes[0].set_ylabel("input value")
    axes[0].set_title(f"unit {unit}, sequence {sample}: marked values {np.round(values[marks], 2).tolist()}, "
                      f"target {values[marks].sum():.2f}")
    for key, colour in (("i", "tab:green"), ("f", "tab:blue"), ("o", "tab:purple")):
        axes[1].plot(steps, _np(trace[key][sample, :, unit]), color=colour, label=f"{key}_t")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("gate")
    axes[1].legend(loc="center right", ncol=3, fontsize=8)
    axes[2].plot(steps, _np(trace["c"][sample, :, unit]), color="black", label="c_t")
    axes[2].plot(steps, _np(trace["h"][sample, :, unit]), color="tab:orange", ls="--", label="h_t")
    axes[2].axhline(0, color="0.8", lw=0.8)
    axes[2].set_ylabel("state")
    axes[2].set_xlabel("time step t")
    axes[2].legend(loc="center right", fontsize=8)
    for ax in axes:
        _mark(ax, marks)
        ax.grid(alpha=0.3)
    plt.tight_layout()
    return axes


def gate_explorer(trace: Mapping[str, torch.Tensor], x: torch.Tensor, unit: int = 0, sample: int = 0,
                  static_units: Sequence[int] | None = ()):
    """Interactive :func:`plot_gate_trace`: sliders for the unit and the sequence (ipywidgets).

    Unless ``static_units`` is None it then draws a static figure -- the starting view (``unit``)
    and one panel column per unit in ``static_units``, on the same sequence -- which the notebook
    stores as an image, so the lesson reads where widgets do not run (GitHub, a static site).
    """
    import ipywidgets as widgets

    B, _, H = trace["c"].shape

    def show(unit: int, sample: int) -> None:
        plot_gate_trace(trace, x, unit, sample)
        plt.show()

    view = widgets.interact(
        show,
        unit=widgets.IntSlider(value=unit, min=0, max=H - 1, description="unit"),
        sample=widgets.IntSlider(value=sample, min=0, max=B - 1, description="sequence"),
    )
    if static_units is not None:
        units = [unit, *[u for u in static_units if u != unit]]
        fig, axes = plt.subplots(3, len(units), figsize=(7 * len(units), 6), sharex=True, squeeze=False)
        for column, u in enumerate(units):
            plot_gate_trace(trace, x, u, sample, axes=axes[:, column])
        fig.suptitle("static view of the explorer (run the notebook to move the sliders)", fontsize=11)
        plt.tight_layout()
        plt.show()
    return view


def plot_gate_heatmaps(trace: Mapping[str, torch.Tensor], x: torch.Tensor, sample: int = 0,
                       keys: Sequence[str] = ("i", "f", "c"), axes=None):
    """All units at once for one sequence: one (unit × time) heatmap per key, markers in red."""
    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    marks = np.flatnonzero(_np(x[sample, :, 1]) > 0.5)
    for ax, key in zip(axes, keys, strict=True):
        data = _np(trace[key][sample]).T  # (H, S)
        if key in ("i", "f", "o"):
            im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        else:
            lim = float(np.abs(data).max()) or 1.0
            im = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        for t in marks:
            ax.axvline(t, color="tab:red", lw=1.5)
        ax.set_title(f"{key}_t")
        ax.set_xlabel("time step t")
        plt.colorbar(im, ax=ax, fraction=0.05)
    axes[0].set_ylabel("unit")
    plt.tight_layout()
    return axes


def plot_gradient_norms(curves: Mapping[str, torch.Tensor], ax=None, title: str | None = None):
    """Relative gradient norms against the time lag k (log scale), one line per entry of ``curves``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for label, norms in curves.items():
        n = _np(norms)
        ax.semilogy(np.arange(len(n)), n, label=label)
    ax.set_xlabel("time lag k")
    ax.set_ylabel("‖∂L/∂state$_{T-k}$‖ / ‖∂L/∂state$_T$‖")
    ax.set_ylim(bottom=1e-20, top=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def _op(ax, xy: tuple[float, float], symbol: str) -> None:
    ax.add_patch(Circle(xy, 0.22, fc="#fff4e0", ec="0.3", lw=1.2))
    ax.text(*xy, symbol, ha="center", va="center", fontsize=13)


def _box(ax, xy: tuple[float, float], text: str, color: str = "#e8f0fb", w: float = 0.8, h: float = 0.55) -> None:
    ax.add_patch(FancyBboxPatch((xy[0] - w / 2, xy[1] - h / 2), w, h, boxstyle="round,pad=0.04", fc=color, ec="0.3",
                                lw=1.2))
    ax.text(*xy, text, ha="center", va="center", fontsize=12)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], color: str = "0.25") -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.4,
                                                      "shrinkA": 0, "shrinkB": 0})


def draw_lstm_cell(ax=None):
    """The LSTM cell: the additive cell path (the carousel, red) on top, the four gates below (torch's i, f, g, o).

    Draws into ``ax`` (a new figure if None) and returns it; the slide deck uses the same drawing.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9.0, 3.7))
    ax.set_xlim(-2.3, 9.6)
    ax.set_ylim(-1.0, 3.9)
    ax.set_aspect("equal")
    ax.axis("off")
    y_cell, y_gate, y_in = 3.2, 0.9, -0.35
    ax.plot([-0.6, 8.3], [y_cell, y_cell], color="C3", lw=2.5, zorder=0)
    ax.text(-0.7, y_cell, "$c_{t-1}$", ha="right", va="center", fontsize=14)
    _arrow(ax, (8.0, y_cell), (8.4, y_cell), color="C3")
    ax.text(8.5, y_cell, "$c_t$", ha="left", va="center", fontsize=14)
    ax.text(3.0, y_cell + 0.35, "cell path: $c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$", ha="center", fontsize=12,
            color="C3")
    gates = {"f": (1.6, "$\\sigma$"), "i": (3.2, "$\\sigma$"), "g": (4.8, "$\\tanh$"), "o": (6.4, "$\\sigma$")}
    ax.plot([-0.6, 6.4], [y_in, y_in], color="0.3", lw=1.4)
    ax.text(-0.7, y_in, "$h_{t-1}, x_t$", ha="right", va="center", fontsize=14)
    for name, (x, label) in gates.items():
        _arrow(ax, (x, y_in), (x, y_gate - 0.3))
        _box(ax, (x, y_gate), label)
        ax.text(x - 0.5, y_gate + 0.45, f"${name}_t$", ha="right", fontsize=13)
    _op(ax, (1.6, y_cell), "×")  # forget: scale the old cell
    _arrow(ax, (1.6, y_gate + 0.28), (1.6, y_cell - 0.22))
    _op(ax, (4.0, 2.1), "×")  # input gate times candidate ...
    _arrow(ax, (3.2, y_gate + 0.28), (3.85, 1.93))
    _arrow(ax, (4.8, y_gate + 0.28), (4.15, 1.93))
    _op(ax, (4.0, y_cell), "+")  # ... added to the cell
    _arrow(ax, (4.0, 2.32), (4.0, y_cell - 0.22))
    _box(ax, (7.4, 2.35), "$\\tanh$", color="#eef7ea", h=0.5)  # output: h_t = o_t * tanh(c_t)
    _arrow(ax, (7.4, y_cell), (7.4, 2.6))
    _op(ax, (7.4, 1.5), "×")
    _arrow(ax, (7.4, 2.1), (7.4, 1.72))
    _arrow(ax, (6.4, y_gate + 0.28), (7.22, 1.38))
    _arrow(ax, (7.62, 1.5), (8.4, 1.5))
    ax.text(8.5, 1.5, "$h_t$", ha="left", va="center", fontsize=14)
    ax.text(3.0, -0.85, "pre-activations: $W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}$, rows stacked i, f, g, o",
            ha="center", fontsize=11, color="0.3")
    return ax


def plot_adding_comparison(comparison, axes=None, title: str | None = None):
    """Test MSE and accuracy of every (model, learning rate) of :func:`course_lib.lstm.experiments.compare_on_adding`.

    One column per model and learning rate: each seed is a dot, the mean a bar-free marker with the
    min-max range as an error bar; the baselines measured on the same test set are horizontal lines.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    names = list(dict.fromkeys(name for name, _ in comparison.mse))
    lrs = comparison.lrs
    width = 0.8 / max(1, len(lrs))
    for ax, data in zip(axes, (comparison.mse, comparison.accuracy), strict=True):
        for j, lr in enumerate(lrs):
            colour = f"C{j}"
            for k, name in enumerate(names):
                values = np.asarray(data[name, lr])
                pos = k + (j - (len(lrs) - 1) / 2) * width
                mean = values.mean()
                ax.errorbar(pos, mean, yerr=[[mean - values.min()], [values.max() - mean]], fmt="o", ms=8,
                            color=colour, capsize=4, label=f"learning rate {lr:g} (mean, min–max)" if k == 0 else None)
                ax.plot(np.full(len(values), pos) + 0.04, values, ls="none", marker=".", ms=6, color=colour, alpha=0.6)
        for (name, pair), style in zip(comparison.baselines.items(), (":", "-."), strict=False):
            value = pair[0] if ax is axes[0] else pair[1]
            ax.axhline(value, color="0.3", ls=style, lw=1.2, label=f"{name} ({value:.3g})")
        ax.set_xticks(range(len(names)), names)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("test MSE")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_ylabel("accuracy ($|\\hat y - y| < 0.04$)")
    head = title or f"adding problem, T = {comparison.T}, {comparison.steps} steps, {len(comparison.seeds)} seeds"
    axes[0].set_title(f"{head}: test MSE", fontsize=11)
    axes[1].set_title(f"{head}: accuracy", fontsize=11)
    axes[0].legend(fontsize=8, loc="lower left")
    axes[1].legend(fontsize=8, loc="upper left")
    return axes
