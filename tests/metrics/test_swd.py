import pytest
import torch

from slimdiff.analysis.blur import gaussian_blur
from slimdiff.metrics.swd import _downsample, _upsample, laplacian_pyramid, sliced_wasserstein, swd


def test_laplacian_pyramid_reconstructs_the_image():
    x = torch.rand(2, 3, 64, 64)
    levels = laplacian_pyramid(x, min_resolution=16)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16]
    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        rebuilt = band + _upsample(rebuilt, band.shape[-2:])
    assert torch.allclose(rebuilt, x, atol=1e-5)


def test_pyramid_filters_preserve_a_constant_image():
    x = torch.full((1, 1, 16, 16), 0.7)
    assert torch.allclose(_upsample(_downsample(x), (16, 16)), x)


def test_sliced_wasserstein_of_shifted_points_is_the_mean_projected_shift():
    # Shifting every point by s moves each 1-D projection by ⟨d, s⟩: W1 = mean over d of |⟨d, s⟩|,
    # and for unit d uniform on the sphere in D dims E|⟨d, e⟩| = Γ(D/2) / (√π Γ((D+1)/2)).
    a = torch.randn(2000, 3, generator=torch.Generator().manual_seed(0))
    s = torch.tensor([3.0, 0.0, 0.0])
    value = sliced_wasserstein(a, a + s, directions=4096)
    expected = 3.0 * 0.5  # D = 3: Γ(1.5) / (√π Γ(2)) = 1/2
    assert value == pytest.approx(expected, rel=0.03)


def test_swd_of_a_set_with_itself_is_zero_and_levels_are_named(power_law_field):
    x = power_law_field(16, size=32).float()
    result = swd(x, x)
    assert set(result) == {"32x32", "16x16", "mean"}
    assert all(v == 0.0 for v in result.values())


def test_swd_between_two_samples_of_one_distribution_is_small_against_blur(power_law_field):
    x = power_law_field(64, size=32, exponent=1.0).float()
    floor = swd(x[:32], x[32:])["mean"]
    assert floor < 0.5 * swd(x[:32], gaussian_blur(x[32:], 1.0))["mean"]


def test_swd_grows_monotonically_with_blur(power_law_field):
    x = power_law_field(16, size=32, exponent=1.0).float()
    finest = [
        swd(x, gaussian_blur(x, s2), patches_per_image=32, directions=128)["32x32"]
        for s2 in (0.1, 0.5, 1.0, 2.0, 5.0)
    ]
    assert all(a < b for a, b in zip(finest, finest[1:], strict=False)), finest


def test_swd_blur_hits_the_finest_level_hardest(white_noise):
    x = white_noise(16).float()
    result = swd(x, gaussian_blur(x, 1.0), patches_per_image=64)
    assert result["32x32"] > result["16x16"]


def test_swd_handles_unequal_set_sizes_and_bad_input(white_noise):
    x = white_noise(20).float()
    assert swd(x, x[:10])["mean"] > 0
    with pytest.raises(ValueError, match="differ in shape"):
        swd(x, x[:, :, :16, :16])
    with pytest.raises(ValueError, match="at least 7"):
        swd(x[:, :, :4, :4], x[:, :, :4, :4])
