"""Figures for module 01: gradient norm against time lag (static and interactive), and training runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib.rnn.reference import gradient_norms_over_lag, scale_to_spectral_radius


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def plot_gradient_norms(curves: Mapping[str, torch.Tensor], bounds: Mapping[str, float] | None = None,
                        ax=None, title: str = "gradient norm against time lag"):
    """One curve per label: ``curves[label][k]`` = ||dL/dh_{t-k}|| / ||dL/dh_t|| on a log scale.

    ``bounds`` optionally maps the same labels to a per-step factor ``r``; ``r**k`` is drawn dashed
    in the curve's colour (e.g. the largest singular value of W_hh, an upper bound for tanh).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for label, norms in curves.items():
        norms = _np(norms)
        lags = np.arange(len(norms))
        (line,) = ax.semilogy(lags, norms, lw=2, label=label)
        if bounds and label in bounds:
            ax.semilogy(lags, bounds[label] ** lags.astype(float), ls="--", lw=1, color=line.get_color(), alpha=0.7)
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_xlabel("time lag k (steps back from the loss)")
    ax.set_ylabel("‖∂L/∂h_{t-k}‖ / ‖∂L/∂h_t‖")
    ax.set_ylim(1e-16, 1e8)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, loc="lower left")
    return ax


def gradient_norm_explorer(weight_hh: torch.Tensor, S: int = 60, rho: float = 1.0, input_scale: float = 1.0,
                           nonlinearity: str = "tanh"):
    """Interactive: sliders for the spectral radius of ``weight_hh`` and the input scale.

    Redraws :func:`course_lib.rnn.gradient_norms_over_lag` for ``weight_hh`` rescaled to the chosen
    radius ρ, with two reference lines: ρ^k (the rate of a linear RNN) and σ_max^k (the bound for
    tanh, σ_max = ||W_hh||_2).
    """
    import ipywidgets as widgets

    w = weight_hh.to(torch.float64)

    def show(rho: float, input_scale: float) -> None:
        w_hh = scale_to_spectral_radius(w, rho)
        sigma = float(torch.linalg.matrix_norm(w_hh, ord=2))
        norms = gradient_norms_over_lag(w_hh, S=S, input_scale=input_scale, nonlinearity=nonlinearity)
        _, ax = plt.subplots(figsize=(7, 4))
        lags = np.arange(S)
        ax.semilogy(lags, _np(norms), lw=2, color="tab:blue", label=f"measured, ρ = {rho:.2f}")
        ax.semilogy(lags, rho ** lags.astype(float), ls=":", color="tab:green", label="ρ^k (linear RNN)")
        ax.semilogy(lags, sigma ** lags.astype(float), ls="--", color="tab:red",
                    label=f"σ_max^k = {sigma:.2f}^k (upper bound)")
        ax.set_ylim(1e-16, 1e8)
        ax.set_xlabel("time lag k")
        ax.set_ylabel("‖∂L/∂h_{t-k}‖ / ‖∂L/∂h_t‖")
        ax.set_title(f"{nonlinearity} RNN, H = {w.shape[0]}, input scale {input_scale:g}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        plt.show()

    return widgets.interact(
        show,
        rho=widgets.FloatSlider(value=rho, min=0.1, max=4.0, step=0.05, description="ρ(W_hh)",
                                continuous_update=False),
        input_scale=widgets.FloatLogSlider(value=input_scale, base=10, min=-2, max=1, step=0.25,
                                           description="input scale", continuous_update=False),
    )


def plot_training_runs(runs: Mapping[str, Mapping[str, Sequence[float]]], clip: float | None = None, axes=None):
    """Loss and gradient norm per step for several runs; ``runs[label]`` has keys ``loss`` and ``grad_norm``.

    Non-finite values (a run that diverged) are marked with a cross at the step where they first appear.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for label, run in runs.items():
        for ax, key in zip(axes, ("loss", "grad_norm"), strict=True):
            values = _np(run[key])
            steps = np.arange(1, len(values) + 1)
            (line,) = ax.semilogy(steps, np.where(np.isfinite(values), values, np.nan), lw=1.2, label=label)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                last = values[: bad[0]]
                y = last[np.isfinite(last)].max() if np.isfinite(last).any() else 1.0
                ax.plot(bad[0] + 1, y, marker="x", ms=12, mew=3, color=line.get_color())
                ax.annotate("NaN", (bad[0] + 1, y), textcoords="offset points", xytext=(8, 0),
                            color=line.get_color())
    if clip is not None:
        axes[1].axhline(clip, color="0.3", ls="--", lw=1, label=f"max_norm = {clip:g}")
    axes[0].set_ylabel("training loss (MSE)")
    axes[1].set_ylabel("gradient norm before clipping")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    plt.tight_layout()
    return axes


def plot_accuracy_vs_lag(lags: Sequence[int], accuracy: Mapping[str, Sequence[float]], chance: float | None = None,
                         ax=None, title: str = "adding problem"):
    """Accuracy against the sequence length T (the lag to bridge) for one or more models."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for label, acc in accuracy.items():
        ax.plot(lags, acc, marker="o", lw=2, label=label)
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", label="chance level")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(lags), [str(t) for t in lags])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("accuracy (|error| < 0.04)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
