"""Power spectra of image sets: the azimuthally averaged spectrum, its low/high-frequency error, plots.

Conventions (used by every spectrum in slimdiff):
- the 2-D FFT is orthonormal, so white noise of variance σ² has power σ² at every frequency and the
  total power over all frequencies equals the sum of squares (Parseval);
- power is averaged over images and channels;
- the radius of frequency (f_y, f_x) is √((f_y/f_Ny)² + (f_x/f_Ny)²), normalised so that the Nyquist
  frequency f_Ny = ½ cycle/pixel has radius 1. Radial bins are one FFT index wide (bin k holds radii
  rounding to k / (S/2) for the smaller side S); the corners beyond radius 1 are left out of the profile.
- low frequencies are radii ≤ `cutoff`, high frequencies radii > `cutoff` (default 0.5: half of Nyquist).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

DEFAULT_CUTOFF = 0.5


def _check_images(images: Tensor, name: str = "images") -> None:
    if images.ndim != 4:
        raise ValueError(f"{name} must be a (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty")


def power_spectrum_2d(x: Tensor) -> Tensor:
    """|F(x)|² (orthonormal 2-D FFT over the last two axes) of a (..., H, W) tensor, same shape."""
    return torch.fft.fft2(x.double(), norm="ortho").abs().square()


def frequency_radius(height: int, width: int) -> Tensor:
    """(H, W) radii of the FFT frequencies in FFT order, with Nyquist = 1 on each axis."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64) * 2
    fx = torch.fft.fftfreq(width, dtype=torch.float64) * 2
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def radial_bins(height: int, width: int) -> tuple[Tensor, Tensor]:
    """(bin index per frequency, (H, W) long with -1 for corners beyond Nyquist) and the bins' radii."""
    half = min(height, width) // 2
    index = torch.round(frequency_radius(height, width) * half).long()
    index[index > half] = -1
    return index, torch.arange(half + 1, dtype=torch.float64) / half


def radial_average(power: Tensor) -> tuple[Tensor, Tensor]:
    """Azimuthal average of a (..., H, W) spectrum in FFT order: (radii (K,), profile (..., K))."""
    height, width = power.shape[-2:]
    index, radii = radial_bins(height, width)
    inside = index >= 0
    flat = power[..., inside]
    bins = index[inside]
    sums = torch.zeros(*flat.shape[:-1], len(radii), dtype=flat.dtype).index_add_(-1, bins, flat)
    counts = torch.bincount(bins, minlength=len(radii)).to(flat.dtype)
    return radii, sums / counts


def radial_power_spectrum(images: Tensor, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """Mean azimuthally averaged power spectrum of (N, C, H, W) images: (radii in [0, 1], power)."""
    _check_images(images)
    total = torch.zeros(images.shape[-2:], dtype=torch.float64)
    for batch in images.split(batch_size):
        total += power_spectrum_2d(batch).sum(dim=(0, 1))
    return radial_average(total / (images.shape[0] * images.shape[1]))


def band_masks(radii: Tensor, cutoff: float = DEFAULT_CUTOFF) -> tuple[Tensor, Tensor]:
    """Boolean masks (low = radius ≤ cutoff, high = radius > cutoff)."""
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must lie in (0, 1) (a fraction of Nyquist), got {cutoff}")
    low = radii <= cutoff
    return low, ~low


def spectrum_error(real: Tensor, fake: Tensor, cutoff: float = DEFAULT_CUTOFF) -> dict[str, float]:
    """Low/high-frequency spectrum error of `fake` against `real`: the mean |log10 P_fake − log10 P_real|
    over the radial bins at radius ≤ cutoff (low, DC included) and > cutoff (high)."""
    _check_images(real, "real")
    _check_images(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"real and fake images differ in shape: {tuple(real.shape[1:])} vs {tuple(fake.shape[1:])}"
        )
    radii, p_real = radial_power_spectrum(real)
    _, p_fake = radial_power_spectrum(fake)
    # The floor keeps an all-zero band (e.g. constant images) finite instead of infinite.
    gap = (torch.log10(p_fake + 1e-12) - torch.log10(p_real + 1e-12)).abs()
    low, high = band_masks(radii, cutoff)
    return {"low": gap[low].mean().item(), "high": gap[high].mean().item()}


def spectral_slope(radii: Tensor, power: Tensor, r_min: float = 0.05, r_max: float = 1.0) -> float:
    """Slope of log P against log r, fitted by least squares over r_min ≤ r ≤ r_max (e.g. −2 for 1/f²)."""
    keep = (radii >= r_min) & (radii <= r_max)
    x, y = torch.log(radii[keep]), torch.log(power[keep])
    x = x - x.mean()
    return ((x * (y - y.mean())).sum() / (x * x).sum()).item()


def plot_spectra(sets: Mapping[str, Tensor], path: str | Path, title: str = "Radial power spectrum") -> Path:
    """Plot the radial power spectrum of several image sets on one log-log axis and save it to `path`."""
    from slimdiff.reporting.plots import figure, save

    if not sets:
        raise ValueError("plot_spectra needs at least one image set")
    fig, ax = figure()
    for name, images in sets.items():
        radii, power = radial_power_spectrum(images)
        ax.loglog(radii[1:], power[1:], label=name)  # radius 0 (DC) has no place on a log axis
    ax.axvline(DEFAULT_CUTOFF, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("spatial frequency (Nyquist = 1)")
    ax.set_ylabel("power")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save(fig, path)
