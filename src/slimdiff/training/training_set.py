"""The training data of a run: the images its `data:` section names, or their latents from the on-disk cache.

It lives in training/, not data/, because it reads the run's `DataConfig` (data/ sits below the config and
takes plain values)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from torch.utils.data import Dataset

from slimdiff.config import DataConfig
from slimdiff.data.datasets import make_dataset
from slimdiff.data.latent_cache import cached_latents, source_fingerprint
from slimdiff.models.autoencoders import Autoencoder


def training_set(
    data: DataConfig,
    autoencoder: Autoencoder,
    cache_root: Path | None,
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    main_first: Callable[[], AbstractContextManager] = nullcontext,
    progress: bool = True,
    log: Callable[[str], None] = print,
    conditioning: str = "none",
) -> tuple[Dataset, bool]:
    """(dataset, whether it yields latents already) for the run's `data`; with `conditioning` class / text the
    items are (image or latent, label or caption). With `cache_root` and a real autoencoder, latents come
    from (or are written to) the cache under it; `main_first` lets the main process of a distributed run fill
    the cache before the others read it."""
    images = make_dataset(
        data.source,
        data.size,
        seed=data.seed,
        strict=data.strict,
        image_column=data.image_column,
        length=data.length,
        conditioning=conditioning,
        label_column=data.label_column,
        caption_column=data.caption_column,
    )
    skipped = getattr(images, "skipped", [])
    if skipped:
        log(f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped)}")
    if cache_root is None or autoencoder.kind == "identity":
        return images, False
    key = source_fingerprint(data.source, data.size, data.seed, data.length, data.image_column)
    key += f":{conditioning}:{data.label_column}:{data.caption_column}"
    with main_first():
        latents, folder = cached_latents(
            images, autoencoder, cache_root, key, batch_size=batch_size, device=device, progress=progress
        )
    log(f"latents: {len(latents)} from cache {folder}")
    return latents, True
