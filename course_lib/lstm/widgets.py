"""Figures for module 02: gate activations over a sequence (static and interactive), gradient norms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


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


def gate_explorer(trace: Mapping[str, torch.Tensor], x: torch.Tensor, unit: int = 0, sample: int = 0):
    """Interactive :func:`plot_gate_trace`: sliders for the unit and the sequence (ipywidgets)."""
    import ipywidgets as widgets

    B, _, H = trace["c"].shape

    def show(unit: int, sample: int) -> None:
        plot_gate_trace(trace, x, unit, sample)
        plt.show()

    return widgets.interact(
        show,
        unit=widgets.IntSlider(value=unit, min=0, max=H - 1, description="unit"),
        sample=widgets.IntSlider(value=sample, min=0, max=B - 1, description="sequence"),
    )


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
