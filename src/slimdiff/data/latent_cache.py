"""Latents encoded once and kept on disk as safetensors shards, keyed by a fingerprint of everything that
shapes them (data source, image size, crop seed, autoencoder weights and scale), so a stale cache is never
used: change any of them and the key, hence the folder, changes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from slimdiff.data.builtin import CROP_RULE
from slimdiff.reporting.progress import progress_bar

if TYPE_CHECKING:  # data comes before models (docs/architecture.md): the autoencoder is passed in
    from slimdiff.models.autoencoders import Autoencoder

SHARD_SIZE = 4096  # latents per shard file


def source_fingerprint(
    source: str, size: int, seed: int, length: int | None, image_column: str, *, held_out: bool = False
) -> str:
    """A digest of a data source as `make_dataset` would read it (`held_out`: its held-out part); local files
    count by path, size and mtime, built-in crops by the revision of their rule."""
    parts = [source, size, seed, length, image_column]
    if source.startswith("builtin:"):  # crops of the old rule, or of the other region, are other images
        parts += [CROP_RULE, held_out]
    digest = hashlib.sha256(json.dumps(parts).encode())
    path = Path(source).expanduser()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class LatentDataset(Dataset):
    """Latents held in memory, one (C, h, w) tensor per item; with `conditions`, items are (latent, condition)
    like the image set they came from."""

    def __init__(
        self, latents: torch.Tensor, conditions: list | None = None, class_names: list[str] | None = None
    ):
        self.latents, self.conditions, self.class_names = latents, conditions, class_names

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __getitem__(self, index: int):
        latent = self.latents[index]
        return latent if self.conditions is None else (latent, self.conditions[index])


def _dataset(folder: Path, index: dict) -> LatentDataset:
    latents = torch.cat([load_file(folder / name)["latents"] for name in index["shards"]])
    return LatentDataset(latents, index.get("conditions"), index.get("class_names"))


def cached_latents(
    images: Dataset,
    autoencoder: Autoencoder,
    cache_root: Path,
    source_key: str,
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[LatentDataset, Path]:
    """The latents of every image in `images`, from `cache_root/<key>/` if a complete cache with this exact
    key exists, else encoded now and written there (atomically: a half-written cache is never found)."""
    key = hashlib.sha256(f"{source_key}:{autoencoder.fingerprint()}".encode()).hexdigest()
    folder = Path(cache_root) / key[:24]
    index_file = folder / "index.json"
    if index_file.is_file() and json.loads(index_file.read_text()).get("key") == key:
        return _dataset(folder, json.loads(index_file.read_text())), folder
    tmp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    autoencoder.to(device)
    loader = DataLoader(images, batch_size=batch_size, shuffle=False)
    encoded, shards, pending, conditions = [], [], 0, []
    for batch in progress_bar("encoding latents", iterable=loader, disable=not progress):
        if isinstance(batch, (list, tuple)):  # (images, labels or captions)
            batch, labels = batch
            conditions += labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
        encoded.append(autoencoder.encode(batch.to(device)).cpu())
        pending += batch.shape[0]
        if pending >= SHARD_SIZE:
            shards.append(_write_shard(tmp, len(shards), torch.cat(encoded)))
            encoded, pending = [], 0
    if encoded:
        shards.append(_write_shard(tmp, len(shards), torch.cat(encoded)))
    index = {"key": key, "count": len(images), "shards": shards}
    if conditions:
        index.update(conditions=conditions, class_names=getattr(images, "class_names", None))
    (tmp / "index.json").write_text(json.dumps(index))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return _dataset(folder, index), folder


def _write_shard(folder: Path, number: int, latents: torch.Tensor) -> str:
    name = f"shard-{number:05d}.safetensors"
    save_file({"latents": latents.contiguous()}, folder / name)
    return name
