"""Blur sensitivity (the paper's supplementary Figure 1): how a metric grows as real images lose detail.

The paper's protocol (`pairing="same"`, the default): the metric between a set of real images and the *same*
images Gaussian-blurred with variance σ² (kernel 9, reflect padding), so σ² = 0 gives exactly 0 and every
other value is caused by the blur alone. `pairing="halves"` compares one half of the set with the other half
blurred; its σ² = 0 row is the metric's floor between two samples of the same distribution — the scale
against which a blur's effect should be read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from slimdiff.metrics.filters import separable_filter

SIGMA2 = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
KERNEL = 9
PAIRINGS = ("same", "halves")


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
    pairing: str = "same",
) -> list[dict[str, float]]:
    """One row per σ²: {"sigma2": σ², name: metric(reference, blurred test), …} with reference = test = all
    images ("same") or the two halves ("halves"); a metric returning a dict (e.g. SWD per pyramid level) gives
    one column "name key" per entry."""
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")
    if images.shape[0] < 4:
        raise ValueError(f"blur sensitivity needs at least 4 images, got {images.shape[0]}")
    half = images.shape[0] // 2
    reference, test = (images, images) if pairing == "same" else (images[:half], images[half : 2 * half])
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


def plot_blur(rows: list[dict[str, float]], path: str | Path, floor: dict[str, float] | None = None) -> Path:
    """Each metric against σ², one panel per metric (their scales differ); `floor` (the two-halves row at σ² = 0)
    as a dashed line."""
    from slimdiff.reporting.plots import figure, save

    names = [k for k in rows[0] if k != "sigma2"]
    fig, axes = figure(width=3.4 * len(names), height=3.0, ncols=len(names))
    axes = axes if len(names) > 1 else [axes]
    sigma2 = [r["sigma2"] for r in rows]
    for ax, name in zip(axes, names, strict=True):
        ax.plot(sigma2, [r[name] for r in rows], marker="o", label="same images, blurred")
        if floor is not None and name in floor:
            ax.axhline(floor[name], color="0.5", linestyle="--", label="floor: two real halves")
            ax.legend(fontsize=7)
        ax.set_xlabel("blur variance σ² (kernel 9)")
        ax.set_ylabel(name)
        ax.set_title(f"{name} vs blur", fontsize=9)
    return save(fig, path)
