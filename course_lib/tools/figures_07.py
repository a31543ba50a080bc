"""The figures of slide deck 07, drawn from :mod:`course_lib.roofline` with projector-sized text.

Registered in :data:`course_lib.tools.figures.FIGURES` under ``"07"``.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from course_lib import roofline
from course_lib.tools.figure_files import save_figure


def roofline_figure(path: Path) -> Path:
    """Naive and tiled attention on the roofline of an H100 (data-sheet peaks)."""
    fig = Figure(figsize=(8.0, 4.6), layout="constrained")
    ax = fig.subplots()
    roofline.plot_roofline(S_values=(1024, 4096, 16384), D=64, ax=ax, fontsize=15)
    ax.xaxis.label.set_fontsize(15)
    ax.yaxis.label.set_fontsize(15)
    ax.title.set_fontsize(16)
    ax.tick_params(labelsize=15)
    return save_figure(fig, path)


def flash_tiles(path: Path) -> Path:
    """The tiles of a flash kernel, without and with a causal mask."""
    fig = Figure(figsize=(10.0, 4.6), layout="constrained")
    for ax, causal in zip(fig.subplots(1, 2), (False, True), strict=True):
        roofline.plot_flash_tiles(10, 12, 4, 4, causal=causal, ax=ax, fontsize=15)
        ax.set_title("causal: grey tiles skipped" if causal else "no mask: every tile computed", fontsize=16)
        ax.set_xlabel("key index j", fontsize=15)
        ax.set_ylabel("query index i", fontsize=15)
        ax.set_xticks([0, 4, 8, 12])
        ax.set_yticks([0, 4, 8, 12])
        ax.tick_params(labelsize=15)
    return save_figure(fig, path)


def chunkwise_kernels(path: Path) -> Path:
    """The two chunkwise mLSTM kernels: a sequential pass over chunks, then all chunks in parallel."""
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    roofline.plot_chunkwise_kernels(ax=fig.subplots(), fontsize=15)
    return save_figure(fig, path)


FIGURES = {
    "07_roofline.png": roofline_figure,
    "07_flash_tiles.png": flash_tiles,
    "07_chunkwise_kernels.png": chunkwise_kernels,
}
