"""Module 01's figures: they draw what they are given (headless matplotlib, ipywidgets explorer)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from course_lib.rnn.plots import (  # noqa: E402
    gradient_norm_explorer,
    plot_accuracy_vs_lag,
    plot_gradient_norms,
    plot_training_runs,
)


def test_plot_gradient_norms_draws_a_curve_per_label_and_its_bound():
    curves = {"ρ = 0.5": 0.5 ** torch.arange(10.0), "ρ = 2": 2.0 ** torch.arange(10.0)}
    ax = plot_gradient_norms(curves, bounds={"ρ = 2": 2.5})
    assert ax.get_yscale() == "log"
    # Two curves, one dashed bound, and the horizontal line at 1.
    assert len(ax.lines) == 4
    np.testing.assert_allclose(ax.lines[2].get_ydata(), 2.5 ** np.arange(10.0))
    plt.close("all")


def test_plot_training_runs_marks_a_diverged_run():
    runs = {"no clipping": {"loss": [1.0, 10.0, math.inf, math.nan], "grad_norm": [5.0, 50.0, math.nan, math.nan]},
            "clipped": {"loss": [1.0, 0.5, 0.4, 0.3], "grad_norm": [5.0, 3.0, 2.0, 1.0]}}
    axes = plot_training_runs(runs, clip=1.0)
    assert len(axes) == 2
    assert "NaN" in [t.get_text() for t in axes[0].texts]
    assert any(line.get_linestyle() == "--" for line in axes[1].lines)  # the max_norm line
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
