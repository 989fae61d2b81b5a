"""Image-to-image and inpainting: the reverse process started from an image instead of pure noise.

As in diffusers' image-to-image pipelines, `strength` s ∈ [0, 1] picks how much of the trajectory runs: of
N solver steps the last ⌊N s⌋ (`start_index`), from the image noised to that step's timestep with the
scheduler's own `add_noise`. At s = 1 the start is pure noise, so the image is ignored and the call equals
plain sampling with the same noise (as diffusers' inpainting does); at s = 0 no step runs and the image comes
back (its autoencoder reconstruction in latent space).

Inpainting is the "blended" form, which works for any UNet that never saw a mask: after every step the kept
region (the mask's black pixels; white = repaint) is replaced by the image noised, with the same ε, to the next
step's timestep — and by the image itself after the last step. The final pixels outside the mask are the
image's own (`keep_unmasked`), also for latent models, whose decoder would only approximate them.

Images and masks go through diffusers' `VaeImageProcessor` (PIL images, numpy arrays or tensors in [0, 1];
tensors in [-1, 1] are accepted with diffusers' deprecation warning). The pipeline never resizes them: the image
must have the size the model draws, which an error message states; the CLI and the local server fit a file or an
upload of another size first (`fit_image`: centre crop to the model's aspect, then resize).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import SchedulerMixin
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from PIL import Image, ImageOps

from slimdiff.models.autoencoders import CLASS_KINDS, Autoencoder
from slimdiff.models.inputs import sample_hw
from slimdiff.sampling.call_inputs import pixel_factor

IMG2IMG_STRENGTH = 0.8  # diffusers' defaults: StableDiffusionImg2ImgPipeline's …
INPAINT_STRENGTH = 1.0  # … and StableDiffusionInpaintPipeline's

# `image` is always pixels: with vae_latent_channels = 0 the processor never takes an RGB tensor for latents
# (diffusers passes tensors with the latent channel count through, and LDM's VQ latents have 3 channels).
_IMAGES = {"do_resize": False, "vae_latent_channels": 0, "do_convert_rgb": True}
# masks as diffusers' inpainting processor takes them: grey, not normalised, 0 / 1 split at 0.5
_MASKS = {
    "do_resize": False,
    "vae_latent_channels": 0,
    "do_convert_grayscale": True,
    "do_normalize": False,
    "do_binarize": True,
}


def resolve_strength(image: object | None, mask_image: object | None, strength: float | None) -> float | None:
    """The strength of a call: None without an image, diffusers' default when not given (1 for inpainting,
    0.8 for image-to-image); refused outside [0, 1] or without an image."""
    if image is None:
        if mask_image is not None or strength is not None:
            raise ValueError("mask_image and strength need image= (the image to start from)")
        return None
    if strength is None:
        return IMG2IMG_STRENGTH if mask_image is None else INPAINT_STRENGTH
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    return float(strength)


def start_index(steps: int, strength: float) -> int:
    """Solver steps skipped at strength s: N − min(⌊N s⌋, N), the first steps of the schedule."""
    return steps - min(int(steps * strength), steps)


def image_timesteps(scheduler: SchedulerMixin, steps: int, strength: float) -> tuple[torch.Tensor, int]:
    """(timesteps still to run, index of the first one in the full schedule) on a scheduler whose
    `set_timesteps` was called; schedulers that count their steps are told where they start."""
    if not hasattr(scheduler, "add_noise"):
        raise ValueError(
            f"{type(scheduler).__name__} has no add_noise to noise an image; pick another sampler"
        )
    begin = start_index(steps, strength) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    return scheduler.timesteps[begin:], begin


@dataclass(frozen=True)
class InitImage:
    """An init image in the UNet's space and, for inpainting, where to repaint (1) and keep (0)."""

    pixels: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    x0: torch.Tensor  # (B, C, h, w): the image as the UNet sees it (encoded and scaled in latent space)
    pixel_mask: torch.Tensor | None  # (B, 1, H, W)
    mask: torch.Tensor | None  # (B, 1, h, w): a latent cell is repainted if any of its pixels is

    def start(self, scheduler: SchedulerMixin, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x at the first timestep: pure noise for the whole trajectory, the image itself for none."""
        if len(timesteps) == len(scheduler.timesteps):
            return noise * scheduler.init_noise_sigma
        if len(timesteps) == 0:
            return self.x0.clone()
        return scheduler.add_noise(self.x0, noise, timesteps[:1].repeat(len(noise)))

    def blend(
        self, scheduler: SchedulerMixin, x: torch.Tensor, noise: torch.Tensor, next_t: torch.Tensor | None
    ) -> torch.Tensor:
        """After a step: the kept region replaced by the image noised to `next_t` (None: the step was the last)."""
        if self.mask is None:
            return x
        kept = self.x0 if next_t is None else scheduler.add_noise(self.x0, noise, next_t.repeat(len(noise)))
        return self.mask * x + (1 - self.mask) * kept

    def keep_unmasked(self, images: torch.Tensor) -> torch.Tensor:
        """Decoded images (B, 3, H, W) in [-1, 1] with the image's own pixels wherever the mask keeps them."""
        return _paste(images, self.pixels, self.pixel_mask)


def keep_image_pixels(
    images: torch.Tensor, image: PipelineImageInput, mask_image: PipelineImageInput | None, vae, unet_config
) -> torch.Tensor:
    """What the pipeline returns for inpainting, for callers that decode its latents themselves (`generate`):
    `images` (B, 3, H, W) in [-1, 1] with `image`'s pixels wherever `mask_image` keeps them."""
    pixels, pixel_mask = init_pixels(image, mask_image, vae, unet_config, len(images))
    return _paste(images, pixels, pixel_mask)


def _paste(images: torch.Tensor, pixels: torch.Tensor, pixel_mask: torch.Tensor | None) -> torch.Tensor:
    if pixel_mask is None:
        return images
    mask = pixel_mask.to(images)
    return mask * images + (1 - mask) * pixels.to(images)


def drawn_size(vae, unet_config) -> tuple[int, int]:
    """(height, width) in pixels of the images a model with this decoder (an autoencoder, a slim or ONNX
    decoder, None in pixel space) and UNet draws."""
    return tuple(side * pixel_factor(vae) for side in sample_hw(unet_config))


def fit_image(
    image: Image.Image, size: tuple[int, int], resample: Image.Resampling = Image.Resampling.BICUBIC
) -> Image.Image:
    """`image` centre-cropped to the aspect of `size` (height, width) and resized to it; a mask takes
    `Image.Resampling.NEAREST`, so that it stays black and white."""
    height, width = size
    return ImageOps.fit(image, (width, height), resample)


def init_pixels(
    image: PipelineImageInput, mask_image: PipelineImageInput | None, vae, unet_config, rows: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(pixels (rows, 3, H, W) in [-1, 1], mask (rows, 1, H, W) of 0 / 1 or None), checked against the size the
    model draws; one image (or mask) serves every row, k of them rows / k rows each."""
    height, width = drawn_size(_encoder(vae), unet_config)
    pixels = _batch(VaeImageProcessor(**_IMAGES).preprocess(image), rows, "image")
    if pixels.shape[1] != 3:
        raise ValueError(f"image has {pixels.shape[1]} channels; pass RGB images")
    if tuple(pixels.shape[-2:]) != (height, width):
        raise ValueError(
            f"image is {_size(pixels)} (height×width) but this model draws {height}×{width} images; "
            f"resize or crop it to {height}×{width}"
        )
    if mask_image is None:
        return pixels, None
    mask = _batch(VaeImageProcessor(**_MASKS).preprocess(mask_image), rows, "mask_image")
    if mask.shape[1] != 1 or mask.shape[-2:] != pixels.shape[-2:]:
        raise ValueError(
            f"mask_image is {_size(mask)} with {mask.shape[1]} channels, the image {_size(pixels)}; "
            "pass one grey mask of the image's size (white = repaint, black = keep)"
        )
    return pixels, mask


def prepare_init(
    image: PipelineImageInput,
    mask_image: PipelineImageInput | None,
    vae,
    unet_config,
    rows: int,
    device: torch.device,
    dtype: torch.dtype,
) -> InitImage:
    """The `InitImage` of `rows` samples: pixels encoded by the autoencoder (its posterior mean: no draw from
    the generator, so solvers draw what plain sampling draws) and the mask max-pooled to the latent grid."""
    pixels, pixel_mask = init_pixels(image, mask_image, vae, unet_config, rows)
    autoencoder = Autoencoder.of(vae)
    if autoencoder.latent_channels != unet_config.in_channels:
        raise ValueError(
            f"the image encodes to {autoencoder.latent_channels} channels but the UNet takes "
            f"{unet_config.in_channels}; this model cannot start from an image"
        )
    x0 = autoencoder.encode(pixels.to(device)).to(device, dtype)
    mask = None
    if pixel_mask is not None:
        mask = F.max_pool2d(pixel_mask, autoencoder.factor).to(device, dtype)
    return InitImage(pixels.to(device), x0, pixel_mask, mask)


def can_encode(vae) -> bool:
    """Whether a pipeline with this `vae` can take an init image: pixel space (None) or a full autoencoder, not a
    slim or ONNX decoder."""
    return vae is None or type(vae).__name__ in CLASS_KINDS


def _encoder(vae):
    """`vae`, once it can encode (`can_encode`)."""
    if not can_encode(vae):
        raise ValueError(
            f"an init image needs the autoencoder's encoder, and this pipeline decodes with a "
            f"{type(vae).__name__}, which has none; sample with the full autoencoder (--decoder full, no --onnx)"
        )
    return vae


def _batch(images: torch.Tensor, rows: int, name: str) -> torch.Tensor:
    if rows % len(images):
        raise ValueError(f"{name} has {len(images)} images for {rows} samples; pass 1 or a divisor of {rows}")
    return images.float().repeat_interleave(rows // len(images), dim=0)


def _size(images: torch.Tensor) -> str:
    return f"{images.shape[-2]}×{images.shape[-1]}"
