"""The figures of slide deck 05 (sLSTM), drawn from :mod:`course_lib.xlstm.slstm_plots` with projector-sized text.

Registered in :data:`course_lib.tools.figures.FIGURES` under ``"05"``. Every figure is seeded and
deterministic (no training, no timing), so a rebuild gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from course_lib.tools.figure_files import save_figure
from course_lib.xlstm.slstm import SLSTMLayer
from course_lib.xlstm.slstm_plots import (
    draw_slstm_cell,
    plot_block_diagonal,
    plot_softmax_over_time,
    plot_stabiliser,
    stabiliser_trace,
)

MIN_POINTS = 14


def slstm_cell(path: Path) -> Path:
    """One sLSTM step as a diagram."""
    fig = draw_slstm_cell()
    return save_figure(fig, path, MIN_POINTS)


def softmax_over_time(path: Path) -> Path:
    """ĩ of a short stream and the weights of c_t/n_t at three times: the new maximum takes over."""
    i_pre = torch.tensor([0.0, 1.0, -1.0, 3.0, 0.5, 0.0, 5.0, 0.0, 1.0, -0.5])
    f_pre = torch.full((10,), 4.0)
    fig = plot_softmax_over_time(i_pre, f_pre, times=(3, 6, 10))
    fig.set_size_inches(10.0, 3.8)
    return save_figure(fig, path, MIN_POINTS)


def stabiliser(path: Path) -> Path:
    """ĩ drifting up to ~150, the stabiliser m_t and log of the true normaliser; float32's limit."""
    g = torch.Generator().manual_seed(1)
    S = 40
    i_pre = torch.linspace(0, 150, S) + 5 * torch.randn(S, generator=g)
    f_pre = 3.0 + torch.randn(S, generator=g)
    fig = plot_stabiliser(stabiliser_trace(i_pre, f_pre))
    fig.set_size_inches(10.0, 4.0)
    return save_figure(fig, path, MIN_POINTS)


def block_diagonal(path: Path) -> Path:
    """R of a 16-unit, 4-head sLSTM layer per gate, and an LSTM's dense forget-gate matrix."""
    with torch.random.fork_rng(devices=[]):  # seeded initialisation; the global RNG is left as it was
        torch.manual_seed(0)
        R = SLSTMLayer(16, 16, num_heads=4).R.detach()
        dense = nn.LSTM(16, 16).weight_hh_l0.detach()
    fig = plot_block_diagonal(R, dense=dense)
    fig.set_size_inches(13.0, 3.6)
    return save_figure(fig, path, MIN_POINTS)


FIGURES = {
    "05_slstm_cell.png": slstm_cell,
    "05_softmax_over_time.png": softmax_over_time,
    "05_stabiliser.png": stabiliser,
    "05_block_diagonal.png": block_diagonal,
}
