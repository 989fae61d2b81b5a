"""Wavelet gating (README, "Wavelet gating"): Haar down/up-sampling whose sub-bands are re-weighted per channel by
gates computed from the feature itself, so the pass-band can change with the timestep and the sample.

    g = sigmoid(W2 · SiLU(W1 · avgpool(X)))      W1: C → C/r,  W2: C/r → 4C
    WG-Down:  Σ_b g_b ⊙ DWT(X)_b                  (C channels, half size)
    WG-Up:    IDWT(g_LL ⊙ X_LL, g_LH ⊙ X_LH, g_HL ⊙ X_HL, g_HH ⊙ X_HH)   (C channels, double size)

WG-Up builds its bands either by repeating X in every band (`"repeat"`, the default, parameter-free) or
by a 1×1 conv C → 4C split into four chunks (`"split"`, for ablation).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from slimdiff.wavelets import gated_dwt2, gated_idwt2, idwt2

WG_UP_MODES = ("repeat", "split")

# Gate logits start at (+2, −2, −2, −2), i.e. gates near (LL 0.88, details 0.12). That is not average pooling:
# the orthonormal Haar bands weight the 2×2 block [[a, b], [c, d]] as (g_LL ± g_LH ± g_HL ± g_HH) / 2, so WG-Down
# starts as the checkerboard [[0.62, 0.38], [0.38, 0.38]] (top-left pixel favoured; 2 × average pooling would be
# 0.5 everywhere, plain subsampling [[1, 0], [0, 0]] with all gates at 0.5), and WG-Up copies a pixel into its 2×2
# block with the same weights. Training decides from there how much detail each band lets through.
_INITIAL_LL_LOGIT = 2.0


class WaveletGate(nn.Module):
    """Per-channel, per-band gates (B, 4, C, 1, 1) in (0, 1) from the average-pooled feature."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"channels and reduction must be positive, got {channels}, {reduction}")
        hidden = max(channels // reduction, 1)
        self.channels = channels
        self.w1 = nn.Linear(channels, hidden)
        self.w2 = nn.Linear(hidden, 4 * channels)
        with torch.no_grad():
            self.w2.bias.view(4, channels).copy_(
                torch.tensor([_INITIAL_LL_LOGIT, -_INITIAL_LL_LOGIT, -_INITIAL_LL_LOGIT, -_INITIAL_LL_LOGIT])[
                    :, None
                ]
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(-2, -1))
        logits = self.w2(F.silu(self.w1(pooled)))
        return torch.sigmoid(logits).view(x.shape[0], 4, self.channels, 1, 1)


class WGDown(nn.Module):
    """Wavelet-gated down-sampler: (B, C, H, W) → (B, C, H/2, W/2)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.channels = channels
        self.gate = WaveletGate(channels, reduction)

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        # Extra arguments (temb, output size) from the diffusers blocks are not needed here.
        return gated_dwt2(x, self.gate(x))


class WGUp(nn.Module):
    """Wavelet-gated up-sampler: (B, C, H, W) → (B, C, 2H, 2W)."""

    def __init__(self, channels: int, reduction: int = 4, mode: str = "repeat"):
        super().__init__()
        if mode not in WG_UP_MODES:
            raise ValueError(f"unknown WG-Up mode {mode!r}; valid: {', '.join(WG_UP_MODES)}")
        self.channels = channels
        self.mode = mode
        self.gate = WaveletGate(channels, reduction)
        self.to_bands = nn.Conv2d(channels, 4 * channels, 1) if mode == "split" else None

    def forward(self, x: torch.Tensor, *_, **__) -> torch.Tensor:
        g = self.gate(x)
        if self.to_bands is None:
            return gated_idwt2(x, g)
        return idwt2(*(g[:, b] * band for b, band in enumerate(self.to_bands(x).chunk(4, dim=1))))
