"""The Wiener-filter view of the reverse process (the paper's Figure 3).

In the orthonormal Fourier domain the forward process is X_t(f) = √ᾱ X0(f) + √(1−ᾱ) E(f) with white noise,
E|E(f)|² = 1. For stationary data with power spectrum S(f) = E|X0(f)|², the best *linear* ε-predictor is
diagonal in frequency:

    ε̂(f) = √(1−ᾱ) · H_t(f) · X_t(f),      H_t(f) = 1 / (ᾱ S(f) + 1 − ᾱ),

and its error at f is E|ε − ε̂|² = 1 − (1−ᾱ) H_t(f) = ᾱS / (ᾱS + 1 − ᾱ). The same number is the gain of
the matching x0 estimate, x̂0 = (x_t − √(1−ᾱ) ε̂) / √ᾱ, relative to √ᾱ: the share of frequency f that the
optimal denoiser lets through at that step. We plot 1 − (1−ᾱ)H_t(f) over f for several ᾱ: early in the
reverse process (small ᾱ) only the strong low frequencies pass, the weak high frequencies only near the
end — a slim model has to get them right in few late steps. (The paper's caption writes
1 − (1−ᾱ)|H_t(f)|²; with H_t as above that expression goes negative wherever ᾱS < √(1−ᾱ) − (1−ᾱ), so the
curve plotted here is the one that is a gain in [0, 1].)

The empirical check fits the least-squares linear shift-invariant ε-predictor on noisy real images: for
circular convolutions the least-squares problem splits per frequency, c(f) = Σ Re(E X̄_t) / Σ |X_t|², and
c(f) should approach √(1−ᾱ) H_t(f) computed from the images' own spectrum.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from slimdiff.metrics.spectrum import power_spectrum_2d, radial_average

# Timesteps of the training schedule whose ᾱ the analysis shows (reverse order: noise → data).
TIMESTEPS = (999, 800, 600, 400, 250, 100, 25, 0)


def mean_power_2d(images: Tensor, batch_size: int = 256) -> Tensor:
    """S(f) = E|X0(f)|²: the (H, W) power spectrum averaged over images and channels (FFT order)."""
    total = torch.zeros(images.shape[-2:], dtype=torch.float64)
    for batch in images.split(batch_size):
        total += power_spectrum_2d(batch).sum(dim=(0, 1))
    return total / (images.shape[0] * images.shape[1])


def optimal_filter(power: Tensor, alpha_bar: float) -> Tensor:
    """H_t(f) = 1 / (ᾱ S(f) + 1 − ᾱ)."""
    return 1.0 / (alpha_bar * power + 1.0 - alpha_bar)


def passband(power: Tensor, alpha_bar: float) -> Tensor:
    """1 − (1−ᾱ) H_t(f) = ᾱS / (ᾱS + 1 − ᾱ): ε-prediction error of the optimal linear denoiser at f."""
    return 1.0 - (1.0 - alpha_bar) * optimal_filter(power, alpha_bar)


def linear_denoiser(power: Tensor, alphas_cumprod: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """The optimal linear ε-predictor for data with spectrum `power` (H, W), as a model `(x_t, t) → ε̂`:
    ε̂ = F⁻¹(√(1−ᾱ_t) H_t(f) F(x_t)). The floor any linear model reaches, e.g. as an eps-spectrum baseline."""

    def predict(x_t: Tensor, t: Tensor) -> Tensor:
        a = alphas_cumprod[t].double().view(-1, 1, 1, 1)
        gain = (1 - a).sqrt() / (a * power + 1 - a)
        return torch.fft.ifft2(gain * torch.fft.fft2(x_t.double(), norm="ortho"), norm="ortho").real.to(
            x_t.dtype
        )

    return predict


def fit_linear_filter(images: Tensor, alpha_bar: float, seed: int = 0, batch_size: int = 256) -> Tensor:
    """Least-squares circular-convolution ε-predictor on noisy `images`, as its (H, W) frequency response."""
    g = torch.Generator().manual_seed(seed)
    cross = torch.zeros(images.shape[-2:], dtype=torch.float64)
    energy = torch.zeros_like(cross)
    for x0 in images.split(batch_size):
        eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        x_t = alpha_bar**0.5 * x0.double() + (1 - alpha_bar) ** 0.5 * eps
        f_t, f_eps = torch.fft.fft2(x_t, norm="ortho"), torch.fft.fft2(eps, norm="ortho")
        cross += (f_eps * f_t.conj()).real.sum(dim=(0, 1))
        energy += f_t.abs().square().sum(dim=(0, 1))
    return cross / energy


def wiener_analysis(images: Tensor, alpha_bars: dict[int, float], seed: int = 0) -> dict:
    """Per timestep t (with its ᾱ): the radial pass-band curve, and how far the pass-band of the fitted
    least-squares filter, 1 − √(1−ᾱ)·c(f), is from the closed form (max and mean |difference| over all 2-D
    frequencies; both are in [0, 1] units)."""
    power = mean_power_2d(images)
    radii, spectrum = radial_average(power)
    rows = []
    for t, alpha_bar in alpha_bars.items():
        closed = passband(power, alpha_bar)
        fitted = 1 - (1 - alpha_bar) ** 0.5 * fit_linear_filter(images, alpha_bar, seed=seed + t)
        gap = (fitted - closed).abs()
        _, curve = radial_average(closed)
        _, fitted_curve = radial_average(fitted)
        rows.append(
            {
                "t": t,
                "alpha_bar": alpha_bar,
                "passband": curve.tolist(),
                "passband_fitted": fitted_curve.tolist(),
                "half_power_radius": _crossing(radii, curve),
                "fit_max_gap": gap.max().item(),
                "fit_mean_gap": gap.mean().item(),
            }
        )
    return {"radii": radii.tolist(), "power": spectrum.tolist(), "rows": rows}


def _crossing(radii: Tensor, curve: Tensor) -> float | None:
    """The first radius where the pass-band is below ½ (None if it never is)."""
    below = (curve < 0.5).nonzero()
    return radii[below[0, 0]].item() if len(below) else None


def plot_wiener(result: dict, path: str | Path) -> Path:
    """Left: pass-band 1 − (1−ᾱ)H_t(f) per ᾱ (lines: closed form, dots: fitted filter). Right: S(f)."""
    from slimdiff.reporting.plots import figure, save

    fig, (ax, ax_s) = figure(width=9.0, height=3.6, ncols=2)
    radii = result["radii"]
    for row in result["rows"]:
        (line,) = ax.plot(radii[1:], row["passband"][1:], label=f"t={row['t']}, ᾱ={row['alpha_bar']:.3g}")
        ax.plot(radii[1:], row["passband_fitted"][1:], ".", color=line.get_color(), ms=3)
    ax.set_xscale("log")
    ax.set_xlabel("spatial frequency (Nyquist = 1)")
    ax.set_ylabel("1 − (1−ᾱ) H_t(f)")
    ax.set_title("optimal linear denoiser pass-band (dots: LS fit)", fontsize=9)
    ax.legend(fontsize=6)
    ax_s.loglog(radii[1:], result["power"][1:])
    ax_s.set_xlabel("spatial frequency (Nyquist = 1)")
    ax_s.set_ylabel("S(f) = E|X0(f)|²")
    ax_s.set_title("data power spectrum", fontsize=9)
    return save(fig, path)
