"""Haar DWT / IDWT against PyWavelets, perfect reconstruction, gradients and shape errors."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from slimdiff.wavelets import dwt2, gated_dwt2, gated_idwt2, idwt2

TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-13}


def _x(dtype: torch.dtype, shape=(2, 3, 8, 6)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dwt2_matches_pywavelets_band_for_band(dtype):
    x = _x(dtype)
    ca, (ch, cv, cd) = pywt.dwt2(x.double().numpy(), "haar", axes=(-2, -1))
    for ours, theirs in zip(dwt2(x), (ca, ch, cv, cd), strict=True):
        assert ours.dtype == dtype and ours.shape == (2, 3, 4, 3)
        np.testing.assert_allclose(ours.double().numpy(), theirs, atol=TOLERANCE[dtype], rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_idwt2_matches_pywavelets(dtype):
    bands = [_x(dtype, (2, 3, 4, 5)) * (k + 1) for k in range(4)]
    theirs = pywt.idwt2(
        (bands[0].double().numpy(), tuple(b.double().numpy() for b in bands[1:])), "haar", axes=(-2, -1)
    )
    np.testing.assert_allclose(idwt2(*bands).double().numpy(), theirs, atol=4 * TOLERANCE[dtype], rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_perfect_reconstruction_both_ways(dtype):
    x = _x(dtype, (2, 5, 16, 10))
    torch.testing.assert_close(idwt2(*dwt2(x)), x, atol=4 * TOLERANCE[dtype], rtol=0)
    bands = [_x(dtype, (1, 2, 3, 4)) + k for k in range(4)]
    for ours, original in zip(dwt2(idwt2(*bands)), bands, strict=True):
        torch.testing.assert_close(ours, original, atol=8 * TOLERANCE[dtype], rtol=0)


def test_orthonormal_transform_preserves_energy():
    x = _x(torch.float64)
    energy = sum(band.square().sum() for band in dwt2(x))
    torch.testing.assert_close(energy, x.square().sum(), atol=1e-10, rtol=0)


def test_constant_image_has_only_an_approximation_band():
    ll, lh, hl, hh = dwt2(torch.full((1, 1, 4, 4), 3.0))
    assert torch.equal(ll, torch.full((1, 1, 2, 2), 6.0))  # (3 + 3 + 3 + 3) / 2
    assert not lh.any() and not hl.any() and not hh.any()


def test_gradient_of_dwt2_is_its_inverse():
    # For an orthonormal transform D, ∇_x ⟨D x, w⟩ = Dᵀ w = D⁻¹ w.
    x = _x(torch.float64).requires_grad_()
    weights = [_x(torch.float64, (2, 3, 4, 3)) * (k + 2) for k in range(4)]
    sum((band * w).sum() for band, w in zip(dwt2(x), weights, strict=True)).backward()
    torch.testing.assert_close(x.grad, idwt2(*weights), atol=1e-12, rtol=0)


def test_gradients_flow_through_idwt2():
    bands = tuple(_x(torch.float64, (1, 2, 3, 3)).requires_grad_() for _ in range(4))
    assert torch.autograd.gradcheck(idwt2, bands)


@pytest.mark.parametrize("shape", [(1, 2, 5, 6), (1, 2, 6, 7), (3, 1, 9, 9)])
def test_odd_size_is_a_clear_error_naming_the_shape(shape):
    with pytest.raises(ValueError, match=r"even height and width, got shape " + re_shape(shape)):
        dwt2(torch.zeros(shape))


def test_wrong_rank_and_mismatched_bands_are_clear_errors():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) tensor, got shape \(4, 4\)"):
        dwt2(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="must share one shape"):
        idwt2(
            torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3)
        )


def _gates(dtype: torch.dtype, batch: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.rand(batch, 4, channels, 1, 1, generator=torch.Generator().manual_seed(5), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gated_dwt2_is_the_gate_weighted_sum_of_the_bands(dtype):
    x, g = _x(dtype), _gates(dtype)
    expected = sum(g[:, b] * band for b, band in enumerate(dwt2(x)))
    torch.testing.assert_close(gated_dwt2(x, g), expected, atol=8 * TOLERANCE[dtype], rtol=0)
    torch.testing.assert_close(gated_dwt2(x, g.flatten(2)), expected, atol=8 * TOLERANCE[dtype], rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gated_idwt2_inverts_gated_copies_of_the_input(dtype):
    x, g = _x(dtype, (2, 3, 5, 4)), _gates(dtype)
    expected = idwt2(*(g[:, b] * x for b in range(4)))
    torch.testing.assert_close(gated_idwt2(x, g), expected, atol=8 * TOLERANCE[dtype], rtol=0)


def test_gated_transforms_have_the_gradients_of_their_definitions():
    x, g = _x(torch.float64).requires_grad_(), _gates(torch.float64).requires_grad_()
    small = x[..., :4, :3]
    cases = [
        (gated_dwt2(x, g), sum(g[:, b] * band for b, band in enumerate(dwt2(x)))),
        (gated_idwt2(small, g), idwt2(*(g[:, b] * small for b in range(4)))),
    ]
    for fused, reference in cases:
        w = torch.randn(fused.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
        ours = torch.autograd.grad((fused * w).sum(), (x, g))
        theirs = torch.autograd.grad((reference * w).sum(), (x, g))
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_gated_dwt2_rejects_odd_sizes():
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 7, 6\)"):
        gated_dwt2(torch.zeros(2, 3, 7, 6), _gates(torch.float32))


def re_shape(shape: tuple[int, ...]) -> str:
    return r"\(" + ", ".join(map(str, shape)) + r"\)"
