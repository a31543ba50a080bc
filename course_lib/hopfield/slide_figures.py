"""The figures of slide deck 04, drawn with matplotlib's object API from the module's own code.

Registered in :data:`course_lib.tools.figures.FIGURES` under ``"04"``; each function takes the output
path, draws a seeded figure and saves it with the deck figures' common settings.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from course_lib.hopfield import plots
from course_lib.hopfield.energy_transformer import et_descent, et_example
from course_lib.hopfield.experiments import (
    classical_capacity_curve,
    retrieval_comparison,
)
from course_lib.hopfield.images import binary_images, corrupt_images
from course_lib.hopfield.reference import classical_update, classical_update_async, hebbian_weights, hopfield_retrieve
from course_lib.tools.figure_files import save_figure

MIN_FONT_PT = 10.5
"""No text smaller than this in the deck's figures (legends default to 9 pt in the deck style)."""


def energy_landscape(path: Path) -> Path:
    """The modern energy in two dimensions for three values of β, with update paths."""
    X = torch.tensor([[2.0, 0.3], [-0.4, 2.1], [-1.8, -1.2], [1.2, -1.9]], dtype=torch.float64)
    starts = torch.tensor([[0.6, 0.9], [-2.5, 0.8], [2.5, -2.5]], dtype=torch.float64)
    fig = Figure(figsize=(9.0, 3.3), layout="constrained")
    for ax, beta in zip(fig.subplots(1, 3), [0.2, 1.0, 5.0], strict=True):
        plots.plot_energy_landscape(X, beta, starts=starts, n_steps=3, ax=ax)
        ax.set_xticks([-2, 0, 2])
        ax.set_yticks([-2, 0, 2])
    return save_figure(fig, path, MIN_FONT_PT)


def update_is_attention(path: Path) -> Path:
    """Diagram: the Hopfield update and attention, side by side."""
    fig = Figure(figsize=(9.0, 3.4))
    plots.draw_update_as_attention(ax=fig.add_axes((0, 0, 1, 1)))
    return save_figure(fig, path, MIN_FONT_PT)


def capacity(path: Path) -> Path:
    """Classical capacity against the load, and the three networks on the same patterns (seed 0)."""
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    curve = classical_capacity_curve(d=200, loads=(0.05, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25), n_sets=2, seed=0)
    plots.plot_classical_capacity(curve, ax=axes[0], d=200)
    rates = retrieval_comparison(d=32, Ns=(4, 16, 64, 256, 1024, 4096), flip=0.1, n_queries=200, seed=0)
    plots.plot_capacity(rates, ax=axes[1], title="one update, d = 32, 10 % flips")
    return save_figure(fig, path, MIN_FONT_PT)


def image_retrieval(path: Path) -> Path:
    """Half-erased images: the cue, the classical network's result, one modern update."""
    names, images = binary_images(16)
    n = len(names)
    X = images.reshape(n, -1)
    cue = corrupt_images(images, "mask", 0.5, torch.Generator().manual_seed(3)).reshape(n, -1)
    W = hebbian_weights(X)
    classical = classical_update_async(classical_update(cue, W), W, n_sweeps=10)
    modern = hopfield_retrieve(cue, X, 1.0)
    rows = {"cue": cue, "classical": classical, "modern": modern}
    fig = Figure(figsize=(9.0, 2.7), layout="constrained")
    axes = fig.subplots(3, n)
    plots.plot_image_grid({k: v.reshape(images.shape) for k, v in rows.items()}, axes=axes)
    return save_figure(fig, path, MIN_FONT_PT)


def beta_images(path: Path) -> Path:
    """The half-erased ring retrieved at three values of β: average, mixture, single pattern."""
    names, images = binary_images(16)
    query = corrupt_images(images[:1], "mask", 0.5, torch.Generator().manual_seed(0))[0]
    fig = Figure(figsize=(9.0, 4.4), layout="constrained")
    axes = fig.subplots(3, 2, width_ratios=[3, 1])
    for row, beta in zip(axes, [1e-3, 0.03, 0.3], strict=True):
        plots.plot_beta_state(images, query, beta, axes=row, names=names)
    return save_figure(fig, path, MIN_FONT_PT)


def energy_transformer(path: Path) -> Path:
    """The Energy Transformer's energy along the token dynamics (random parameters)."""
    x, W_Q, W_K, Xi = et_example(seed=0)
    _, energies = et_descent(x, W_Q, W_K, Xi, beta=0.5, step=0.05, n_steps=100)
    fig = Figure(figsize=(4.2, 2.8), layout="constrained")
    plots.plot_energy_curve(energies, ax=fig.subplots(), title="E along the dynamics")
    return save_figure(fig, path, MIN_FONT_PT)


FIGURES = {
    "04_energy_landscape.png": energy_landscape,
    "04_update_is_attention.png": update_is_attention,
    "04_capacity.png": capacity,
    "04_image_retrieval.png": image_retrieval,
    "04_beta_images.png": beta_images,
    "04_energy_transformer.png": energy_transformer,
}
