"""Tiny models and pipelines shared by the pipeline, sampler, export and sample/export CLI tests."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel
from slimdiff.sampling.pipeline import SlimDiffusionPipeline
from slimdiff.sampling.schedule import training_scheduler

SIZE = 8


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread: with 2 threads on 2 cores shared with other processes, the OpenMP barriers of a
    tiny model cost ~100× its compute (1.2 s vs 0.01 s a step, measured here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_unet(seed: int = 0, channels: int = 3, width: int = 8, slim: bool = True) -> SlimUNet2DModel:
    """An 8×8 unconditional UNet with one plain and one attention level (wavelet-gated when `slim`)."""
    torch.manual_seed(seed)
    return SlimUNet2DModel(
        sample_size=SIZE,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(width, 2 * width),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=4,
        wavelet_gating=slim,
    ).eval()


def tiny_condition_unet(seed: int = 0, classes: int | None = 5) -> SlimUNet2DConditionModel:
    """An 8×8 cross-attention UNet: class-context with `classes` classes, or text-style when None."""
    torch.manual_seed(seed)
    return SlimUNet2DConditionModel(
        sample_size=SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        attention_head_dim=4,
        cross_attention_dim=12,
        norm_num_groups=4,
        num_context_classes=classes,
    ).eval()


def tiny_vae(seed: int = 0, scaling_factor: float = 0.5) -> AutoencoderKL:
    """A 2× down-sampling KL autoencoder with 4 latent channels (16×16 images ↔ 8×8 latents)."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=scaling_factor,
    ).eval()


def tiny_pipeline(unet=None, vae=None) -> SlimDiffusionPipeline:
    pipe = SlimDiffusionPipeline(
        unet=unet if unet is not None else tiny_unet(), scheduler=training_scheduler(), vae=vae
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seed(n: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(n)
