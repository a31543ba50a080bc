"""Module 02 figures: they draw what they are given (no notebook needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.lstm import lstm_gate_activations  # noqa: E402
from course_lib.lstm.widgets import gate_explorer, plot_gate_heatmaps, plot_gate_trace, plot_gradient_norms  # noqa: E402
from course_lib.tasks import adding_problem  # noqa: E402


@pytest.fixture
def trace_and_x():
    gen = torch.Generator().manual_seed(0)
    x, _ = adding_problem(3, 12, gen)
    H = 4
    w = dict(weight_ih=torch.randn(4 * H, 2, generator=gen), weight_hh=torch.randn(4 * H, H, generator=gen))
    yield lstm_gate_activations(x, None, **w), x
    plt.close("all")


def test_plot_gate_trace_draws_the_unit_and_the_markers(trace_and_x):
    trace, x = trace_and_x
    axes = plot_gate_trace(trace, x, unit=2, sample=1)
    lines = {line.get_label(): line for line in axes[1].get_lines()}
    np.testing.assert_allclose(lines["f_t"].get_ydata(), trace["f"][1, :, 2].numpy(), rtol=1e-6)
    np.testing.assert_allclose(axes[2].get_lines()[0].get_ydata(), trace["c"][1, :, 2].numpy(), rtol=1e-6)
    marks = sorted(float(line.get_xdata()[0]) for line in axes[0].get_lines())
    assert marks == torch.nonzero(x[1, :, 1]).flatten().tolist()


def test_plot_gate_heatmaps_shows_units_by_time(trace_and_x):
    trace, x = trace_and_x
    axes = plot_gate_heatmaps(trace, x, sample=0, keys=("i", "c"))
    image = axes[1].get_images()[0].get_array()
    assert image.shape == (4, 12)
    np.testing.assert_allclose(image, trace["c"][0].T.numpy(), rtol=1e-6)


def test_gate_explorer_has_sliders_over_units_and_sequences(trace_and_x):
    trace, x = trace_and_x
    shown = gate_explorer(trace, x, unit=1)
    sliders = {w.description: w for w in shown.widget.children if hasattr(w, "max")}
    assert sliders["unit"].max == 3 and sliders["unit"].value == 1
    assert sliders["sequence"].max == 2


def test_plot_gradient_norms_one_line_per_curve():
    ax = plot_gradient_norms({"a": torch.tensor([1.0, 0.5, 0.25]), "b": torch.ones(3)})
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    assert ax.get_yscale() == "log"
    plt.close("all")


def test_gate_explorer_stores_a_static_fallback_figure(trace_and_x, monkeypatch):
    trace, x = trace_and_x
    shown_figures = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown_figures.append(plt.gcf()))
    gate_explorer(trace, x, unit=1, static_units=[3])
    static = shown_figures[-1]
    assert "static view" in static._suptitle.get_text()
    assert len(static.axes) == 6  # three panels for the starting unit and three for unit 3
    assert "unit 1" in static.axes[0].get_title() and "unit 3" in static.axes[1].get_title()
    shown_figures.clear()
    gate_explorer(trace, x, unit=1, static_units=None)
    assert all(f._suptitle is None for f in shown_figures)
    plt.close("all")


def test_draw_lstm_cell_labels_every_gate_and_both_states():
    from course_lib.lstm.widgets import draw_lstm_cell

    ax = draw_lstm_cell()
    texts = " ".join(t.get_text() for t in ax.texts)
    for label in ("$f_t$", "$i_t$", "$g_t$", "$o_t$", "$c_{t-1}$", "$c_t$", "$h_t$", "$h_{t-1}, x_t$"):
        assert label in texts
    assert min(t.get_fontsize() for t in ax.texts if t.get_text()) >= 11  # readable when projected
    plt.close("all")


def test_plot_adding_comparison_draws_every_run_and_the_baselines():
    from course_lib.lstm.experiments import AddingComparison
    from course_lib.lstm.widgets import plot_adding_comparison

    comp = AddingComparison(T=10, steps=5, seeds=[0, 1, 2], lrs=[1e-3, 1e-2])
    for name in ("RNN", "LSTM"):
        for lr in comp.lrs:
            comp.mse[name, lr] = np.array([0.1, 0.2, 0.15])
            comp.accuracy[name, lr] = np.array([0.1, 0.3, 0.2])
    comp.baselines = {"predict the mean": (1 / 6, 0.08), "second value only": (1 / 12, 0.08)}
    axes = plot_adding_comparison(comp)
    seed_dots = [line for line in axes[0].get_lines() if len(line.get_xdata()) == 3]
    assert len(seed_dots) == 4 and all(sorted(line.get_ydata()) == [0.1, 0.15, 0.2] for line in seed_dots)
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert any("predict the mean" in t for t in labels) and any("second value only" in t for t in labels)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["RNN", "LSTM"]
    plt.close("all")
