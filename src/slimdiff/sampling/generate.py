"""`generate`: n images from a pipeline, batch by batch, the one path every caller samples through (the
`sample` and `eval` commands, the demo, a run's sample grids).

The initial noise is one seeded stream, drawn as it is needed (chunks of `NOISE_CHUNK` images), so memory does
not grow with n and image i is the same whatever `batch` and n. When an image's noise has a multiple of 16
values (H and W multiples of 4) the stream equals one `torch.randn(n, …)` draw — CPU randn transforms its
uniforms in blocks of 16 — which is how earlier versions drew it; stochastic solvers draw from the generator
where that draw left it. Images come back in [-1, 1], the range slimdiff keeps until the single save point
(`slimdiff.reporting.images`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from slimdiff.models.inputs import sample_hw
from slimdiff.sampling.init_image import keep_image_pixels

NOISE_CHUNK = 16  # images of noise drawn at a time: 16 × any image's size is a whole number of randn blocks
_SKIP = 1 << 24  # values per draw while moving the solvers' generator past the noise (64 MB of float32)


class NoiseStream:
    """The initial noise of images 0, 1, 2, … from `seed`, handed out in order, NOISE_CHUNK images drawn at a
    time; `solver_generator()` is the generator as a single draw of n images' noise would have left it."""

    def __init__(self, seed: int, shape: tuple[int, ...]):
        self.seed, self.shape = seed, shape
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer = torch.empty(0, *shape)

    def take(self, k: int) -> torch.Tensor:
        while len(self.buffer) < k:
            chunk = torch.randn(NOISE_CHUNK, *self.shape, generator=self.generator)
            self.buffer = torch.cat([self.buffer, chunk])
        taken, self.buffer = self.buffer[:k], self.buffer[k:]
        return taken

    def solver_generator(self, n: int) -> torch.Generator:
        generator = torch.Generator().manual_seed(self.seed)
        left = n * math.prod(self.shape)
        while left > _SKIP + 16:  # pieces of whole randn blocks; the last one ≥ 16 values, as the single draw
            torch.randn(_SKIP, generator=generator)
            left -= _SKIP
        torch.randn(left, generator=generator)
        return generator


@torch.no_grad()
def generate(
    pipe,
    n: int,
    seed: int = 0,
    batch: int = 64,
    *,
    on_batch: Callable[[int, torch.Tensor], None] | None = None,
    per_image: Mapping[str, torch.Tensor] | None = None,
    keep: int | None = None,
    **call: object,
) -> torch.Tensor:
    """`n` images (n, 3, H, W) in [-1, 1] from `pipe` (a `SlimDiffusionPipeline`); only the first `keep` are
    returned when given (the others are seen by `on_batch` only, so memory stays bounded for large n).
    `call` goes to every pipeline call (num_inference_steps, sampler, eta, class_labels, guidance_scale,
    stitch, image, mask_image, strength, …); `per_image` holds arguments with one row per image (e.g. class_labels of length n), sliced like
    the noise; `on_batch(first_index, images)` sees each batch as soon as it is drawn (to save it, to advance
    a bar)."""
    if n < 1 or batch < 1:
        raise ValueError(f"n and batch must be at least 1, got {n} and {batch}")
    per_image = dict(per_image or {})
    for name, value in per_image.items():
        if len(value) != n:
            raise ValueError(f"per_image[{name!r}] has {len(value)} rows, expected one per image ({n})")
    config = pipe.unet.config
    noise = NoiseStream(seed, (config.in_channels, *sample_hw(config)))
    generator = noise.solver_generator(n)
    keep = n if keep is None else keep
    images = []
    for first in range(0, n, batch):
        latents = noise.take(min(batch, n - first)).to(pipe.device)
        args = {**call, **{name: value[first : first + batch] for name, value in per_image.items()}}
        x = pipe(
            batch_size=len(latents), latents=latents, generator=generator, output_type="latent", **args
        ).images
        drawn = pipe.decode(x)
        if args.get("mask_image") is not None:  # inpainting: the kept pixels are the image's, not decoded
            drawn = keep_image_pixels(drawn, args["image"], args["mask_image"], pipe.vae, pipe.unet.config)
        drawn = drawn.float().cpu()
        if on_batch is not None:
            on_batch(first, drawn)
        if first < keep:
            images.append(drawn[: keep - first])
    return torch.cat(images)
