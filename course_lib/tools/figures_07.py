"""The figures of slide deck 07, drawn from :mod:`course_lib.roofline` with projector-sized text.

Registered in :data:`course_lib.tools.figures.FIGURES` under ``"07"``.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from course_lib import roofline


def _save(fig: Figure, path: Path) -> Path:
    from course_lib.tools.figures import _save as save  # the deck figures' settings (DPI, no timestamp)

    return save(fig, path)


def roofline_figure(path: Path) -> Path:
    """Naive and tiled attention on the roofline of an H100 (data-sheet peaks)."""
    fig = Figure(figsize=(8.0, 4.6), layout="constrained")
    ax = fig.subplots()
    roofline.plot_roofline(S_values=(1024, 4096, 16384), D=64, ax=ax, fontsize=15)
    ax.xaxis.label.set_fontsize(15)
    ax.yaxis.label.set_fontsize(15)
    ax.title.set_fontsize(16)
    ax.tick_params(labelsize=15)
    return _save(fig, path)


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
    return _save(fig, path)


def chunkwise_kernels(path: Path) -> Path:
    """The two chunkwise mLSTM kernels: a sequential pass over chunks, then all chunks in parallel."""
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.5, 4.0)
    ax.axis("off")
    for c in range(4):
        x = 0.5 + 2.3 * c
        ax.add_patch(_rect(x, 2.2, 1.8, 0.9, "#cfe3f7"))
        ax.text(x + 0.9, 2.65, f"chunk {c}\nL steps", ha="center", va="center", fontsize=15)
        ax.add_patch(_rect(x, 0.3, 1.8, 0.9, "#e4f7e4"))
        ax.text(x + 0.9, 0.75, f"h of chunk {c}", ha="center", va="center", fontsize=15)
        ax.annotate("", (x + 0.9, 1.25), (x + 0.9, 2.15), arrowprops=dict(arrowstyle="->", lw=1.5))
        if c < 3:
            ax.annotate("", (x + 2.25, 2.65), (x + 1.85, 2.65), arrowprops=dict(arrowstyle="->", lw=2, color="tab:red"))
            ax.text(x + 2.05, 3.25, f"$C_{c + 1}, n_{c + 1}, m_{c + 1}$", ha="center", fontsize=15, color="tab:red")
    ax.text(0.5, 3.75, "kernel 1: the states entering each chunk, sequential over chunks (red)", fontsize=15,
            color="tab:red")
    ax.text(0.5, -0.35, "kernel 2: the outputs, every chunk at once (black)", fontsize=15)
    return _save(fig, path)


def _rect(x: float, y: float, w: float, h: float, colour: str):
    from matplotlib.patches import FancyBboxPatch

    return FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", facecolor=colour, edgecolor="black")


FIGURES = {
    "07_roofline.png": roofline_figure,
    "07_flash_tiles.png": flash_tiles,
    "07_chunkwise_kernels.png": chunkwise_kernels,
}
