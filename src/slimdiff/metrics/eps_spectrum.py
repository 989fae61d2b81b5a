"""Prediction-error spectrum: what a denoiser gets wrong, per spatial frequency and per timestep.

The paper's Table 1 (low-/high-frequency error) measured on the model itself instead of on samples.
Held-out clean images x0 are noised, x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, at timesteps drawn in `buckets`
equal slices of [0, T), with noise and timesteps from one seeded generator, so every model sees exactly
the same x_t. The error e = ε̂(x_t, t) − ε (or ε̂_student − ε̂_teacher when a teacher is given) goes
through the orthonormal 2-D FFT; its power |F(e)|² is averaged over images and channels and

- azimuthally averaged per timestep bucket → the (bucket × radius) heat map;
- summed over the frequencies at radius ≤ cutoff (low) and > cutoff (high, including the corners beyond
  Nyquist) and divided by H·W → two numbers per bucket whose sum is the mean squared error (Parseval).

No sampling is involved, so it is cheap and has low variance across seeds. `images` are the model's own
x0: pixels in [-1, 1] for pixel-space models (for latent models, pass encoded latents).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from slimdiff.diffusion import add_noise
from slimdiff.metrics.spectrum import DEFAULT_CUTOFF, frequency_radius, power_spectrum_2d, radial_average


@dataclass
class EpsSpectrum:
    """Per timestep bucket b and radius k: `power[b, k]` (radial mean error power), `low[b]`, `high[b]`."""

    bucket_edges: list[int]
    radii: Tensor
    power: Tensor
    low: Tensor
    high: Tensor
    cutoff: float

    def summary(self) -> dict:
        """JSON-ready table: overall low/high error (mean over buckets) and the per-bucket rows."""
        return {
            "low": self.low.mean().item(),
            "high": self.high.mean().item(),
            "cutoff": self.cutoff,
            "buckets": [
                {"t_from": a, "t_to": b, "low": lo.item(), "high": hi.item()}
                for a, b, lo, hi in zip(
                    self.bucket_edges[:-1], self.bucket_edges[1:], self.low, self.high, strict=True
                )
            ],
        }

    def table(self) -> list[str]:
        """Markdown rows: the low/high error per timestep bucket and overall."""
        rows = ["| timesteps | low-frequency error | high-frequency error |", "|---|---|---|"]
        for a, b, lo, hi in zip(
            self.bucket_edges[:-1], self.bucket_edges[1:], self.low, self.high, strict=True
        ):
            rows.append(f"| {a}–{b - 1} | {lo:.4g} | {hi:.4g} |")
        rows.append(f"| all | {self.low.mean():.4g} | {self.high.mean():.4g} |")
        return rows


def _predict(model: nn.Module | Callable, x_t: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
    out = model(x_t, t) if labels is None else model(x_t, t, class_labels=labels)
    return getattr(out, "sample", out)  # diffusers models wrap the tensor; plain callables need not


@torch.no_grad()
def eps_error_spectrum(
    unet: nn.Module | Callable,
    images: Tensor,
    scheduler: DDPMScheduler,
    *,
    buckets: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    teacher: nn.Module | Callable | None = None,
    cutoff: float = DEFAULT_CUTOFF,
    progress: Callable[[int], None] | None = None,
    class_labels: Tensor | None = None,
) -> EpsSpectrum:
    """Power spectrum of ε̂ − ε (or student − teacher) on clean `images` (N, C, H, W), per timestep bucket.

    `unet(x_t, t)` returns ε̂ (a tensor or an object with `.sample`); `progress(n)` is called after each
    batch with the number of images just processed (once per bucket per batch). Class-conditional models get
    `class_labels` (N,), each image's class, as `class_labels=` (the teacher too)."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    if class_labels is not None and class_labels.shape != images.shape[:1]:
        raise ValueError(f"class_labels must hold one class per image, got shape {tuple(class_labels.shape)}")
    if not 0 < cutoff < 1:
        raise ValueError(f"cutoff must lie in (0, 1) (a fraction of Nyquist), got {cutoff}")
    T = scheduler.config.num_train_timesteps
    if not 1 <= buckets <= T:
        raise ValueError(f"buckets must lie in [1, {T}], got {buckets}")
    for model in (unet, teacher):
        if isinstance(model, nn.Module):
            model.eval()
    n, _, height, width = images.shape
    edges = [round(b * T / buckets) for b in range(buckets + 1)]
    low_mask = frequency_radius(height, width) <= cutoff
    spectra = torch.zeros(buckets, height, width, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    ᾱ = scheduler.alphas_cumprod
    for b in range(buckets):
        for start in range(0, n, batch_size):
            x0 = images[start : start + batch_size]
            labels = None if class_labels is None else class_labels[start : start + batch_size]
            t = torch.randint(edges[b], edges[b + 1], (x0.shape[0],), generator=g)
            eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
            x_t = add_noise(x0, eps, ᾱ[t])
            target = eps if teacher is None else _predict(teacher, x_t, t, labels)
            error = _predict(unet, x_t, t, labels) - target
            spectra[b] += power_spectrum_2d(error).sum(dim=(0, 1))
            if progress is not None:
                progress(x0.shape[0])
    spectra /= n * images.shape[1]
    radii, power = radial_average(spectra)
    low = spectra[:, low_mask].sum(dim=1) / (height * width)
    high = spectra[:, ~low_mask].sum(dim=1) / (height * width)
    return EpsSpectrum(edges, radii, power, low, high, cutoff)


def plot_eps_spectrum(results: Mapping[str, EpsSpectrum], path: str | Path) -> Path:
    """Heat maps (timestep bucket × radius) of log10 error power, one panel per model, on one colour scale."""
    from matplotlib.colors import LogNorm

    from slimdiff.reporting.plots import figure, save

    if not results:
        raise ValueError("plot_eps_spectrum needs at least one result")
    powers = [r.power.clamp_min(1e-12) for r in results.values()]
    norm = LogNorm(vmin=min(p.min().item() for p in powers), vmax=max(p.max().item() for p in powers))
    fig, axes = figure(width=1.0 + 3.4 * len(results), height=3.4, ncols=len(results))
    axes = axes if len(results) > 1 else [axes]
    for ax, (name, result), power in zip(axes, results.items(), powers, strict=True):
        half_bin = 0.5 * (result.radii[1] - result.radii[0]).item()  # bins are centred on their radius
        extent = (-half_bin, 1.0 + half_bin, result.bucket_edges[-1], result.bucket_edges[0])
        image = ax.imshow(power.numpy(), aspect="auto", norm=norm, extent=extent, cmap="magma")
        ax.axvline(result.cutoff, color="white", lw=0.8, ls="--")
        ax.set_xlabel("spatial frequency (Nyquist = 1)")
        ax.set_ylabel("timestep t")
        ax.set_title(f"{name}\nlow {result.low.mean():.3g} · high {result.high.mean():.3g}", fontsize=9)
    fig.colorbar(image, ax=list(axes), label="error power |F(ε̂−ε)|²")
    return save(fig, path)
