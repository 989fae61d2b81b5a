"""Orthonormal 2-D Haar wavelet transform on (B, C, H, W) tensors.

For every 2×2 block [[a, b], [c, d]] the four sub-bands are

    LL = (a + b + c + d) / 2      approximation          (pywt cA)
    LH = (a + b - c - d) / 2      top minus bottom rows  (pywt cH, horizontal detail)
    HL = (a - b + c - d) / 2      left minus right cols  (pywt cV, vertical detail)
    HH = (a - b - c + d) / 2      diagonal               (pywt cD)

so `dwt2(x)` equals `pywt.dwt2(x, "haar")` band for band, and `idwt2` is its exact inverse.

`gated_dwt2` and `gated_idwt2` are the wavelet-gating forms of the two transforms, with band weights per
sample and channel, computed directly on the 2×2 blocks in one to four passes instead of about twenty
element-wise ones. (A grouped convolution would be faster still, but its groups would depend on the batch
size, which ONNX cannot express.)
"""

from __future__ import annotations

import torch


def _check_rank(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")


def _check_even(x: torch.Tensor) -> None:
    _check_rank(x)
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(
            f"Haar DWT needs even height and width, got shape {tuple(x.shape)}; crop or pad the input"
        )


def dwt2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the Haar DWT: (B, C, H, W) → four (B, C, H/2, W/2) bands (LL, LH, HL, HH)."""
    _check_even(x)
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    top, bottom = a + b, c + d
    left_minus_right_top, left_minus_right_bottom = a - b, c - d
    ll = (top + bottom) / 2
    lh = (top - bottom) / 2
    hl = (left_minus_right_top + left_minus_right_bottom) / 2
    hh = (left_minus_right_top - left_minus_right_bottom) / 2
    return ll, lh, hl, hh


def idwt2(ll: torch.Tensor, lh: torch.Tensor, hl: torch.Tensor, hh: torch.Tensor) -> torch.Tensor:
    """Inverse of `dwt2`: four (B, C, h, w) bands → (B, C, 2h, 2w)."""
    if not (ll.shape == lh.shape == hl.shape == hh.shape):
        raise ValueError(
            f"all four bands must share one shape, got {[tuple(t.shape) for t in (ll, lh, hl, hh)]}"
        )
    a = (ll + lh + hl + hh) / 2
    b = (ll + lh - hl - hh) / 2
    c = (ll - lh + hl - hh) / 2
    d = (ll - lh - hl + hh) / 2
    # Interleave the four pixels of every 2×2 block back into place.
    top = torch.stack((a, b), dim=-1).flatten(-2)
    bottom = torch.stack((c, d), dim=-1).flatten(-2)
    return torch.stack((top, bottom), dim=-2).flatten(-3, -2)


def _haar_taps(gates: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
    # Σ_b g_b · band_b weighs the four pixels of every 2×2 block by the IDWT of the four gates, so a gated
    # transform is a 2×2 filter per sample and channel: B·4·C gates → (B, C, 2, 2) taps.
    return idwt2(*gates.reshape(batch, 4, channels, 1, 1).unbind(1))


def gated_dwt2(x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Σ_b g_b ⊙ DWT(x)_b for (B, C, H, W) `x` and (B, 4, C[, 1, 1]) `gates` (LL, LH, HL, HH) → (B, C, H/2, W/2)."""
    _check_even(x)
    taps = _haar_taps(gates, *x.shape[:2])[..., None, None]
    out = x[..., 0::2, 0::2] * taps[:, :, 0, 0]
    for p, q in ((0, 1), (1, 0), (1, 1)):
        out = torch.addcmul(out, x[..., p::2, q::2], taps[:, :, p, q])
    return out


def gated_idwt2(x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """IDWT(g_LL ⊙ x, g_LH ⊙ x, g_HL ⊙ x, g_HH ⊙ x) for (B, C, h, w) `x` and (B, 4, C[, 1, 1]) `gates`
    → (B, C, 2h, 2w)."""
    _check_rank(x)
    b, c, h, w = x.shape
    taps = _haar_taps(gates, b, c)
    # Every 2×2 output block is x times the taps: one broadcast multiply straight into the interleaved layout.
    return (x.reshape(b, c, h, 1, w, 1) * taps.reshape(b, c, 1, 2, 1, 2)).reshape(b, c, 2 * h, 2 * w)
