import math

import numpy as np
import pytest
import torch

from slimdiff.metrics.spectrum import (
    plot_spectra,
    radial_average,
    radial_power_spectrum,
    spectral_slope,
    spectrum_error,
)


def test_white_noise_has_a_flat_spectrum_at_its_variance(white_noise):
    radii, power = radial_power_spectrum(white_noise(256, sigma=0.5))
    assert radii[0] == 0 and radii[-1] == 1 and len(radii) == 17
    # 256·3 images average away the χ² scatter of each bin to a few per cent.
    assert torch.allclose(power[1:], torch.full_like(power[1:], 0.25), rtol=0.1)
    assert abs(spectral_slope(radii, power)) < 0.1


def test_power_law_field_has_slope_minus_two(power_law_field):
    radii, power = radial_power_spectrum(power_law_field(32, exponent=2.0))
    assert spectral_slope(radii, power) == pytest.approx(-2.0, abs=0.1)


def test_parseval_total_power_equals_mean_square(white_noise):
    x = white_noise(8, size=16) + 0.3
    power2d = torch.fft.fft2(x, norm="ortho").abs().square().mean(dim=(0, 1))
    assert power2d.sum().item() == pytest.approx(x.square().mean(dim=(0, 1)).sum().item())


def test_radial_average_of_a_pure_cosine_peaks_at_its_radius():
    size, k = 32, 4  # cos with 4 cycles over 32 pixels: radius 4 / 16 = 0.25
    xs = torch.arange(size, dtype=torch.float64)
    image = torch.cos(2 * math.pi * k * xs / size).expand(1, 1, size, size)
    radii, power = radial_power_spectrum(image)
    assert radii[power.argmax()].item() == pytest.approx(0.25)
    # All the energy sits in two frequencies (±4) of bin 4: its mean is their sum over the bin's size.
    index = torch.round(
        torch.sqrt(torch.fft.fftfreq(size)[:, None] ** 2 + torch.fft.fftfreq(size)[None] ** 2) * size
    )
    assert power[4].item() == pytest.approx(size * size / 2 / (index == 4).sum().item())


def test_radial_average_matches_a_numpy_loop():
    power2d = torch.rand(2, 12, 12, dtype=torch.float64)
    radii, profile = radial_average(power2d)
    fy, fx = np.meshgrid(np.fft.fftfreq(12) * 2, np.fft.fftfreq(12) * 2, indexing="ij")
    bins = np.round(np.hypot(fy, fx) * 6).astype(int)
    for k in range(7):
        np.testing.assert_allclose(profile[:, k].numpy(), power2d.numpy()[:, bins == k].mean(axis=1))


def test_spectrum_error_of_a_scaled_set_is_log_of_the_power_ratio(white_noise):
    x = white_noise(16)
    err = spectrum_error(x, 0.5 * x)
    assert err["low"] == pytest.approx(math.log10(4)) and err["high"] == pytest.approx(math.log10(4))
    assert spectrum_error(x, x) == {"low": 0.0, "high": 0.0}


def test_spectrum_error_separates_low_and_high_bands(white_noise):
    from slimdiff.analysis.blur import gaussian_blur

    x = white_noise(32).float()
    err = spectrum_error(x, gaussian_blur(x, 1.0))
    assert err["high"] > 5 * err["low"]


def test_spectrum_error_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in shape"):
        spectrum_error(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="cutoff"):
        spectrum_error(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), cutoff=1.5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        radial_power_spectrum(torch.zeros(3, 8, 8))


def test_plot_spectra_writes_a_png(tmp_path, white_noise, power_law_field):
    path = plot_spectra({"white": white_noise(4), "1/f²": power_law_field(4, size=32)}, tmp_path / "s.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
