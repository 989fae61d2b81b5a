"""Synthetic image sets with known spectra, shared by the metric and analysis tests."""

from __future__ import annotations

import torch
from torch import Tensor

from slimdiff.metrics.spectrum import frequency_radius


def white_noise(n: int, size: int = 32, sigma: float = 1.0, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return sigma * torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)


def power_law_field(n: int, size: int = 64, exponent: float = 2.0, seed: int = 0) -> Tensor:
    """Gaussian random fields with power spectrum ∝ 1/r^exponent (r = radial frequency, Nyquist = 1)."""
    amplitude = frequency_radius(size, size).clamp_min(2 / size) ** (-exponent / 2)
    spectrum = torch.fft.fft2(white_noise(n, size, seed=seed)) * amplitude
    return torch.fft.ifft2(spectrum).real
