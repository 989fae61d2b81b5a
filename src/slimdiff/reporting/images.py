"""Image tensors ↔ pictures: (N, C, H, W) floats in [-1, 1] to uint8 arrays, PIL images and PNG grids."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] (any shape) → uint8 in [0, 255]; values outside [-1, 1] are clipped."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] → (N, H, W, C) uint8 (values outside [-1, 1] are clipped)."""
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
    return quantize(images).permute(0, 2, 3, 1).cpu().numpy()


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """One picture of all `images`, `nrow` per row (default: a near-square grid), on a white background."""
    pixels = to_uint8(images)
    n, h, w, c = pixels.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, np.uint8)
    for i, image in enumerate(pixels):
        y, x = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        canvas[y : y + h, x : x + w] = image
    return Image.fromarray(canvas.squeeze(-1) if c == 1 else canvas)


def save_grid(
    images: torch.Tensor, path: str | Path, nrow: int | None = None, upscale: int = 1, padding: int = 2
) -> Path:
    """Write a PNG grid of `images`; `upscale` enlarges small images (nearest) so a person can see them. Written
    beside `path` and renamed into place: a process stopped mid-write leaves no truncated PNG."""
    picture = grid(images, nrow, padding)
    if upscale > 1:
        picture = picture.resize((picture.width * upscale, picture.height * upscale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        picture.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
