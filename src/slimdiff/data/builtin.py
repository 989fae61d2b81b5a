"""Built-in data sets that ship inside installed packages, so everything runs with no download at all.

- `builtin:photos`, `builtin:textures`: random square crops of scikit-image's images; with class labels,
  the source image is the class (textures: brick, grass, gravel).
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
BUILTIN_SETS = (*BUILTIN_IMAGES, "digits", "fashion-mnist", "fashion-mnist:test")
BUILTIN_LENGTH = 10_000  # crops per epoch of a built-in crop set unless `length` says otherwise


class BuiltinCrops(Dataset):
    """Random square crops of images that ship inside scikit-image, resized to `size`; the crop side is drawn
    between `size` and 4 × `size` (capped by the image), mixing scales. With `labelled`, items are
    (image, index of the source image)."""

    def __init__(
        self, kind: str, size: int, *, seed: int = 0, length: int | None = None, labelled: bool = False
    ):
        import skimage.data

        self.kind, self.size, self.seed, self.labelled = kind, size, seed, labelled
        self.length = BUILTIN_LENGTH if length is None else length
        self.skipped: list[str] = []
        self.class_names = list(BUILTIN_IMAGES[kind])
        self.images = []
        for name in BUILTIN_IMAGES[kind]:
            array = torch.from_numpy(np.ascontiguousarray(getattr(skimage.data, name)()))
            if array.ndim == 2:
                array = array[..., None].expand(-1, -1, 3)
            self.images.append(array.permute(2, 0, 1).contiguous())  # (3, H, W) uint8
            if min(array.shape[:2]) < size:
                raise DataError(f"builtin:{kind} images are smaller than size {size}")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        label = int(rng.integers(len(self.images)))
        image = self.images[label]
        h, w = image.shape[1:]
        side = int(rng.integers(self.size, min(4 * self.size, h, w) + 1))
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = image[None, :, top : top + side, left : left + side].float()
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
    kind: str, size: int, *, seed: int = 0, length: int | None = None, labelled: bool = False
):
    if kind not in BUILTIN_SETS:
        raise DataError(
            f"unknown built-in data set 'builtin:{kind}'; valid: {', '.join(f'builtin:{k}' for k in BUILTIN_SETS)}"
        )
    if kind == "digits":
        return BuiltinDigits(size, seed=seed, length=length, labelled=labelled)
    if kind.startswith("fashion-mnist"):
        split = "test" if kind.endswith(":test") else "train"
        return FashionMNIST(size, split=split, seed=seed, length=length, labelled=labelled)
    return BuiltinCrops(kind, size, seed=seed, length=length, labelled=labelled)
