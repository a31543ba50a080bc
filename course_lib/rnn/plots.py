"""Figures for module 01: the unrolled RNN, gradient norm against time lag (static and interactive), training runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch

from course_lib.rnn.reference import (
    gradient_norms_over_lag,
    largest_singular_value,
    matrix_power_norms,
    scale_to_spectral_radius,
    spectral_radius,
)


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


_LAG_YLABEL = r"$\|\partial L/\partial h_{t-k}\| \,/\, \|\partial L/\partial h_t\|$"


def plot_gradient_norms(curves: Mapping[str, torch.Tensor], bounds: Mapping[str, float] | None = None,
                        ax=None, title: str = "gradient norm against time lag"):
    """One curve per label: ``curves[label][k]`` = ||dL/dh_{t-k}|| / ||dL/dh_t|| on a log scale.

    ``bounds`` optionally maps the same labels to a per-step factor ``r``; ``r**k`` is drawn dashed
    in the curve's colour (e.g. sigma_max of W_hh, an upper bound for tanh), with one legend entry
    for all dashed lines. The legend sits outside the axes, so it never covers a curve.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for label, norms in curves.items():
        norms = _np(norms)
        lags = np.arange(len(norms))
        (line,) = ax.semilogy(lags, norms, lw=2, label=label)
        if bounds and label in bounds:
            ax.semilogy(lags, bounds[label] ** lags.astype(float), ls="--", lw=1, color=line.get_color(), alpha=0.7)
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_xlabel("time lag $k$ (steps back from the loss)")
    ax.set_ylabel(_LAG_YLABEL)
    ax.set_ylim(1e-16, 1e8)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="major")
    handles, _ = ax.get_legend_handles_labels()
    if bounds:
        handles.append(Line2D([], [], ls="--", lw=1, color="0.4", label=r"$\sigma_{\max}^k$ (dashed, same colour)"))
    ax.legend(handles=handles, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return ax


def _explorer_axes(ax, w: torch.Tensor, S: int, rho: float, input_scale: float, nonlinearity: str) -> None:
    """One view of the explorer: measured curve, rho^k and sigma_max^k for W rescaled to radius ``rho``."""
    w_hh = scale_to_spectral_radius(w, rho)
    sigma = largest_singular_value(w_hh)
    norms = gradient_norms_over_lag(w_hh, S=S, input_scale=input_scale, nonlinearity=nonlinearity)
    lags = np.arange(S)
    ax.semilogy(lags, _np(norms), lw=2, color="tab:blue", label=rf"measured, $\rho = {rho:.2f}$")
    ax.semilogy(lags, rho ** lags.astype(float), ls=":", color="tab:green", label=r"$\rho^k$ (rate of a linear RNN)")
    ax.semilogy(lags, sigma ** lags.astype(float), ls="--", color="tab:red",
                label=rf"$\sigma_{{\max}}^k = {sigma:.2f}^k$ (upper bound)")
    ax.set_ylim(1e-16, 1e8)
    ax.set_xlabel("time lag $k$")
    ax.set_ylabel(_LAG_YLABEL)
    ax.set_title(f"{nonlinearity} RNN, H = {w.shape[0]}, input scale {input_scale:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")


def gradient_norm_explorer(weight_hh: torch.Tensor, S: int = 60, rho: float = 1.0, input_scale: float = 1.0,
                           nonlinearity: str = "tanh", static_scales: Sequence[float] | None = (0.01, 1.0)):
    """Interactive: sliders for the spectral radius of ``weight_hh`` and the input scale.

    Redraws :func:`course_lib.rnn.gradient_norms_over_lag` for ``weight_hh`` rescaled to the chosen
    radius rho, with two reference lines: rho^k (the rate of a linear RNN) and sigma_max^k (the bound
    for tanh, sigma_max = ||W_hh||_2). Unless ``static_scales`` is None, it also draws a static
    figure -- the same view at radius ``rho`` for each input scale in ``static_scales`` -- which a
    notebook stores as an image, so the lesson reads where widgets do not run (GitHub, a static site).
    """
    import ipywidgets as widgets

    w = weight_hh.to(torch.float64)

    def show(rho: float, input_scale: float) -> None:
        _, ax = plt.subplots(figsize=(7, 4))
        _explorer_axes(ax, w, S, rho, input_scale, nonlinearity)
        plt.show()

    view = widgets.interact(
        show,
        rho=widgets.FloatSlider(value=rho, min=0.1, max=4.0, step=0.05, description="ρ(W_hh)",
                                continuous_update=False),
        input_scale=widgets.FloatLogSlider(value=input_scale, base=10, min=-2, max=1, step=0.25,
                                           description="input scale", continuous_update=False),
    )
    if static_scales:
        fig, axes = plt.subplots(1, len(static_scales), figsize=(6 * len(static_scales), 3.8), squeeze=False,
                                 layout="constrained")
        for ax, scale in zip(axes[0], static_scales, strict=True):
            _explorer_axes(ax, w, S, rho, scale, nonlinearity)
        fig.suptitle("static view of the explorer (run the notebook to move the sliders)", fontsize=10)
        plt.show()
    return view


def plot_power_norms(w: torch.Tensor, k_max: int = 600, measured: torch.Tensor | None = None, ax=None,
                     title: str | None = None):
    """||W^k||_2 against k with its two references, rho^k (asymptotic rate) and sigma_max^k (bound).

    ``measured`` optionally adds a measured gradient-norm curve (e.g. from
    :func:`course_lib.rnn.gradient_norms_over_lag`) over its own range of lags.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    norms = _np(matrix_power_norms(w, k_max))
    rho, sigma = spectral_radius(w), largest_singular_value(w)
    k = np.arange(k_max + 1, dtype=float)
    ax.semilogy(k, norms, lw=2, color="tab:blue", label=r"$\|W_{hh}^k\|_2$ (linear RNN, worst direction)")
    ax.semilogy(k, sigma**k, ls="--", color="tab:red", label=rf"$\sigma_{{\max}}^k = {sigma:.2f}^k$ (upper bound)")
    ax.semilogy(k, rho**k, ls=":", color="tab:green", label=rf"$\rho^k = {rho:.2f}^k$ (asymptotic rate)")
    if measured is not None:
        ax.semilogy(np.arange(len(measured)), _np(measured), lw=1.5, color="tab:orange",
                    label="measured tanh RNN gradient (small inputs)")
    ax.axhline(1.0, color="0.6", lw=0.8)
    top = max(float(norms.max()), 10.0) * 10
    ax.set_ylim(max(float(norms.min()), 1e-30) / 10, top)
    ax.set_xlabel("time lag $k$")
    ax.set_ylabel("growth factor across $k$ steps")
    ax.set_title(title or f"non-normal $W_{{hh}}$: $\\rho = {rho:.2f}$, $\\sigma_{{\\max}} = {sigma:.2f}$")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return ax


def plot_training_runs(runs: Mapping[str, Mapping[str, Sequence[float]]], clip: float | None = None, axes=None,
                       baselines: Mapping[str, float] | None = None):
    """Loss and gradient norm per step for several runs; ``runs[label]`` has keys ``loss`` and ``grad_norm``.

    Non-finite values (a run that diverged) are marked with a cross at the step where they first appear.
    A diverging run stretches the loss axis over dozens of decades; an inset in the loss panel shows
    the runs that stayed finite on a linear scale, with ``baselines`` (label -> loss) as dotted lines.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    finite_runs = []
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
            elif key == "loss":
                finite_runs.append((label, values, line.get_color()))
    if clip is not None:
        axes[1].axhline(clip, color="0.3", ls="--", lw=1, label=f"max_norm = {clip:g}")
    axes[0].set_ylabel("training loss (MSE)")
    axes[1].set_ylabel("gradient norm before clipping")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    if finite_runs and len(finite_runs) < len(runs):
        inset = axes[0].inset_axes((0.45, 0.45, 0.52, 0.5))
        for label, values, color in finite_runs:
            inset.plot(np.arange(1, len(values) + 1), values, lw=1, color=color, label=label)
        for (name, value), style in zip((baselines or {}).items(), (":", "-."), strict=False):
            inset.axhline(value, color="0.3", ls=style, lw=1, label=name)
        # the first steps start far above the baselines; the scale is set by what the runs settle to
        settled = max(float(np.percentile(v, 90)) for _, v, _ in finite_runs)
        inset.set_ylim(0, 1.5 * max([settled, *(baselines or {}).values()]))
        inset.set_title("finite runs, linear scale", fontsize=8)
        inset.tick_params(labelsize=7)
        inset.grid(alpha=0.3)
        if baselines:
            inset.legend(fontsize=7, loc="upper right")
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


def plot_adding_results(lengths: Sequence[int], mse: Mapping[str, np.ndarray], accuracy: Mapping[str, np.ndarray],
                        baselines: Mapping[str, tuple[float, float]] | None = None, axes=None,
                        title: str = "adding problem"):
    """Test MSE and accuracy against the sequence length T, mean and min-max over seeds, with baselines.

    ``mse[label]`` and ``accuracy[label]`` are arrays (n_seeds, len(lengths)); each seed is a dot, the
    mean a line, the range a band. ``baselines`` maps a name to its (MSE, accuracy), drawn as
    horizontal lines in both panels (e.g. "predict the mean": (1/6, 0.08)).
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    lengths = list(lengths)
    for ax, data in zip(axes, (mse, accuracy), strict=True):
        for label, values in data.items():
            values = np.atleast_2d(_np(values))
            (line,) = ax.plot(lengths, values.mean(0), marker="o", lw=2, label=f"{label} (mean of {len(values)} seeds)")
            ax.fill_between(lengths, values.min(0), values.max(0), color=line.get_color(), alpha=0.2, lw=0)
            for row in values:
                ax.plot(lengths, row, ls="none", marker=".", ms=5, color=line.get_color(), alpha=0.7)
        for (name, pair), style in zip((baselines or {}).items(), (":", "-.", "--"), strict=False):
            value = pair[0] if ax is axes[0] else pair[1]
            ax.axhline(value, color="0.3", ls=style, lw=1.2, label=f"{name} ({value:.3g})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.set_xlabel("sequence length $T$ (the lag is at least $0.9\\,T$)")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("test MSE")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_ylabel("accuracy ($|\\hat y - y| < 0.04$)")
    axes[0].set_title(f"{title}: test MSE")
    axes[1].set_title(f"{title}: accuracy")
    axes[0].legend(fontsize=8, loc="lower right")
    axes[1].legend(fontsize=8, loc="upper right")
    return axes


def draw_unrolled_rnn(ax=None, steps: Sequence[str] = ("1", "2", "3", "T"), backward: bool = True,
                      fontsize: float = 14):
    """The RNN unrolled in time, with the paths along which BPTT sends gradients back.

    Forward (black): x_t enters through W_ih, h_{t-1} through W_hh, the same weights at every step.
    Backward (red): each loss l_t sends g_t = dl_t/dh_t into its own step, and the carry
    W_hh^T eps_{t+1} (eps = dL/da, the gradient behind the tanh) flows to the previous step.
    Draws into ``ax`` (a new figure sized to the drawing when None) and returns it.
    """
    n = len(steps)
    xs = [1.3 + 2.9 * i for i in range(n - 1)] + [1.3 + 2.9 * (n - 1) + 0.9]
    y_cell, y_in, y_loss = 1.9, 0.15, 3.6
    xlim, ylim = (-1.0, xs[-1] + 1.5), (-0.95 if backward else -0.2, 4.0)
    if ax is None:
        fig = plt.figure(figsize=(0.88 * (xlim[1] - xlim[0]), 0.88 * (ylim[1] - ylim[0])))
        ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    arrow = {"arrowstyle": "-|>", "lw": 1.6, "shrinkA": 0, "shrinkB": 0}
    red = "tab:red"

    def draw_arrow(start, end, color="0.2", **kw):
        ax.annotate("", xy=end, xytext=start, arrowprops={**arrow, "color": color, **kw})

    ax.text(-0.6, y_cell + 0.12, "$h_0$", ha="center", va="center", fontsize=fontsize + 2)
    draw_arrow((-0.3, y_cell + 0.12), (xs[0] - 0.6, y_cell + 0.12))
    for i, (t, x) in enumerate(zip(steps, xs, strict=True)):
        ax.add_patch(FancyBboxPatch((x - 0.55, y_cell - 0.4), 1.1, 0.8, boxstyle="round,pad=0.05",
                                    fc="#e8f0fb", ec="0.3", lw=1.2))
        ax.text(x, y_cell, r"$\tanh$", ha="center", va="center", fontsize=fontsize)
        ax.text(x, y_in - 0.05, f"$x_{{{t}}}$", ha="center", va="center", fontsize=fontsize + 2)
        draw_arrow((x, y_in + 0.3), (x, y_cell - 0.45))
        ax.text(x - 0.1, y_in + 0.62, "$W_{ih}$", ha="right", va="center", fontsize=fontsize)
        draw_arrow((x, y_cell + 0.45), (x, y_loss - 0.3))
        ax.text(x, y_loss, f"$\\ell_{{{t}}}$", ha="center", va="center", fontsize=fontsize + 2)
        if backward:
            draw_arrow((x + 0.3, y_loss - 0.3), (x + 0.3, y_cell + 0.45), color=red)
            ax.text(x + 0.38, y_loss - 0.72, f"$g_{{{t}}}$", ha="left", va="center", fontsize=fontsize, color=red)
        if i == n - 1:
            continue
        gap = i == n - 2  # "..." between the last two drawn steps
        end = x + 1.45 if gap else xs[i + 1] - 0.6
        draw_arrow((x + 0.6, y_cell + 0.12), (end, y_cell + 0.12))
        mid = (x + 0.6 + end) / 2
        ax.text(mid, y_cell + 0.22, f"$h_{{{t}}}$", ha="center", va="bottom", fontsize=fontsize)
        ax.text(mid, y_cell + 0.02, "$W_{hh}$", ha="center", va="top", fontsize=fontsize)
        if gap:
            ax.text(x + 1.85, y_cell + 0.12, r"$\cdots$", ha="center", va="center", fontsize=fontsize + 2)
            draw_arrow((x + 2.2, y_cell + 0.12), (xs[i + 1] - 0.6, y_cell + 0.12))
        if backward:
            ax.annotate("", xy=(x + 0.45, y_cell - 0.5), xytext=(xs[i + 1] - 0.45, y_cell - 0.5),
                        arrowprops={**arrow, "color": red, "ls": "--" if gap else "-",
                                    "connectionstyle": "arc3,rad=-0.3"})
            if i == 0:
                ax.text(mid, y_cell - 1.0, r"$W_{hh}^{\top}\varepsilon_{t+1}$", ha="center", va="top",
                        fontsize=fontsize - 1, color=red)
    draw_arrow((xs[-1] + 0.6, y_cell + 0.12), (xs[-1] + 0.95, y_cell + 0.12))
    ax.text(xs[-1] + 1.0, y_cell + 0.12, f"$h_{{{steps[-1]}}}$", ha="left", va="center", fontsize=fontsize)
    if backward:
        ax.text((xs[0] + xs[-1]) / 2, -0.6,
                r"backward: $\delta_t = g_t + W_{hh}^{\top}\varepsilon_{t+1}$, "
                r"$\varepsilon_t = (1-h_t^2)\odot\delta_t$, from $t = T$ down to $1$",
                ha="center", va="center", fontsize=fontsize, color=red)
    return ax
