"""Sliced Wasserstein distance between image sets on Laplacian-pyramid patches, per pyramid level.

Each image is split into a Laplacian pyramid (5-tap binomial filter, levels down to `min_resolution`,
the coarsest level being the low-pass residual), so each level holds one octave of spatial frequency:
the finest level holds the highest frequencies. From every level, `patches_per_image` random 7×7
neighbourhoods become descriptors (7·7·C values). Both sets are normalised with the per-channel mean
and standard deviation of the *real* descriptors (so a set that lost energy in a band is penalised),
and the distance is the mean over `directions` random unit projections of the 1-D Wasserstein-1
distance between the sorted projections, ×10³ (the scale of Karras et al., 2018).

Patch positions come from `seed`, identically for both sets when they have the same shape, so a set
compared with itself scores exactly 0 and paired comparisons (real vs blurred real) have low variance.
Needs no network weights: the metric that always works offline.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from slimdiff.metrics.filters import separable_filter

PATCH = 7
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _blur(x: Tensor, gain: float = 1.0) -> Tensor:
    """Separable 5×5 binomial blur with reflect padding, per channel."""
    return separable_filter(x, _BINOMIAL * gain**0.5)


def _downsample(x: Tensor) -> Tensor:
    return _blur(x)[..., ::2, ::2]


def _upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    up = torch.zeros(*x.shape[:2], *size, dtype=x.dtype, device=x.device)
    up[..., ::2, ::2] = x
    return _blur(up, gain=4.0)  # zero insertion keeps 1 sample in 4; the gain restores the mean


def laplacian_pyramid(images: Tensor, min_resolution: int = 16) -> list[Tensor]:
    """Band-pass levels from finest to coarsest; the last is the low-pass image at ≤ min_resolution·2."""
    levels, current = [], images
    while min(current.shape[-2:]) > min_resolution and min(current.shape[-2:]) % 2 == 0:
        smaller = _downsample(current)
        levels.append(current - _upsample(smaller, current.shape[-2:]))
        current = smaller
    levels.append(current)
    return levels


def _patch_positions(n: int, height: int, width: int, per_image: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, height - PATCH + 1, (n, per_image), generator=g)
    xs = torch.randint(0, width - PATCH + 1, (n, per_image), generator=g)
    return ys, xs


def _extract_patches(level: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """(N·P, C, 7, 7) neighbourhoods of a (N, C, H, W) level at the given top-left corners (N, P)."""
    offsets = torch.arange(PATCH)
    iy = ys[:, :, None, None] + offsets[None, None, :, None]
    ix = xs[:, :, None, None] + offsets[None, None, None, :]
    n = torch.arange(level.shape[0])[:, None, None, None]
    patches = level.permute(0, 2, 3, 1)[n, iy, ix]  # (N, P, 7, 7, C)
    return patches.permute(0, 1, 4, 2, 3).reshape(-1, level.shape[1], PATCH, PATCH)


def level_descriptors(
    images: Tensor,
    level: int,
    patches_per_image: int = 128,
    min_resolution: int = 16,
    seed: int = 0,
    batch_size: int = 256,
) -> Tensor:
    """The (N·P, C, 7, 7) patch descriptors of pyramid level `level` (0 = finest) of (N, C, H, W) images.
    One level at a time keeps memory to one level's descriptors; the pyramid itself is cheap to redo."""
    if images.ndim != 4 or min(images.shape[-2:]) < PATCH:
        raise ValueError(f"SWD needs (N, C, H, W) images at least {PATCH}×{PATCH}, got {tuple(images.shape)}")
    chunks, positions = [], None
    for start in range(0, images.shape[0], batch_size):
        band = laplacian_pyramid(images[start : start + batch_size].float(), min_resolution)[level]
        if positions is None:
            positions = _patch_positions(images.shape[0], *band.shape[-2:], patches_per_image, seed + level)
        ys, xs = positions
        stop = start + band.shape[0]
        chunks.append(_extract_patches(band, ys[start:stop], xs[start:stop]))
    return torch.cat(chunks)


def sliced_wasserstein(a: Tensor, b: Tensor, directions: int = 512, seed: int = 0) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between projections of the
    rows of `a` and `b` (equal row counts)."""
    if a.shape != b.shape:
        raise ValueError(f"descriptor sets must have equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    d = torch.randn(a.shape[1], directions, generator=torch.Generator().manual_seed(seed))
    d = d / d.norm(dim=0, keepdim=True)
    chunk = max(1, 2**22 // len(a))  # directions per pass: keeps each projection matrix near 16 MiB
    total = 0.0
    for start in range(0, directions, chunk):
        part = d[:, start : start + chunk].T
        # numpy's vectorised sort is an order of magnitude faster than torch.sort on CPU.
        pa = np.sort((part @ a.T).numpy(), axis=1)
        pb = np.sort((part @ b.T).numpy(), axis=1)
        total += float(np.abs(pa - pb).mean(axis=1).sum())
    return total / directions


def swd(
    real: Tensor,
    fake: Tensor,
    *,
    patches_per_image: int = 128,
    directions: int = 512,
    min_resolution: int = 16,
    seed: int = 0,
) -> dict[str, float]:
    """SWD ×10³ between two (N, C, H, W) image sets, per Laplacian level ("32x32", "16x16", …, finest
    first) and their "mean"."""
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"real and fake images differ in shape: {tuple(real.shape[1:])} vs {tuple(fake.shape[1:])}"
        )
    kwargs = {"patches_per_image": patches_per_image, "min_resolution": min_resolution, "seed": seed}
    shapes = [band.shape[-2:] for band in laplacian_pyramid(real[:1].float(), min_resolution)]
    g = torch.Generator().manual_seed(seed)
    result: dict[str, float] = {}
    for i, (h, w) in enumerate(shapes):
        a, b = level_descriptors(real, i, **kwargs), level_descriptors(fake, i, **kwargs)
        # Unequal set sizes: compare equally many descriptors, drawn at random from the larger set.
        n = min(len(a), len(b))
        a = a[torch.randperm(len(a), generator=g)[:n]] if len(a) > n else a
        b = b[torch.randperm(len(b), generator=g)[:n]] if len(b) > n else b
        mean = a.mean(dim=(0, 2, 3), keepdim=True)
        std = a.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
        a, b = a.sub_(mean).div_(std).flatten(1), b.sub_(mean).div_(std).flatten(1)  # in place: large sets
        result[f"{h}x{w}"] = 1e3 * sliced_wasserstein(a, b, directions, seed=seed + i)
    result["mean"] = sum(result.values()) / len(result)
    return result
