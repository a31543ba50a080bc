"""Module 05 figures: the numbers they draw are right, and every figure function returns a figure."""

from __future__ import annotations

import math

import torch
from helpers import assert_close
from matplotlib.figure import Figure

from course_lib.xlstm.slstm import SLSTMLayer
from course_lib.xlstm.slstm_plots import (
    draw_slstm_cell,
    heads_leak,
    plot_accuracy_by_revisions,
    plot_block_diagonal,
    plot_softmax_over_time,
    plot_stabiliser,
    softmax_over_time,
    stabiliser_trace,
)


def test_softmax_over_time_matches_the_ratio_c_over_n():
    # With z_s = one-hot of s, c_t / n_t is exactly the weight vector over s <= t.
    g = torch.Generator().manual_seed(0)
    S = 6
    i_pre = torch.randn(S, generator=g, dtype=torch.float64) * 2
    f_pre = torch.randn(S, generator=g, dtype=torch.float64)
    w = softmax_over_time(i_pre, f_pre)
    c = torch.zeros(S, dtype=torch.float64)
    n = torch.zeros((), dtype=torch.float64)
    for t in range(S):
        f = torch.sigmoid(f_pre[t])
        z = torch.zeros(S, dtype=torch.float64)
        z[t] = 1.0
        c = f * c + torch.exp(i_pre[t]) * z
        n = f * n + torch.exp(i_pre[t])
        assert_close(w[t], c / n, name=f"weights at t={t + 1}")


def test_stabiliser_trace_bounds_the_true_normaliser():
    g = torch.Generator().manual_seed(1)
    trace = stabiliser_trace(torch.randn(20, generator=g) * 5, torch.randn(20, generator=g) + 2)
    t = torch.arange(1, 21, dtype=torch.float64)
    assert bool((trace["m"] <= trace["log_n_bar"] + 1e-9).all())
    assert bool((trace["log_n_bar"] <= trace["m"] + torch.log(t) + 1e-9).all())
    assert math.isclose(float(trace["m"][0]), float(trace["i_pre"][0]))


def test_heads_do_not_leak_and_figures_are_drawn():
    layer = SLSTMLayer(8, 8, num_heads=4)
    assert heads_leak(layer.R.detach()) == 0.0
    dense = torch.randn(4, 1, 8, 8)  # one head: everything mixes
    assert heads_leak(dense) == 0.0
    figs = [plot_block_diagonal(layer.R.detach(), dense=torch.randn(32, 8)),
            plot_stabiliser(stabiliser_trace(torch.linspace(0, 100, 10), torch.full((10,), 3.0))),
            plot_accuracy_by_revisions([1, 2], {"a": [[0.5, 0.6], [0.55, 0.65]]}, {"chance": 0.25}),
            plot_softmax_over_time(torch.tensor([0.0, 2.0, 1.0]), torch.full((3,), 3.0), times=(1, 3)),
            draw_slstm_cell()]
    assert all(isinstance(f, Figure) for f in figs)
