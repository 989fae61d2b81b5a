"""Separable 2-D filtering of (N, C, H, W) tensors, per channel, with reflect padding."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def separable_filter(x: Tensor, taps: Tensor) -> Tensor:
    """Filter the rows, then the columns of every channel of `x` with the odd-length 1-D kernel `taps`."""
    c, pad = x.shape[1], len(taps) // 2
    k = taps.to(x)
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(
        F.pad(x, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c
    )
