"""What every file-backed dataset shares: which files are images, which errors mean "unreadable", and the
skip-or-fail rule — an unreadable item is skipped with a warning (and counted in `dataset.skipped`), or is an
error under `strict`. Grayscale / RGBA / palette images become RGB through `transforms.to_tensor`."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from slimdiff.data.conditions import column_conditions, folder_captions, folder_classes
from slimdiff.data.transforms import UPSCALE_WARNING, to_tensor
from slimdiff.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder` (recursively, by suffix), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# PIL raises these for files that are not images, are cut short, or are too large to decode safely.
READ_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
    DataError,
)


class SkippingDataset(Dataset):
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
            except READ_ERRORS as error:
                self._bad(self._name(i), error)
                continue
            if min(image.size) * UPSCALE_WARNING < self.size and not getattr(self, "warned_small", False):
                self.warned_small = True
                warnings.warn(
                    f"{self._name(i)} is {image.size[0]}×{image.size[1]}: upscaling it to {self.size}² "
                    "leaves little detail (warned once per data set)",
                    stacklevel=2,
                )
            return tensor if self.conditions is None else (tensor, self.conditions[i])
        raise DataError("no readable image in the data source")
