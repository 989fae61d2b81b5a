"""Autoencoders between images and the space the UNet works in (docs/architecture.md).

`identity` is pixel space; `vq` is a diffusers `VQModel` (LDM's f4), `kl` an `AutoencoderKL` (LDM's f8). Latents
are multiplied by the scaling factor after encoding and divided by it before decoding, so the UNet sees
latents of roughly unit variance. A VQ encoder returns its pre-quantisation latents (quantisation happens in
`decode`), as in LDM; a KL encoder returns the mean of its posterior, so latents are deterministic and
cacheable.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from slimdiff.errors import ModelError, loading

KINDS = ("identity", "vq", "kl")
# diffusers class → kind; the one place that tells a VQ from a KL autoencoder.
CLASS_KINDS = {"VQModel": "vq", "AutoencoderKL": "kl"}


def autoencoder_kind(model: nn.Module | str | None) -> str:
    """`identity` for None, else `vq` or `kl` for a diffusers autoencoder (an instance or its class name)."""
    if model is None:
        return "identity"
    name = model if isinstance(model, str) else type(model).__name__
    if name not in CLASS_KINDS:
        raise ModelError(f"autoencoder {name} is not one of {', '.join(CLASS_KINDS)}")
    return CLASS_KINDS[name]


class Autoencoder(nn.Module):
    """images (B, 3, H, W) in [-1, 1] ↔ latents (B, latent_channels, H / factor, W / factor)."""

    def __init__(
        self, kind: str, model: nn.Module | None = None, scaling_factor: float = 1.0, source: str = ""
    ):
        super().__init__()
        if kind not in KINDS:
            raise ModelError(f"unknown autoencoder kind {kind!r}; valid: {', '.join(KINDS)}")
        if (model is None) != (kind == "identity"):
            raise ModelError("an identity autoencoder has no model; vq and kl need one")
        self.kind, self.model, self.scaling_factor, self.source = kind, model, scaling_factor, source
        if model is not None:
            model.requires_grad_(False).eval()
            # Saved next to the UNet, the pipeline reads the training scale from the autoencoder's own config.
            model.register_to_config(scaling_factor=scaling_factor)

    @classmethod
    def of(cls, model: nn.Module | None) -> Autoencoder:
        """The wrapper of a pipeline's `vae` (None: pixel space), at the scale stored in its config."""
        scale = 1.0 if model is None else float(model.config.get("scaling_factor", 1.0))
        return cls(autoencoder_kind(model), model, scale)

    @property
    def factor(self) -> int:
        """Down-sampling factor: image side / latent side."""
        if self.model is None:
            return 1
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return 3 if self.model is None else self.model.config.latent_channels

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            return images
        images = images.to(self.model.dtype)
        if self.kind == "vq":
            latents = self.model.encode(images).latents
        else:
            latents = self.model.encode(images).latent_dist.mean
        return latents.float() * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            return latents
        images = self.model.decode((latents / self.scaling_factor).to(self.model.dtype)).sample
        return images.float()

    def fingerprint(self) -> str:
        """A digest of the kind, scale and every weight: equal fingerprints encode identically."""
        digest = hashlib.sha256(f"{self.kind}:{self.scaling_factor!r}".encode())
        if self.model is not None:
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()


def load_autoencoder(
    kind: str = "identity", source: str | None = None, scaling_factor: float | None = None, **hub_kwargs
) -> Autoencoder:
    """An autoencoder from a local folder or hub id (`vae/` or `vqvae/` subfolders of a pipeline are found).

    scaling_factor None means the model config's own for `kl` (0.18215 for LDM / SD) and 1.0 for `vq`
    (LDM trains on unscaled VQ latents).
    """
    if kind not in KINDS:
        raise ModelError(f"unknown autoencoder kind {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "identity":
        if source is not None:
            raise ModelError("the identity autoencoder takes no source; set kind: vq or kl to load one")
        return Autoencoder("identity", scaling_factor=1.0 if scaling_factor is None else scaling_factor)
    if source is None:
        raise ModelError(f"autoencoder kind {kind!r} needs a source: a local folder or a hub id")
    from diffusers import AutoencoderKL, VQModel

    from slimdiff.models.loading import FOLDER_FIX, locate

    cls = VQModel if kind == "vq" else AutoencoderKL
    with loading(f"the {cls.__name__} in {source}", FOLDER_FIX):
        subfolders = (None, "vqvae", "vae")  # a bare autoencoder, an LDMPipeline's, a Stable Diffusion one's
        location, subfolder = locate(source, cls, subfolders, subfolders, **hub_kwargs)
        model = cls.from_pretrained(location, subfolder=subfolder, use_safetensors=True, **hub_kwargs)
    if scaling_factor is None:
        scaling_factor = float(model.config.get("scaling_factor", 1.0)) if kind == "kl" else 1.0
    return Autoencoder(kind, model, scaling_factor, source=str(source))
