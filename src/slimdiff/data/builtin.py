"""Built-in data sets that ship inside installed packages, so everything runs with no download at all.

- `builtin:photos`, `builtin:textures`: random square crops of scikit-image's pictures; with class labels,
  the source picture is the class (textures: brick, grass, gravel). The right-most `HELD_OUT_PERCENT` % of
  every picture's columns is held out: training crops never touch it, held-out crops (evaluation) come only
  from it. `builtin:photos:native` / `builtin:textures:native`: crops of side `size`, not resized.
- `builtin:digits`: scikit-learn's 1797 8×8 handwritten digits (10 classes), resized to the training size.
- `builtin:fashion-mnist` / `builtin:fashion-mnist:test`: Fashion-MNIST's train / test split (10 classes),
  from Debian's `dataset-fashion-mnist` (see `slimdiff.data.fashion_mnist`).

Item i depends only on (seed, i), so an epoch is reproducible in any order and across processes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from slimdiff.data.fashion_mnist import FashionMNIST
from slimdiff.errors import DataError

# Images shipped inside scikit-image.
BUILTIN_IMAGES = {
    "photos": (
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
    ),
    # Grayscale textures, rich in high frequencies — what slim models lose first.
    "textures": ("brick", "grass", "gravel"),
}
NATIVE = ":native"  # suffix of a crop set whose crops keep their pixels (side = size, no resize)
BUILTIN_SETS = (
    *BUILTIN_IMAGES,
    *(f"{kind}{NATIVE}" for kind in BUILTIN_IMAGES),
    "digits",
    "fashion-mnist",
    "fashion-mnist:test",
)
BUILTIN_LENGTH = 10_000  # crops per epoch of a built-in crop set unless `length` says otherwise
# 30 %: the narrowest picture (chelsea, 451 wide) keeps a 136-pixel held-out strip, so sizes up to 128 fit and
# at size 32 both regions still draw every crop side up to 4 × 32.
HELD_OUT_PERCENT = 30
CROP_RULE = 2  # revision of the crops of item i; cache keys include it (1: no held-out strip)


def source_pictures(kind: str) -> dict[str, torch.Tensor]:
    """The pictures of built-in crop set `kind` by name, each (3, H, W) uint8 (grey ones as three channels)."""
    import skimage.data

    pictures = {}
    for name in BUILTIN_IMAGES[kind]:
        array = torch.from_numpy(np.ascontiguousarray(getattr(skimage.data, name)()))
        if array.ndim == 2:
            array = array[..., None].expand(-1, -1, 3)
        pictures[name] = array.permute(2, 0, 1).contiguous()
    return pictures


def held_out_start(width: int) -> int:
    """The first held-out column of a picture `width` pixels wide; training crops lie left of it."""
    return width * (100 - HELD_OUT_PERCENT) // 100


class BuiltinCrops(Dataset):
    """Random square crops of a built-in crop set's pictures: from the training region (left of
    `held_out_start`) or, with `held_out`, only from the held-out strip right of it, so no held-out image
    shares a pixel with a training one. The crop side is drawn between `size` and 4 × `size`, capped by the
    held-out strip so that both regions draw the same sides, and resized to `size` (bicubic, antialiased);
    `native` crops have side `size` and keep their pixels. With `labelled`, items are (image, index of the
    source picture)."""

    def __init__(
        self,
        kind: str,
        size: int,
        *,
        seed: int = 0,
        length: int | None = None,
        labelled: bool = False,
        held_out: bool = False,
        native: bool = False,
    ):
        self.kind, self.size, self.seed, self.labelled = kind, size, seed, labelled
        self.length = BUILTIN_LENGTH if length is None else length
        self.skipped: list[str] = []
        pictures = source_pictures(kind)
        self.class_names = list(pictures)
        # the largest square of each picture's held-out strip, the narrower of its two regions
        fits = {
            name: min(p.shape[1], p.shape[2] - held_out_start(p.shape[2])) for name, p in pictures.items()
        }
        tightest = min(fits, key=fits.get)
        if size > fits[tightest]:
            raise DataError(
                f"size {size} does not fit builtin:{kind}: the held-out strip of '{tightest}' (the right-most "
                f"{HELD_OUT_PERCENT} % of its columns) holds squares up to {fits[tightest]}; use a smaller "
                "size or a folder of images"
            )
        self.regions, self.largest = [], []
        for name, picture in pictures.items():
            start = held_out_start(picture.shape[2])
            self.regions.append(picture[:, :, start:] if held_out else picture[:, :, :start])
            self.largest.append(size if native else min(4 * size, fits[name]))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        label = int(rng.integers(len(self.regions)))
        region = self.regions[label]
        h, w = region.shape[1:]
        side = int(rng.integers(self.size, self.largest[label] + 1))
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = region[None, :, top : top + side, left : left + side].float()
        if side != self.size:
            crop = F.interpolate(crop, size=(self.size, self.size), mode="bicubic", antialias=True)
        tensor = (crop[0] / 127.5 - 1.0).clamp(-1.0, 1.0)
        return (tensor, label) if self.labelled else tensor


class BuiltinDigits(Dataset):
    """scikit-learn's 8×8 digits (grey, ink bright on dark), resized to `size`; with `labelled`, items are
    (image, digit). `length` caps the set (first items of a seeded order)."""

    def __init__(self, size: int, *, seed: int = 0, length: int | None = None, labelled: bool = False):
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = np.random.default_rng(seed).permutation(len(digits.target))[:length]
        images = torch.from_numpy(digits.images[order]).float()[:, None] / 16.0  # values 0..16 → [0, 1]
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        self.images = (images.clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1).contiguous()
        self.labels = [int(d) for d in digits.target[order]]
        self.class_names = [str(d) for d in range(10)]
        self.labelled, self.skipped = labelled, []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return (self.images[index], self.labels[index]) if self.labelled else self.images[index]


def builtin_dataset(
    kind: str,
    size: int,
    *,
    seed: int = 0,
    length: int | None = None,
    labelled: bool = False,
    held_out: bool = False,
) -> Dataset:
    """Built-in set `kind` (one of `BUILTIN_SETS`). `held_out` picks a crop set's held-out strip; the other
    sets ignore it (Fashion-MNIST holds out its test split by name, digits hold nothing out)."""
    if kind not in BUILTIN_SETS:
        raise DataError(
            f"unknown built-in data set 'builtin:{kind}'; valid: {', '.join(f'builtin:{k}' for k in BUILTIN_SETS)}"
        )
    if kind == "digits":
        return BuiltinDigits(size, seed=seed, length=length, labelled=labelled)
    if kind.startswith("fashion-mnist"):
        split = "test" if kind.endswith(":test") else "train"
        return FashionMNIST(size, split=split, seed=seed, length=length, labelled=labelled)
    crops = kind.removesuffix(NATIVE)
    return BuiltinCrops(
        crops, size, seed=seed, length=length, labelled=labelled, held_out=held_out, native=crops != kind
    )
