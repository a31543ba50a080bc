"""Saving the slide decks' figures: one resolution, no timestamp, every text's size recorded.

Kept apart from :mod:`course_lib.tools.figures` (which draws every deck's figures) so that the modules
drawing one deck's figures can save through it without importing all the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

DPI = 150


def save_figure(fig: Figure, path: Path, min_points: float | None = None) -> Path:
    """Save ``fig`` as the decks save figures; first raise every text to at least ``min_points`` if given
    (projected slides shrink figures)."""
    if min_points is not None:
        for text in fig.findobj(Text):
            if text.get_fontsize() < min_points:
                text.set_fontsize(min_points)
    # metadata={"Software": None} drops the only varying PNG text chunk: same inputs, same bytes.
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    TEXT_SIZES[Path(path).name] = figure_text(fig)
    return path


@dataclass(frozen=True)
class FigureText:
    """The pixel size of a saved figure and every text drawn in it, as (font size in points, text)."""

    width_px: float
    height_px: float
    texts: tuple[tuple[float, str], ...]


TEXT_SIZES: dict[str, FigureText] = {}
"""File name -> :class:`FigureText` of every figure saved by :func:`save_figure` in this process.
The slide build turns it into on-slide pixel sizes to find text too small to read on a projector."""


def figure_text(fig: Figure) -> FigureText:
    """The visible, non-empty texts of a drawn figure (titles, labels, tick labels, legends, annotations)."""
    # Draw once more on a fresh canvas: offset boxes (legends) place their texts in pixels during a draw,
    # so every extent and the canvas size must come from the same draw.
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = renderer.get_canvas_width_height()
    texts = []
    for t in fig.findobj(Text):
        label = t.get_text().strip()
        if not (label and t.get_visible() and (t.axes is None or t.axes.get_visible())):
            continue
        extent = t.get_window_extent(renderer)
        if extent.x1 < 0 or extent.x0 > width or extent.y1 < 0 or extent.y0 > height:
            continue  # tick labels outside the view are kept by matplotlib but never drawn
        texts.append((float(t.get_fontsize()), label))
    return FigureText(fig.get_figwidth() * DPI, fig.get_figheight() * DPI, tuple(sorted(texts)))
