"""`generate`: n images from a pipeline, batch by batch, the one path every caller samples through (the
`sample` and `eval` commands, the demo, a run's sample grids).

All initial noise is drawn up front from `seed`, so image i is the same whatever `batch`. Images come back
in [-1, 1], the range slimdiff keeps until the single save point (`slimdiff.reporting.images`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from slimdiff.models.inputs import sample_hw


@torch.no_grad()
def generate(
    pipe,
    n: int,
    seed: int = 0,
    batch: int = 64,
    *,
    on_batch: Callable[[int, torch.Tensor], None] | None = None,
    per_image: Mapping[str, torch.Tensor] | None = None,
    **call: object,
) -> torch.Tensor:
    """`n` images (n, 3, H, W) in [-1, 1] from `pipe` (a `SlimDiffusionPipeline`). `call` goes to every
    pipeline call (num_inference_steps, sampler, eta, class_labels, guidance_scale, stitch, …); `per_image`
    holds arguments with one row per image (e.g. class_labels of length n), sliced like the noise;
    `on_batch(first_index, images)` sees each batch as soon as it is drawn (to save it, to advance a bar)."""
    if n < 1 or batch < 1:
        raise ValueError(f"n and batch must be at least 1, got {n} and {batch}")
    per_image = dict(per_image or {})
    for name, value in per_image.items():
        if len(value) != n:
            raise ValueError(f"per_image[{name!r}] has {len(value)} rows, expected one per image ({n})")
    generator = torch.Generator().manual_seed(seed)
    config = pipe.unet.config
    noise = torch.randn(n, config.in_channels, *sample_hw(config), generator=generator)
    images = []
    for first in range(0, n, batch):
        latents = noise[first : first + batch].to(pipe.device)
        rows = {name: value[first : first + batch] for name, value in per_image.items()}
        x = pipe(
            batch_size=len(latents),
            latents=latents,
            generator=generator,
            output_type="latent",
            **rows,
            **call,
        ).images
        drawn = pipe.decode(x).float().cpu()
        if on_batch is not None:
            on_batch(first, drawn)
        images.append(drawn)
    return torch.cat(images)
