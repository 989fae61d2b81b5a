"""A slim decoder: latents → images with about a million weights, distilled from an autoencoder's decoder
(`slimdiff distill-decoder`) and used in its place (`slimdiff sample --decoder slim`).

In the spirit of the tiny autoencoders used to preview Stable Diffusion: a plain conv stack with residual
blocks, nearest-neighbour ×2 up-sampling and narrower layers at higher resolution, so most weights sit at the
latent resolution where they are cheap. It is a diffusers `ModelMixin` with the decoder interface
`decode(z).sample` on *unscaled* latents and the autoencoder's `scaling_factor` in its config, so
`SlimDiffusionPipeline.decode` uses it exactly like the full decoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from slimdiff.errors import ModelError, loading


class _Output:
    def __init__(self, sample: torch.Tensor):
        self.sample = sample


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


def default_channels(factor: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(channels, blocks) per level, latent resolution first. f4: (128, 48, 16) with (3, 1, 0) residual
    blocks, 0.99M weights and 5.7 GMACs for a 256×256 image (the CompVis VQ-f4 decoder: 335 GMACs)."""
    levels = factor.bit_length()  # f4 → 3 levels (×1, ×2, ×4), f8 → 4
    known = {1: (128,), 2: (128, 16), 4: (128, 48, 16), 8: (128, 64, 32, 16)}
    channels = known.get(factor) or (128, *(max(16, 128 >> i) for i in range(1, levels - 1)), 16)
    blocks = (3,) + (1,) * (levels - 2) + (0,) if levels > 1 else (3,)
    return tuple(channels), blocks


class SlimDecoder(ModelMixin, ConfigMixin):
    """latents (B, latent_channels, h, w), unscaled → images (B, 3, h·factor, w·factor) in about [-1, 1]."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 3,
        factor: int = 4,
        channels: tuple[int, ...] | None = None,
        blocks: tuple[int, ...] | None = None,
        scaling_factor: float = 1.0,
        out_channels: int = 3,
    ):
        super().__init__()
        if factor < 1 or factor & (factor - 1):
            raise ModelError(f"a slim decoder's factor must be a power of two, got {factor}")
        default = default_channels(factor)
        channels = tuple(channels or default[0])
        blocks = tuple(blocks or default[1])
        if len(channels) != factor.bit_length() or len(blocks) != len(channels):
            raise ModelError(
                f"factor {factor} needs {factor.bit_length()} levels of channels and blocks, "
                f"got {len(channels)} and {len(blocks)}"
            )
        self.register_to_config(channels=channels, blocks=blocks)
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, channels[0], 3, padding=1)]
        for i, (width, count) in enumerate(zip(channels, blocks, strict=True)):
            if i:
                layers += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(channels[i - 1], width, 3, padding=1),
                ]
            layers += [ResBlock(width) for _ in range(count)]
        layers += [nn.ReLU(), nn.Conv2d(channels[-1], out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (what the UNet produces) → images."""
        return self.net(latents)

    def decode(self, latents: torch.Tensor, return_dict: bool = True, **_: object) -> _Output:
        """The autoencoder interface: unscaled latents → `.sample` images."""
        return _Output(self.net(latents * self.config.scaling_factor))


def slim_decoder_for(vae: nn.Module, **overrides: object) -> SlimDecoder:
    """A slim decoder shaped for `vae` (a diffusers VQModel / AutoencoderKL): its latent channels, factor and
    scaling factor."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    settings = {
        "latent_channels": vae.config.latent_channels,
        "factor": factor,
        "scaling_factor": float(vae.config.get("scaling_factor", 1.0)),
        **overrides,
    }
    return SlimDecoder(**settings)


def load_slim_decoder(folder: str | Path) -> SlimDecoder:
    """A slim decoder folder written by `slimdiff distill-decoder` (config.json + safetensors)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"{folder} is not a slim decoder folder (no config.json); make one with `slimdiff distill-decoder`"
        )
    with loading(f"the slim decoder in {folder}", "make it again with `slimdiff distill-decoder`"):
        return SlimDecoder.from_pretrained(str(folder), use_safetensors=True).eval()
