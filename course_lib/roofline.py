"""Module 07: why attention is memory-bound, in numbers and pictures.

A kernel's time is bounded below by both its arithmetic and its memory traffic:
``time >= max(FLOPs / peak FLOP/s, bytes / bandwidth)``. Its *arithmetic intensity* I = FLOPs / bytes
says which bound applies: below the machine's ridge point (peak FLOP/s / bandwidth) a kernel is
memory-bound and faster arithmetic does not help. This module counts FLOPs and bytes of attention
done naively (scores and weights written to memory) and tiled (flash attention: they never leave
the chip), draws the roofline, and draws which tiles a causal flash kernel visits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt


@dataclass(frozen=True)
class GPU:
    """Peak numbers of a datacenter GPU, as published by its maker (dense, no sparsity)."""

    name: str
    bf16_tflops: float  # dense bf16/fp16 tensor-core peak, TFLOP/s
    fp32_tflops: float  # fp32 (non-tensor-core) peak, TFLOP/s
    hbm_tb_s: float  # HBM bandwidth, TB/s

    @property
    def ridge(self) -> float:
        """FLOPs per byte at which bf16 compute and memory take equal time."""
        return self.bf16_tflops / self.hbm_tb_s


# NVIDIA's published data-sheet figures (SXM parts), quoted as such -- not measured by this course.
H100_SXM = GPU("H100 SXM (data sheet)", bf16_tflops=989.0, fp32_tflops=67.0, hbm_tb_s=3.35)
H200_SXM = GPU("H200 SXM (data sheet)", bf16_tflops=989.0, fp32_tflops=67.0, hbm_tb_s=4.8)


def attention_flops(Sq: int, Sk: int, D: int, causal: bool = False) -> float:
    """Forward FLOPs of one head: 2·Sq·Sk·D for Q Kᵀ plus 2·Sq·Sk·D for P V (halved when causal)."""
    flops = 4.0 * Sq * Sk * D
    return flops / 2 if causal else flops


def attention_bytes(Sq: int, Sk: int, D: int, bytes_per_element: int = 2, naive: bool = True,
                    block_m: int | None = None) -> float:
    """Memory traffic of one head's forward pass, in bytes.

    Every version reads Q and writes O (2·Sq·D elements) and reads K and V. The naive version reads K
    and V once and also writes the scores S, reads them for the softmax, writes the weights P and reads
    them for P V: 4·Sq·Sk more. A tiled (flash) kernel never stores S or P. Ideally it reads K and V
    once (``block_m=None``: the limit when the L2 cache keeps them for every query tile of a head);
    without such reuse each program of ``block_m`` queries reads all of K and V again:
    2·Sk·D·⌈Sq / block_m⌉ elements.
    """
    elements = 2 * Sq * D
    if naive:
        elements += 2 * Sk * D + 4 * Sq * Sk
    else:
        elements += 2 * Sk * D * (1 if block_m is None else math.ceil(Sq / block_m))
    return float(elements * bytes_per_element)


def arithmetic_intensity(Sq: int, Sk: int, D: int, bytes_per_element: int = 2, naive: bool = True,
                         block_m: int | None = None) -> float:
    """FLOPs per byte of one head's forward pass (not causal); ``block_m`` as in :func:`attention_bytes`."""
    return attention_flops(Sq, Sk, D) / attention_bytes(Sq, Sk, D, bytes_per_element, naive, block_m)


def roofline_time_s(flops: float, nbytes: float, gpu: GPU = H100_SXM) -> float:
    """The roofline lower bound on the time: max(FLOPs / peak, bytes / bandwidth)."""
    return max(flops / (gpu.bf16_tflops * 1e12), nbytes / (gpu.hbm_tb_s * 1e12))


def plot_roofline(S_values=(512, 2048, 8192), D: int = 64, gpu: GPU = H100_SXM, ax=None, fontsize: int = 9):
    """Attainable TFLOP/s against arithmetic intensity, with naive and tiled attention marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    xs = [2 ** (e / 4) for e in range(-8, 61)]
    ax.loglog(xs, [min(gpu.bf16_tflops, gpu.hbm_tb_s * x) for x in xs], color="black", lw=2,
              label=f"roofline: {gpu.name}")
    ax.axvline(gpu.ridge, color="grey", ls=":", lw=1)
    ax.text(gpu.ridge * 1.1, gpu.bf16_tflops * 0.012, f"ridge {gpu.ridge:.0f} FLOP/B", color="grey",
            fontsize=fontsize)
    series = ((True, None, "o", "tab:red", "naive attention (S, P in memory)"),
              (False, 128, "^", "tab:green", "tiled, K and V re-read per tile of 128 queries"),
              (False, None, "s", "tab:blue", "tiled, K and V read once (ideal reuse)"))
    for naive, block_m, marker, colour, label in series:
        points = [(S, arithmetic_intensity(S, S, D, naive=naive, block_m=block_m)) for S in S_values]
        for k, (S, i) in enumerate(points):
            y = min(gpu.bf16_tflops, gpu.hbm_tb_s * i)
            ax.plot(i, y, marker, color=colour, ms=8)
            if not naive and block_m is None:  # ideal points spread along the flat roof: label each, staggered
                ax.annotate(f"S={S}", (i, y), textcoords="offset points", xytext=(-10, -18 - 16 * (k % 2)),
                            fontsize=fontsize - 1, color=colour)
        if naive or block_m is not None:  # these sit on top of each other (I independent of S): one label
            i, y = points[-1][1], min(gpu.bf16_tflops, gpu.hbm_tb_s * points[-1][1])
            ax.annotate(f"S = {S_values[0]} … {S_values[-1]}", (i, y), textcoords="offset points", xytext=(8, -16),
                        fontsize=fontsize - 1, color=colour)
        ax.plot([], [], marker, color=colour, label=label)
    ax.set_xlabel("arithmetic intensity (FLOPs per byte, bf16)")
    ax.set_ylabel("attainable TFLOP/s")
    ax.set_title(f"Attention forward, one head, D = {D}")
    ax.legend(loc="lower right", fontsize=fontsize - 1)
    return ax


def causal_tiles(Sq: int, Sk: int, BLOCK_M: int, BLOCK_N: int) -> int:
    """How many (query tile, key tile) pairs a causal flash forward visits.

    Query tile m covers rows m·BLOCK_M … and stops at key ``min(Sk, (m + 1)·BLOCK_M)`` (top-left
    aligned: no row of the tile sees a key beyond its last row).
    """
    total = 0
    for m in range(math.ceil(Sq / BLOCK_M)):
        hi = min(Sk, (m + 1) * BLOCK_M)
        total += math.ceil(hi / BLOCK_N)
    return total


def plot_flash_tiles(Sq: int = 10, Sk: int = 12, BLOCK_M: int = 4, BLOCK_N: int = 4, causal: bool = True, ax=None,
                     fontsize: int = 9):
    """The (Sq, Sk) score matrix cut into tiles: the tiles a program visits or skips, and the masked entries."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.8))
    for m in range(math.ceil(Sq / BLOCK_M)):
        hi = min(Sk, (m + 1) * BLOCK_M) if causal else Sk
        for n in range(math.ceil(Sk / BLOCK_N)):
            visited = n * BLOCK_N < hi
            ax.add_patch(plt.Rectangle((n * BLOCK_N, m * BLOCK_M), BLOCK_N, BLOCK_M, fill=True,
                                       facecolor="#cfe3f7" if visited else "#eeeeee", edgecolor="black", lw=1.5))
    for i in range(Sq):
        for j in range(Sk):
            allowed = (not causal) or j <= i
            ax.plot(j + 0.5, i + 0.5, "o" if allowed else "x", color="tab:blue" if allowed else "tab:red", ms=4)
    ax.set_xlim(0, math.ceil(Sk / BLOCK_N) * BLOCK_N)
    ax.set_ylim(math.ceil(Sq / BLOCK_M) * BLOCK_M, 0)
    ax.axhline(Sq, color="tab:purple", ls="--", lw=1)
    ax.axvline(Sk, color="tab:purple", ls="--", lw=1)
    ax.set_xlabel("key index j (tiles of BLOCK_N)")
    ax.set_ylabel("query index i (tiles of BLOCK_M)")
    ax.set_title(f"{'causal ' if causal else ''}flash attention: Sq={Sq}, Sk={Sk}, tiles {BLOCK_M}x{BLOCK_N}\n"
                 "blue tile: computed; grey: skipped; x: masked entry; dashed: end of the data", fontsize=fontsize)
    ax.set_aspect("equal")
    return ax


def tile_explorer(Sq: int = 10, Sk: int = 12, block: int = 4, static: bool = True):
    """Interactive :func:`plot_flash_tiles`: sliders for Sq, Sk and the tile size, a causal switch (ipywidgets).

    Shows how many tiles a causal kernel skips as the shapes change, and how ragged ends fall inside
    a tile (masked lanes). With ``static`` it then draws the causal and non-causal views of the
    starting shape side by side, which the notebook stores as an image, so the lesson reads where
    widgets do not run (GitHub, a static site).
    """
    import ipywidgets as widgets

    def show(Sq: int, Sk: int, block: int, causal: bool) -> None:
        fig, ax = plt.subplots(figsize=(5.5, 4.8))
        plot_flash_tiles(Sq, Sk, block, block, causal=causal, ax=ax)
        total = math.ceil(Sq / block) * math.ceil(Sk / block)
        visited = causal_tiles(Sq, Sk, block, block) if causal else total
        ax.set_xlabel(f"key index j  ({visited} of {total} tiles computed)")
        plt.show()

    view = widgets.interact(
        show,
        Sq=widgets.IntSlider(value=Sq, min=1, max=32, description="Sq"),
        Sk=widgets.IntSlider(value=Sk, min=1, max=32, description="Sk"),
        block=widgets.IntSlider(value=block, min=2, max=8, description="tile"),
        causal=widgets.Checkbox(value=True, description="causal"),
    )
    if static:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
        plot_flash_tiles(Sq, Sk, block, block, causal=False, ax=axes[0])
        plot_flash_tiles(Sq, Sk, block, block, causal=True, ax=axes[1])
        fig.suptitle("static view of the explorer (run the notebook to move the sliders)", fontsize=11)
        plt.tight_layout()
        plt.show()
    return view


def plot_chunkwise_kernels(ax=None, n_chunks: int = 4, fontsize: int = 12):
    """The chunkwise mLSTM as two kernels: states carried from chunk to chunk, then every chunk's outputs at once."""
    from matplotlib.patches import FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.6))
    ax.set_xlim(0, 0.5 + 2.3 * n_chunks)
    ax.set_ylim(-0.5, 4.0)
    ax.axis("off")

    def box(x, y, colour, text):
        ax.add_patch(FancyBboxPatch((x, y), 1.8, 0.9, boxstyle="round,pad=0.05", facecolor=colour, edgecolor="black"))
        ax.text(x + 0.9, y + 0.45, text, ha="center", va="center", fontsize=fontsize)

    for c in range(n_chunks):
        x = 0.5 + 2.3 * c
        box(x, 2.2, "#cfe3f7", f"chunk {c}\nL steps")
        box(x, 0.3, "#e4f7e4", f"h of chunk {c}")
        ax.annotate("", (x + 0.9, 1.25), (x + 0.9, 2.15), arrowprops=dict(arrowstyle="->", lw=1.5))
        if c < n_chunks - 1:
            ax.annotate("", (x + 2.25, 2.65), (x + 1.85, 2.65), arrowprops=dict(arrowstyle="->", lw=2, color="tab:red"))
            ax.text(x + 2.05, 3.25, f"$C_{c + 1}, n_{c + 1}, m_{c + 1}$", ha="center", fontsize=fontsize,
                    color="tab:red")
    ax.text(0.5, 3.75, "kernel 1: the states entering each chunk, sequential over chunks (red)", fontsize=fontsize,
            color="tab:red")
    ax.text(0.5, -0.35, "kernel 2: the outputs, every chunk at once (black)", fontsize=fontsize)
    return ax
