"""Image datasets selected by one string (docs/architecture.md): a folder, a Hugging Face dataset, or built-in images.

Every dataset yields (3, size, size) float tensors in [-1, 1]. Preprocessing follows the paper: centre-crop
to a square, resize to the target size, scale to [-1, 1], no flips. Grayscale / RGBA / palette images become
RGB. Unreadable files are skipped with a warning (and counted in `dataset.skipped`), or are an error under
`strict`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from slimdiff.data.builtin import builtin_dataset
from slimdiff.data.conditions import KINDS as CONDITION_KINDS
from slimdiff.data.conditions import column_conditions, folder_captions, folder_classes
from slimdiff.data.transforms import UPSCALE_WARNING, to_tensor
from slimdiff.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# PIL raises these for files that are not images, are cut short, or are too large to decode safely.
_READ_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
    DataError,
)


class _SkippingDataset(Dataset):
    """Shared skip-or-fail handling: a bad item is replaced by the next readable one (with its own condition).
    With `conditions` (a label or caption per item), items are (image, condition)."""

    strict: bool
    skipped: list[str]
    conditions: list | None = None
    class_names: list[str] | None = None

    def _condition(
        self, conditioning: str, root_or_table, source: str, label_column=None, caption_column=None
    ):
        if conditioning == "none":
            return
        if isinstance(root_or_table, Path):
            paths = self.paths
            if conditioning == "class":
                self.conditions, self.class_names = folder_classes(root_or_table, paths)
            else:
                self.conditions = folder_captions(root_or_table, paths)
        else:
            column = label_column if conditioning == "class" else caption_column
            self.conditions, self.class_names = column_conditions(root_or_table, source, conditioning, column)

    def _load(self, index: int) -> Image.Image:
        raise NotImplementedError

    def _name(self, index: int) -> str:
        raise NotImplementedError

    def _bad(self, name: str, error: Exception) -> None:
        message = f"unreadable image {name}: {error}"
        if self.strict:
            raise DataError(f"{message} (strict: true; remove the file or set strict: false to skip it)")
        warnings.warn(f"skipping {message}", stacklevel=3)
        self.skipped.append(name)

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(len(self)):
            i = (index + offset) % len(self)
            try:
                image = self._load(i)
                image.load()
                tensor = to_tensor(image, self.size)
            except _READ_ERRORS as error:
                self._bad(self._name(i), error)
                continue
            if min(image.size) * UPSCALE_WARNING < self.size and not getattr(self, "warned_small", False):
                self.warned_small = True
                warnings.warn(
                    f"{self._name(i)} is {image.size[0]}×{image.size[1]}: upscaling it to {self.size}² leaves little "
                    "detail (warned once per data set)",
                    stacklevel=2,
                )
            return tensor if self.conditions is None else (tensor, self.conditions[i])
        raise DataError("no readable image in the data source")


class FolderDataset(_SkippingDataset):
    """Every image below a folder (recursively), in sorted path order."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        strict: bool = False,
        length: int | None = None,
        conditioning: str = "none",
    ):
        self.size, self.strict, self.skipped = size, strict, []
        candidates = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not candidates:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
        # A cheap header + structure check up front, so a non-image or a cut-short PNG never enters an epoch.
        self.paths = []
        for path in candidates:
            try:
                with Image.open(path) as image:
                    image.verify()
            except _READ_ERRORS as error:
                self._bad(str(path), error)
                continue
            self.paths.append(path)
        if not self.paths:
            raise DataError(f"none of the {len(candidates)} image files under {root} could be read")
        if length is not None:
            self.paths = self.paths[:length]
        self._condition(conditioning, root, str(root))

    def __len__(self) -> int:
        return len(self.paths)

    def _name(self, index: int) -> str:
        return str(self.paths[index])

    def _load(self, index: int) -> Image.Image:
        return Image.open(self.paths[index])


class HFDataset(_SkippingDataset):
    """An image column of a Hugging Face dataset (hub name, local dataset dir, or `save_to_disk` output)."""

    def __init__(
        self,
        source: str,
        size: int,
        *,
        image_column: str,
        strict: bool = False,
        length: int | None = None,
        conditioning: str = "none",
        label_column: str | None = None,
        caption_column: str | None = None,
    ):
        self.size, self.strict, self.skipped = size, strict, []
        self.source = source
        table = _open_hf(source)
        if image_column not in table.column_names:
            raise DataError(
                f"dataset {source!r} has no column {image_column!r}; columns: {', '.join(table.column_names)} "
                "(set image_column)"
            )
        if len(table) == 0:
            raise DataError(f"dataset {source!r} is empty")
        if length is not None:
            table = table.select(range(min(length, len(table))))
        self._condition(conditioning, table, source, label_column, caption_column)
        self.column = table.cast_column(image_column, _image_feature(decode=False))[image_column]

    def __len__(self) -> int:
        return len(self.column)

    def _name(self, index: int) -> str:
        return f"{self.source}[{index}]"

    def _load(self, index: int) -> Image.Image:
        item = self.column[index]
        if item.get("bytes") is not None:
            return Image.open(io.BytesIO(item["bytes"]))
        return Image.open(item["path"])


def _image_feature(decode: bool):
    from datasets import Image as ImageFeature

    return ImageFeature(decode=decode)


def _open_hf(source: str):
    """The train split of a dataset saved with `save_to_disk`, a local data dir, or a hub name."""
    import datasets

    path = Path(source)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(source)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as error:
        raise DataError(f"could not open dataset {source!r}: {error}") from None
    if isinstance(loaded, datasets.DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded))
        loaded = loaded[split]
    return loaded


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
) -> Dataset:
    """The dataset named by `source`: `builtin:photos|textures|digits`, an image folder, or a Hugging Face
    dataset (hub name or local dir). `length` caps a folder / HF set and sets the number of built-in crops.
    With `conditioning` "class" or "text" items are (image, label) or (image, caption), and the dataset's
    `class_names` lists the classes (see `slimdiff.data.conditions`)."""
    if size < 1:
        raise DataError(f"image size must be positive, got {size}")
    if length is not None and length < 1:
        raise DataError(f"length must be positive, got {length}")
    if conditioning not in CONDITION_KINDS:
        raise DataError(f"unknown conditioning {conditioning!r}; valid: {', '.join(CONDITION_KINDS)}")
    if source.startswith("builtin:"):
        if conditioning == "text":
            raise DataError(
                f"{source} has no captions; text conditioning needs a folder with metadata or a dataset"
            )
        kind = source.removeprefix("builtin:")
        return builtin_dataset(kind, size, seed=seed, length=length, labelled=conditioning == "class")
    path = Path(source).expanduser()
    if path.is_dir() and not _looks_like_hf_dir(path):
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


def _looks_like_hf_dir(path: Path) -> bool:
    markers = ("dataset_info.json", "dataset_dict.json", "state.json")
    tables = ("*.parquet", "*/*.parquet", "*.arrow", "*/*.arrow")  # the hub layout keeps them in data/
    return any((path / m).exists() for m in markers) or any(next(path.glob(g), None) for g in tables)


def draw_items(
    source: str, size: int, n: int, seed: int = 0, skipped: list[str] | None = None, **options
) -> tuple[list, Dataset]:
    """`n` items of `source` for metrics, and the dataset they came from: a seeded random subset of a folder /
    HF set (error if it holds fewer than n readable ones), or the first n crops of a built-in set. `options` go
    to `make_dataset` (conditioning="class": items are (image, label)). Unreadable files are skipped; their
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


def held_out_images(source: str, size: int, n: int, seed: int = 0) -> torch.Tensor:
    """`n` real images for evaluation: `load_images` with seed + 1, so a built-in set gives other crops than a
    run trained with data.seed = seed draws (a folder or HF set gives a seeded subset; keep your own held-out
    folder if the training folder must be excluded). Every evaluation of slimdiff uses this one rule."""
    return load_images(source, size, n, seed=seed + 1)


def _subset(total: int, n: int, seed: int) -> np.ndarray:
    if n == total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


__all__ = ["FolderDataset", "HFDataset", "draw_items", "held_out_images", "load_images", "make_dataset"]
