"""Small binary images drawn from formulas (nothing is downloaded): patterns to store and retrieve.

Every image is a ``size × size`` grid of ±1 (+1 = ink). The shapes are simple on purpose: they
overlap a lot (all have ink near the centre), which is what makes them hard for a classical
Hopfield network and easy for a modern one.
"""

from __future__ import annotations

import torch

SHAPES = ("ring", "disc", "square", "cross", "x", "plus", "triangle", "stripes", "checker", "H", "T", "L")


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    # pixel centres in [-1, 1]
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    return torch.meshgrid(c, c, indexing="ij")  # (size, size) row (y, downwards) and column (x) coordinates


def _shape(name: str, size: int) -> torch.Tensor:
    y, x = _grid(size)
    r = (x**2 + y**2).sqrt()
    w = 1.4 / size  # a stroke is about 1.6 · 2w · size/2 ≈ 2 pixels wide
    ink = {
        "ring": (r - 0.65).abs() < 1.6 * w,
        "disc": r < 0.55,
        "square": ((x.abs() - 0.65).abs() < 1.6 * w) & (y.abs() < 0.65 + 1.6 * w)
        | ((y.abs() - 0.65).abs() < 1.6 * w) & (x.abs() < 0.65 + 1.6 * w),
        "cross": ((x - y).abs() < 2 * w) | ((x + y).abs() < 2 * w),
        "x": (((x - y).abs() < 2 * w) | ((x + y).abs() < 2 * w)) & (r < 0.85),
        "plus": (x.abs() < 1.6 * w) | (y.abs() < 1.6 * w),
        "triangle": (y < 0.6) & (y > 1.6 * x.abs() - 0.7),
        "stripes": torch.remainder(torch.floor((x + 1) * size / 4), 2) == 0,
        "checker": torch.remainder(torch.floor((x + 1) * 2) + torch.floor((y + 1) * 2), 2) == 0,
        "H": ((x.abs() - 0.5).abs() < 1.6 * w) & (y.abs() < 0.75) | (y.abs() < 1.6 * w) & (x.abs() < 0.5),
        "T": ((y + 0.6).abs() < 1.6 * w) & (x.abs() < 0.7) | (x.abs() < 1.6 * w) & (y > -0.6) & (y < 0.75),
        "L": ((x + 0.5).abs() < 1.6 * w) & (y.abs() < 0.75) | ((y - 0.6).abs() < 1.6 * w) & (x > -0.5) & (x < 0.6),
    }[name]
    return torch.where(ink, 1.0, -1.0).to(torch.float64)


def binary_images(size: int = 16, names: tuple[str, ...] = SHAPES) -> tuple[list[str], torch.Tensor]:
    """``(names, images)``: the named shapes as a float64 tensor (N, size, size) of ±1."""
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise ValueError(f"unknown shapes {unknown}; available: {SHAPES}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    return list(names), torch.stack([_shape(n, size) for n in names])


def corrupt_images(images: torch.Tensor, kind: str, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Corrupted copies of ±1 images (N, H, W).

    ``kind="flip"``: each pixel flips with probability ``amount``; ``kind="mask"``: the bottom
    ``amount`` fraction of the rows is set to 0 (unknown: neither ink nor paper), a partly erased
    picture to complete.
    """
    if kind == "flip":
        flip = torch.rand(images.shape, generator=generator, dtype=torch.float64) < amount
        return torch.where(flip, -images, images)
    if kind == "mask":
        out = images.clone()
        rows = round(images.shape[-2] * amount)
        if rows:
            out[..., images.shape[-2] - rows:, :] = 0.0
        return out
    raise ValueError(f"kind must be 'flip' or 'mask', got {kind!r}")
