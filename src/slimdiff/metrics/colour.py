"""How far images lie from grey (chroma), for samples that drift to grey or to a colour cast."""

from __future__ import annotations

from torch import Tensor


def chroma_rms(images: Tensor) -> float:
    """RMS distance of every pixel from its own grey value (the mean over channels) of (N, C, H, W) images:
    0 for grey images."""
    return (images - images.mean(dim=1, keepdim=True)).square().mean().sqrt().item()
