"""Blur sensitivity (the paper's supplementary Figure 1): how a metric grows as real images lose detail.

Reference = one half of a real set; test = the other half, Gaussian-blurred with variance σ² (kernel 9,
reflect padding). The σ² = 0 row is the metric's floor between two real halves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from slimdiff.metrics.filters import separable_filter

SIGMA2 = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
KERNEL = 9


def gaussian_kernel(sigma2: float, size: int = KERNEL) -> Tensor:
    """Normalised 1-D Gaussian taps of variance σ² on `size` integer offsets (a delta when σ² = 0)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    if sigma2 < 0:
        raise ValueError(f"σ² must be ≥ 0, got {sigma2}")
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    if sigma2 == 0:
        return (offsets == 0).double()
    taps = torch.exp(-(offsets**2) / (2 * sigma2))
    return taps / taps.sum()


def gaussian_blur(images: Tensor, sigma2: float, size: int = KERNEL) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) images with reflect padding."""
    return separable_filter(images, gaussian_kernel(sigma2, size).to(images.dtype))


def blur_sensitivity(
    images: Tensor,
    metrics: Mapping[str, Callable[[Tensor, Tensor], float | dict[str, float]]],
    sigma2s: tuple[float, ...] = SIGMA2,
    progress: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """One row per σ²: {"sigma2": σ², name: metric(reference half, blurred other half), …}; a metric returning
    a dict (e.g. SWD per pyramid level) gives one column "name key" per entry."""
    if images.shape[0] < 4:
        raise ValueError(f"blur sensitivity needs at least 4 images (two halves), got {images.shape[0]}")
    half = images.shape[0] // 2
    reference, test = images[:half], images[half : 2 * half]
    rows = []
    for sigma2 in sigma2s:
        blurred = gaussian_blur(test, sigma2)
        row = {"sigma2": sigma2}
        for name, metric in metrics.items():
            value = metric(reference, blurred)
            row.update(
                {f"{name} {k}": v for k, v in value.items()} if isinstance(value, dict) else {name: value}
            )
        rows.append(row)
        if progress is not None:
            progress()
    return rows


def plot_blur(rows: list[dict[str, float]], path: str | Path) -> Path:
    """Each metric against σ², one panel per metric (their scales differ)."""
    from slimdiff.reporting.plots import figure, save

    names = [k for k in rows[0] if k != "sigma2"]
    fig, axes = figure(width=3.4 * len(names), height=3.0, ncols=len(names))
    axes = axes if len(names) > 1 else [axes]
    sigma2 = [r["sigma2"] for r in rows]
    for ax, name in zip(axes, names, strict=True):
        ax.plot(sigma2, [r[name] for r in rows], marker="o")
        ax.set_xlabel("blur variance σ² (kernel 9)")
        ax.set_ylabel(name)
        ax.set_title(f"{name} vs blur", fontsize=9)
    return save(fig, path)
