"""What a training run shows and leaves behind: sample grids from the EMA weights and the final model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from slimdiff.autoencoders import Autoencoder
from slimdiff.config import Config
from slimdiff.images import save_grid
from slimdiff.noise import training_scheduler


def ema_unet(unet: nn.Module, ema) -> nn.Module:
    """A copy of the bare UNet (no hooks) holding the EMA weights."""
    copy = type(unet).from_config(unet.config).to(next(unet.parameters()).device)
    ema.copy_to(copy.parameters())
    return copy.eval()


def _pipeline(unet: nn.Module, autoencoder: Autoencoder):
    from slimdiff.pipeline import SlimDiffusionPipeline

    pipe = SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler(), vae=autoencoder.model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_samples(unet: nn.Module, ema, autoencoder: Autoencoder, config: Config, path: Path) -> None:
    """A grid of `run.sample_count` DDIM samples from the EMA weights, from fixed noise (comparable over time)."""
    pipe = _pipeline(ema_unet(unet, ema), autoencoder)
    generator = torch.Generator().manual_seed(config.train.seed)
    images = pipe(
        batch_size=config.run.sample_count,
        num_inference_steps=config.run.sample_steps,
        sampler="ddim",
        generator=generator,
        output_type="pt",
    ).images
    save_grid(images * 2 - 1, path, padding=0)


def export_model(unet: nn.Module, ema, autoencoder: Autoencoder, folder: Path) -> None:
    """`folder` = a SlimDiffusionPipeline: unet/ (EMA weights), scheduler/ (training schedule), vae/ if any."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    _pipeline(ema_unet(unet, ema), autoencoder).save_pretrained(str(tmp), safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
