"""How big a model is: the one parameter count every report, benchmark and profile uses."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module) -> int:
    """Every parameter of `model`, trainable or frozen (what the paper's "Params" column counts)."""
    return sum(p.numel() for p in model.parameters())
