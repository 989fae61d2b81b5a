import torch

from slimdiff.analysis.wiener import (
    fit_linear_filter,
    linear_denoiser,
    mean_power_2d,
    optimal_filter,
    passband,
    wiener_analysis,
)


def test_closed_form_matches_the_least_squares_convolution_on_stationary_signals(
    power_law_field, power_law_spectrum
):
    # Independent oracle: fit a full 8×8 circular convolution ε̂ = h ⊛ x_t by torch.linalg.lstsq in pixel
    # space; by the convolution theorem its DFT must equal √(1−ᾱ)·H_t(f) for the known spectrum S.
    size, alpha_bar, exponent = 8, 0.6, 1.5
    x0 = power_law_field(1500, size=size, exponent=exponent)[:, :1]
    g = torch.Generator().manual_seed(5)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * eps
    shifts = [torch.roll(x_t, (dy, dx), dims=(-2, -1)) for dy in range(size) for dx in range(size)]
    design = torch.stack(shifts, dim=-1).reshape(-1, size * size)
    h = torch.linalg.lstsq(design, eps.reshape(-1, 1)).solution.reshape(size, size)
    response = torch.fft.fft2(h).real
    closed = (1 - alpha_bar) ** 0.5 * optimal_filter(power_law_spectrum(size, exponent), alpha_bar)
    assert torch.allclose(response, closed, atol=0.04), (response - closed).abs().max()


def test_per_frequency_fit_agrees_with_the_closed_form(power_law_field, power_law_spectrum):
    size, exponent = 16, 2.0
    x0 = power_law_field(400, size=size, exponent=exponent)
    power = power_law_spectrum(size, exponent)
    for alpha_bar in (0.05, 0.5, 0.95):
        # Compared as pass-bands 1 − √(1−ᾱ)·c(f), a gain in [0, 1].
        fitted = 1 - (1 - alpha_bar) ** 0.5 * fit_linear_filter(x0, alpha_bar, seed=1)
        gap = (fitted - passband(power, alpha_bar)).abs()
        assert gap.mean() < 0.02 and gap.max() < 0.1, (alpha_bar, gap.mean(), gap.max())
    assert torch.allclose(mean_power_2d(x0), power, rtol=0.25)


def test_passband_is_a_gain_that_opens_with_alpha_bar():
    power = torch.tensor([100.0, 1.0, 0.01], dtype=torch.float64)
    assert torch.allclose(optimal_filter(torch.zeros(1), 0.3), torch.tensor([1 / 0.7]))
    curves = torch.stack([passband(power, a) for a in (0.01, 0.3, 0.9, 0.999)])
    assert (curves >= 0).all() and (curves <= 1).all()
    assert (curves.diff(dim=0) > 0).all()  # later in the reverse process every frequency passes more
    assert (curves.diff(dim=1) < 0).all()  # weaker frequencies pass less
    expected = 0.3 * power / (0.3 * power + 0.7)
    assert torch.allclose(curves[1], expected)


def test_wiener_analysis_rows(power_law_field):
    x0 = power_law_field(64, size=16)
    result = wiener_analysis(x0, {999: 0.005, 500: 0.3, 0: 0.998})
    rows = result["rows"]
    assert [r["t"] for r in rows] == [999, 500, 0] and len(result["radii"]) == 9
    half = [r["half_power_radius"] for r in rows]
    assert half[0] < half[1] and half[2] is None
    assert all(r["fit_mean_gap"] < 0.05 for r in rows)


def test_linear_denoiser_reaches_the_closed_form_error_spectrum(power_law_field, power_law_spectrum):
    # Its ε-error power at f is 1 − (1−ᾱ)H_t(f) in expectation; on a stationary field with known S the
    # measured error spectrum must match it.
    from slimdiff.diffusion import training_scheduler
    from slimdiff.metrics.spectrum import radial_average, radial_power_spectrum

    size, exponent = 16, 2.0
    power = power_law_spectrum(size, exponent)
    scheduler = training_scheduler()
    alpha_bar = scheduler.alphas_cumprod
    denoise = linear_denoiser(power, alpha_bar)
    x0 = power_law_field(256, size=size, exponent=exponent).float()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    for t in (100, 500, 900):
        timesteps = torch.full((len(x0),), t)
        error = denoise(scheduler.add_noise(x0, eps, timesteps), timesteps) - eps
        _, measured = radial_power_spectrum(error)
        _, expected = radial_average(passband(power, alpha_bar[t].item()))
        assert torch.allclose(measured, expected, atol=0.05, rtol=0.1), (t, measured, expected)
