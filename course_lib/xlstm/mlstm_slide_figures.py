"""The figures of slide deck 06 (mLSTM), drawn from :mod:`course_lib.xlstm.mlstm_plots` with projector-sized text.

Registered in :data:`course_lib.tools.figures.FIGURES` under ``"06"``. Every figure is seeded and
deterministic (the cost figure shows counted memory, not wall-clock time), so a rebuild gives the
same bytes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from course_lib.tools.figure_files import save_figure
from course_lib.xlstm.blocks import MLSTMBlock
from course_lib.xlstm.cost import mlstm_inputs, peak_memory_bytes
from course_lib.xlstm.mlstm import mlstm_chunkwise, mlstm_parallel
from course_lib.xlstm.mlstm_plots import draw_chunkwise, draw_mlstm_block, plot_decay_matrix, plot_mlstm_cost

MIN_POINTS = 15


def decay_matrix(path: Path) -> Path:
    """One head's gates, log D and the stabilised decay matrix D' (forget gate closing at steps 5 and 11)."""
    g = torch.Generator().manual_seed(3)
    S = 16
    i_gate = torch.randn(S, generator=g)
    f_gate = torch.randn(S, generator=g) + 3.0
    f_gate[[5, 11]] = -4.0
    i_gate[8] = 3.0
    fig = Figure(figsize=(13.0, 4.4), layout="constrained")
    plot_decay_matrix(i_gate, f_gate, axes=fig.subplots(1, 3))
    return save_figure(fig, path, MIN_POINTS)


def chunkwise(path: Path) -> Path:
    """The causal S × S matrix in chunks: attention inside, the carried state between chunks."""
    fig = Figure(figsize=(11.0, 7.6))
    ax = fig.add_axes((0, 0, 1, 0.94))
    draw_chunkwise(S=8, chunk_size=3, ax=ax, fontsize=20)
    return save_figure(fig, path)


def mlstm_block(path: Path) -> Path:
    """The mLSTM block drawn from ``MLSTMBlock(32, num_heads=4)``, with parameter counts."""
    torch.manual_seed(0)  # the block's initial weights do not show, but keep the module's RNG use seeded
    state = torch.get_rng_state()
    try:
        block = MLSTMBlock(32, num_heads=4)
    finally:
        torch.set_rng_state(state)
    fig = Figure(figsize=(14.0, 7.6))
    ax = fig.add_axes((0, 0, 1, 0.93))
    draw_mlstm_block(block, ax=ax, fontsize=19)
    return save_figure(fig, path)


def memory_cost(path: Path) -> Path:
    """Peak tensor memory of the parallel and chunkwise forms against S (one head, D = 32, counted)."""
    rows = []
    for S in (128, 256, 512, 1024, 2048):
        inputs = mlstm_inputs(S, NH=1, DQK=32, DV=32)
        rows.append({"form": "parallel", "S": S, "peak_bytes": peak_memory_bytes(lambda x=inputs: mlstm_parallel(*x))})
        rows.append({"form": "chunkwise", "S": S,
                     "peak_bytes": peak_memory_bytes(lambda x=inputs: mlstm_chunkwise(*x, chunk_size=64))})
    fig = Figure(figsize=(8.0, 4.4), layout="constrained")
    ax = fig.subplots()
    plot_mlstm_cost(rows, axes=[ax], keys=("peak_bytes",), fontsize=14)
    ax.set_title("one head, $D_{QK} = D_V = 32$, float32, chunk size 64")
    return save_figure(fig, path, MIN_POINTS)


FIGURES = {
    "06_decay_matrix.png": decay_matrix,
    "06_chunkwise.png": chunkwise,
    "06_mlstm_block.png": mlstm_block,
    "06_memory_cost.png": memory_cost,
}
