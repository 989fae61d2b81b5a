"""Image datasets selected by one string (docs/architecture.md): a folder (`folder_dataset`), a Hugging Face
dataset (`hf_dataset`) or built-in images (`builtin`); and images drawn from one for metrics, with the one
held-out rule of every evaluation.

Every dataset yields (3, size, size) float tensors in [-1, 1]. Preprocessing follows the paper: centre-crop to
a square, resize to the target size, scale to [-1, 1], no flips (`transforms`). Unreadable files are skipped
with a warning or are an error under `strict` (`image_files`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from slimdiff.data.builtin import builtin_dataset
from slimdiff.data.conditions import KINDS as CONDITION_KINDS
from slimdiff.data.folder_dataset import FolderDataset
from slimdiff.data.hf_dataset import HFDataset, looks_like_hf_dir
from slimdiff.errors import DataError


def make_dataset(
    source: str,
    size: int,
    *,
    seed: int = 0,
    strict: bool = False,
    image_column: str = "image",
    length: int | None = None,
    conditioning: str = "none",
    label_column: str | None = None,
    caption_column: str | None = None,
    held_out: bool = False,
) -> Dataset:
    """The dataset named by `source`: `builtin:…` (`slimdiff.data.builtin`), an image folder, or a Hugging
    Face dataset (hub name or local dir). `length` caps a folder / HF set and sets the number of built-in crops.
    With `conditioning` "class" or "text" items are (image, label) or (image, caption), and the dataset's
    `class_names` lists the classes (see `slimdiff.data.conditions`; a built-in set's captions are its class names). `held_out` draws a built-in crop set's
    crops from the held-out strip of its pictures (other sources are read as they are)."""
    if size < 1:
        raise DataError(f"image size must be positive, got {size}")
    if length is not None and length < 1:
        raise DataError(f"length must be positive, got {length}")
    if conditioning not in CONDITION_KINDS:
        raise DataError(f"unknown conditioning {conditioning!r}; valid: {', '.join(CONDITION_KINDS)}")
    if source.startswith("builtin:"):
        kind = source.removeprefix("builtin:")
        data = builtin_dataset(
            kind, size, seed=seed, length=length, labelled=conditioning != "none", held_out=held_out
        )
        return ClassCaptions(data) if conditioning == "text" else data
    path = Path(source).expanduser()
    if path.is_dir() and not looks_like_hf_dir(path):
        return FolderDataset(path, size, strict=strict, length=length, conditioning=conditioning)
    if path.exists() and not path.is_dir():
        raise DataError(
            f"data source {source} is a file; give a folder of images, a dataset name or builtin:…"
        )
    if not path.exists() and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        raise DataError(f"data folder {source} does not exist")
    return HFDataset(
        source,
        size,
        image_column=image_column,
        strict=strict,
        length=length,
        conditioning=conditioning,
        label_column=label_column,
        caption_column=caption_column,
    )


class ClassCaptions(Dataset):
    """A labelled built-in set captioned by its class names ("brick", "grass", …): items (image, caption), so
    a text model trains offline (configs/tiny-text.yaml) on the same pictures a class model does."""

    def __init__(self, labelled: Dataset):
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.labelled)

    def __getitem__(self, index: int):
        image, label = self.labelled[index]
        return image, self.labelled.class_names[int(label)]


def draw_items(
    source: str, size: int, n: int, seed: int = 0, skipped: list[str] | None = None, **options
) -> tuple[list, Dataset]:
    """`n` items of `source` for metrics, and the dataset they came from: a seeded random subset of a folder /
    HF set (error if it holds fewer than n readable ones), or the first n crops of a built-in set. `options`
    go to `make_dataset` (conditioning="class": items are (image, label)). Unreadable files are skipped; their
    names are appended to `skipped` when a list is given."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if skipped is not None else "default")
        length = n if source.startswith("builtin:") else None
        dataset = make_dataset(source, size, seed=seed, length=length, **options)
        if len(dataset) < n:
            raise DataError(f"{source} holds {len(dataset)} readable images, fewer than the {n} requested")
        items = [dataset[int(i)] for i in _subset(len(dataset), n, seed)]
    if skipped is not None:
        skipped.extend(dataset.skipped)
    return items, dataset


def load_images(
    source: str, size: int, n: int, seed: int = 0, skipped: list[str] | None = None
) -> torch.Tensor:
    """`n` images (n, 3, size, size) in [-1, 1] from `source` (see `draw_items`)."""
    return torch.stack(draw_items(source, size, n, seed, skipped)[0])


def draw_held_out(
    source: str, size: int, n: int, seed: int = 0, skipped: list[str] | None = None, **options
) -> tuple[list, Dataset]:
    """`draw_items` by the one held-out rule of every evaluation: seed + 1, and a built-in crop set's crops
    from the held-out strip of its pictures, which no training crop touches. A folder or HF set gives a seeded
    subset of the same images (keep your own held-out folder if training images must be excluded), digits
    likewise; Fashion-MNIST holds out its test split by name (`builtin:fashion-mnist:test`)."""
    return draw_items(source, size, n, seed + 1, skipped, held_out=True, **options)


def held_out_images(source: str, size: int, n: int, seed: int = 0) -> torch.Tensor:
    """`n` real images (n, 3, size, size) for evaluation, by the held-out rule of `draw_held_out`."""
    return torch.stack(draw_held_out(source, size, n, seed)[0])


def _subset(total: int, n: int, seed: int) -> np.ndarray:
    if n == total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
