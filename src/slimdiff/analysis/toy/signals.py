"""The toy's data: cosines cos(α·2πx) on 40 points, one per α, drawn with weights π ∝ rank^(−tail)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

ALPHAS = (1, 2, 4, 8, 12, 16)
LENGTH = 40
RARE = ("high", "low")


def mixture_weights(tail: float = 2.0, rare: str = "high", count: int = len(ALPHAS)) -> Tensor:
    """π over the patterns in ALPHAS order: ∝ rank^(−tail), rank 1 the most common (the lowest α when rare is
    "high", the highest when "low")."""
    ranks = torch.arange(1, count + 1, dtype=torch.float64)
    weights = ranks ** (-tail)
    weights = weights if rare == "high" else weights.flip(0)
    return (weights / weights.sum()).float()


def signals(alphas: tuple[int, ...] = ALPHAS, length: int = LENGTH) -> Tensor:
    """(len(alphas), length) clean signals cos(α·2πx)."""
    x = torch.arange(length, dtype=torch.float32) / length
    return torch.stack([torch.cos(a * 2 * math.pi * x) for a in alphas])
