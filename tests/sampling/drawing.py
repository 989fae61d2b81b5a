"""The draws the sampling tests compare: seeded generators, tensors out."""

from __future__ import annotations

import torch


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draw(pipe, seed: int = 0, **call) -> torch.Tensor:
    """`pipe(**call)`'s images as a (B, C, H, W) tensor in [0, 1]; 3 steps and a generator seeded with `seed`
    unless `call` says otherwise."""
    call = {"num_inference_steps": 3, "generator": gen(seed), "output_type": "pt", **call}
    return pipe(**call).images
