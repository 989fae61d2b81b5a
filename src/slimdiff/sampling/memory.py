"""What sampling one batch needs in memory, estimated from the model configs before anything is drawn, and
`check_batch_memory`, which refuses a batch that cannot fit with one line instead of dying mid-run.

The estimate (float32, no gradients, bytes per image) is deliberately simple:
- the UNet: the skip tensors its down path keeps for the up path (conv_in's output, every layer's output and
  every downsample's, level by level) plus `ACTIVE` tensors of its largest level (a block's input, norm,
  convolution and residual, the up path's concatenation); doubled under classifier-free guidance, which runs
  the conditional and unconditional halves as one batch, plus the heads × L × L attention map of the highest-
  resolution attention level (L its pixels; PyTorch's CPU attention holds it in float32). Peaks measured
  (RSS growth of one forward, CPU) per image: ldm-f4 82–102 MB (estimate 94), sd-f4 28 MB (27), ldm-cin
  107 MB (81); tiny models sit ~2× above it (allocator overhead).
- the decoder (after the UNet, so the larger of the two counts): `ACTIVE` tensors of its largest level,
  plus the decoded images.
It is compared with the memory free now (psutil's `available`, i.e. MemAvailable; the free memory of a GPU).
"""

from __future__ import annotations

import torch

from slimdiff.errors import ConfigError
from slimdiff.models.inputs import sample_hw

ACTIVE = 6  # live tensors of one level's size while a block runs
FLOAT = 4  # bytes of a float32
GIB = 1 << 30


def _levels(config) -> list[int]:
    """Values per image of one feature map at each UNet level (channels × pixels)."""
    h, w = sample_hw(config)
    return [c * (h >> i) * (w >> i) for i, c in enumerate(config["block_out_channels"])]


def unet_bytes(config) -> int:
    """Bytes per image a UNet step holds at its peak (see the module docstring)."""
    levels = _levels(config)
    layers = config.get("layers_per_block", 2)
    layers = [layers] * len(levels) if isinstance(layers, int) else list(layers)
    skips = levels[0] + sum(n * size for n, size in zip(layers, levels, strict=True))
    skips += sum(size // 4 for size in levels[:-1])  # each downsample's output, at the next resolution
    return FLOAT * (skips + ACTIVE * max(levels) + _attention_map(config))


def _attention_map(config) -> int:
    """Values per image of the attention map at the highest-resolution level that has attention."""
    h, w = sample_hw(config)
    for i, kind in enumerate(config["down_block_types"]):
        if "Attn" in kind:
            return _heads(config, i) * ((h >> i) * (w >> i)) ** 2
    return 0


def _heads(config, level: int) -> int:
    if (
        "cross_attention_dim" in config
    ):  # UNet2DConditionModel: attention_head_dim counts heads (diffusers' legacy)
        heads = config.get("num_attention_heads") or config.get("attention_head_dim") or 8
        return heads if isinstance(heads, int) else heads[level]
    return max(1, config["block_out_channels"][level] // (config.get("attention_head_dim") or 8))


def decoder_bytes(vae, latent_hw: tuple[int, int]) -> int:
    """Bytes per image the decoder of `vae` (a diffusers autoencoder, a slim decoder or their ONNX graphs)
    holds at its peak; 0 without one."""
    if vae is None:
        return 0
    config = vae.config
    if config.get("block_out_channels"):  # diffusers autoencoders: the image resolution's channels first
        channels = list(config["block_out_channels"])[::-1]
    else:  # a slim decoder: the latent resolution's first
        from slimdiff.models.slim_decoder import default_channels

        channels = list(config.get("channels") or default_channels(config["factor"])[0])
    h, w = latent_hw
    sizes = [c * (h << i) * (w << i) for i, c in enumerate(channels)]
    image = 3 * (h << (len(channels) - 1)) * (w << (len(channels) - 1))
    return FLOAT * (ACTIVE * max(sizes) + 2 * image)


def image_bytes(pipe, guidance: bool = False) -> int:
    """Bytes per image of one batch of `pipe` (a `SlimDiffusionPipeline`, PyTorch or ONNX)."""
    config = pipe.unet.config
    unet = unet_bytes(config) * (2 if guidance else 1)
    return max(unet, decoder_bytes(pipe.vae, sample_hw(config)))


def free_memory(device: torch.device) -> int:
    """Bytes free for new tensors on `device` now."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil  # an accelerate dependency

    return psutil.virtual_memory().available


def check_batch_memory(pipe, batch: int, guidance: bool = False) -> None:
    """Refuse (`ConfigError`, one line) a batch of `batch` images that the estimate says cannot fit in the
    memory free on the pipeline's device."""
    per_image, free = image_bytes(pipe, guidance), free_memory(torch.device(pipe.device))
    if batch * per_image <= free:
        return
    need = f"about {batch * per_image / GIB:.1f} GiB (an estimate) but {free / GIB:.1f} GiB is free"
    if per_image > free:
        raise ConfigError(f"one image of this model needs {need}: free memory or sample on a larger machine")
    raise ConfigError(f"a batch of {batch} images needs {need}; use --batch-size {free // per_image} or less")
