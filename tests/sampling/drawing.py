"""The few-step draw the sampling tests compare: a fixed generator, tensors out, no progress bar."""

from __future__ import annotations

import torch


def draw(pipe, **call) -> torch.Tensor:
    """`pipe(**call)`'s images as a (B, C, H, W) tensor in [0, 1]; 3 steps and seed 0 unless `call` says otherwise."""
    pipe.set_progress_bar_config(disable=True)
    call = {
        "num_inference_steps": 3,
        "generator": torch.Generator().manual_seed(0),
        "output_type": "pt",
        **call,
    }
    return pipe(**call).images
