"""Module 01's figures: they draw what they are given (headless matplotlib, ipywidgets explorer)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from course_lib.rnn import nonnormal_example  # noqa: E402
from course_lib.rnn.plots import (  # noqa: E402
    draw_unrolled_rnn,
    gradient_norm_explorer,
    plot_accuracy_vs_lag,
    plot_adding_results,
    plot_gradient_norms,
    plot_power_norms,
    plot_training_runs,
)


def test_plot_gradient_norms_draws_a_curve_per_label_and_its_bound():
    curves = {"ρ = 0.5": 0.5 ** torch.arange(10.0), "ρ = 2": 2.0 ** torch.arange(10.0)}
    ax = plot_gradient_norms(curves, bounds={"ρ = 2": 2.5})
    assert ax.get_yscale() == "log"
    # Two curves, one dashed bound, and the horizontal line at 1.
    assert len(ax.lines) == 4
    np.testing.assert_allclose(ax.lines[2].get_ydata(), 2.5 ** np.arange(10.0))
    # The dashed bounds have a legend entry; the legend sits outside the axes (never over a curve).
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["ρ = 0.5", "ρ = 2"] and "sigma_{\\max}^k" in labels[2]
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1
    assert "$" in ax.get_ylabel() and "h_{t-k}" in ax.get_ylabel()  # mathtext, not raw braces
    plt.close("all")


def test_plot_training_runs_marks_a_diverged_run():
    runs = {"no clipping": {"loss": [1.0, 10.0, math.inf, math.nan], "grad_norm": [5.0, 50.0, math.nan, math.nan]},
            "clipped": {"loss": [1.0, 0.5, 0.4, 0.3], "grad_norm": [5.0, 3.0, 2.0, 1.0]}}
    axes = plot_training_runs(runs, clip=1.0)
    assert len(axes) == 2
    assert "NaN" in [t.get_text() for t in axes[0].texts]
    assert any(line.get_linestyle() == "--" for line in axes[1].lines)  # the max_norm line
    plt.close("all")


def test_plot_training_runs_insets_the_finite_runs_with_baselines():
    runs = {"no clipping": {"loss": [1.0, 1e30, math.nan], "grad_norm": [5.0, 1e20, math.nan]},
            "clipped": {"loss": [0.4, 0.2, 0.1], "grad_norm": [5.0, 3.0, 2.0]}}
    axes = plot_training_runs(runs, clip=1.0, baselines={"predict the mean": 1 / 6})
    (inset,) = axes[0].child_axes
    assert inset.get_yscale() == "linear"
    np.testing.assert_allclose(inset.lines[0].get_ydata(), [0.4, 0.2, 0.1])
    assert inset.lines[1].get_ydata()[0] == 1 / 6
    plt.close("all")


def test_plot_accuracy_vs_lag_uses_the_lags_as_ticks():
    ax = plot_accuracy_vs_lag([5, 10, 20], {"RNN": [0.9, 0.5, 0.3]}, chance=0.05)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10", "20"]
    assert list(ax.lines[0].get_ydata()) == [0.9, 0.5, 0.3]
    plt.close("all")


def test_gradient_norm_explorer_builds_sliders_and_draws():
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    view = gradient_norm_explorer(w, S=12, rho=0.9)
    descriptions = [child.description for child in view.widget.children[:2]]
    assert descriptions == ["ρ(W_hh)", "input scale"]
    assert view.widget.children[0].value == 0.9
    plt.close("all")


def test_plot_adding_results_draws_seeds_means_and_baselines():
    mse = {"RNN": np.array([[0.01, 0.1], [0.03, 0.2], [0.02, 0.15]])}
    acc = {"RNN": np.array([[0.9, 0.1], [0.7, 0.0], [0.8, 0.2]])}
    axes = plot_adding_results([5, 40], mse, acc, baselines={"predict the mean": (1 / 6, 0.08)})
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), [0.02, 0.15])
    assert axes[0].lines[-1].get_ydata()[0] == 1 / 6 and axes[1].lines[-1].get_ydata()[0] == 0.08
    assert len(axes[0].lines) == 1 + 3 + 1  # mean, one dot series per seed, baseline
    plt.close("all")


def test_plot_power_norms_shows_growth_above_the_rate():
    ax = plot_power_norms(nonnormal_example(8, 0.9, 0.3), k_max=50)
    norms, bound, rate = (line.get_ydata() for line in ax.lines[:3])
    assert (norms <= bound * (1 + 1e-9)).all() and (norms >= rate * (1 - 1e-9)).all()
    assert norms.max() > 1
    plt.close("all")


def test_draw_unrolled_rnn_labels_every_step_and_the_backward_path():
    ax = draw_unrolled_rnn(steps=("1", "2", "T"))
    texts = [t.get_text() for t in ax.texts]
    for label in ("$x_{1}$", "$x_{T}$", "$g_{2}$", "$W_{hh}$", "$W_{ih}$"):
        assert label in texts, label
    assert any(t.startswith("backward") for t in texts)
    assert min(t.get_fontsize() for t in ax.texts if t.get_text()) >= 13
    plt.close("all")
