"""Fashion-MNIST (Zalando, 70 000 28×28 grey images of 10 clothing classes), slimdiff's reference benchmark.

`builtin:fashion-mnist` is the 60 000-image training split, `builtin:fashion-mnist:test` the 10 000-image
test split (evaluate against it: `--data builtin:fashion-mnist:test`). The files are the four idx .gz files
that Debian's `dataset-fashion-mnist` installs in /usr/share/datasets/fashion-mnist/ (`sudo apt-get install
dataset-fashion-mnist`); the environment variable SLIMDIFF_FASHION_MNIST names another folder holding them.
Nothing is downloaded. The idx files are parsed here with numpy; magic numbers and sizes are checked.

Images are ink bright on a black background (0 = background). At size 32 they are padded by 2 pixels of
background on each side (the 28×28 content stays pixel-exact), at 28 kept as they are, at any other size
resized (bilinear, antialiased). `to_fmnist28` is the inverse for generated images: RGB [-1, 1] at any size
→ grey (mean of the channels) 28×28 in [-1, 1].
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from slimdiff.errors import DataError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "SLIMDIFF_FASHION_MNIST"
INSTALL = "sudo apt-get install dataset-fashion-mnist"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SPLITS = {"train": "train", "test": "t10k"}  # split → file prefix
SIDE, PADDED = 28, 32
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801  # idx: uint8 data, 3 resp. 1 dimensions


def data_dir() -> Path:
    """Where the idx files are: $SLIMDIFF_FASHION_MNIST if set, else Debian's folder."""
    return Path(os.environ.get(ENV_VAR) or DEBIAN_DIR).expanduser()


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """One idx file (gzip) as a uint8 array; DataError in one line when missing, cut short or not idx."""
    if not path.is_file():
        raise DataError(
            f"Fashion-MNIST file {path} is missing: install it with `{INSTALL}` or set {ENV_VAR} to a folder "
            "holding train/t10k-images-idx3-ubyte.gz and train/t10k-labels-idx1-ubyte.gz"
        )
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"Fashion-MNIST file {path} is corrupt ({error}); reinstall `{INSTALL}`") from None
    header = 4 * (1 + dims)
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path} is not an idx file (bad magic number); reinstall `{INSTALL}`")
    shape = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(1, 1 + dims))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes, its header {shape} says {expected}: truncated or corrupt; "
            f"reinstall `{INSTALL}`"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


@functools.lru_cache(maxsize=4)
def _load(folder: str, split: str, stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    prefix = Path(folder) / SPLITS[split]
    images = _read_idx(Path(f"{prefix}-images-idx3-ubyte.gz"), _IMAGES_MAGIC, 3)
    labels = _read_idx(Path(f"{prefix}-labels-idx1-ubyte.gz"), _LABELS_MAGIC, 1)
    if images.shape[1:] != (SIDE, SIDE) or len(images) != len(labels) or labels.max(initial=0) >= 10:
        raise DataError(
            f"{prefix}-*: {len(images)} images of {images.shape[1:]} and {len(labels)} labels are not "
            f"Fashion-MNIST (28×28, one label 0–9 per image); reinstall `{INSTALL}`"
        )
    return images, labels


def load_split(split: str = "train", folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 28, 28), uint8 labels (N,)) of a split ("train" or "test"), read once per process
    (re-read when a file changes)."""
    if split not in SPLITS:
        raise DataError(f"unknown Fashion-MNIST split {split!r}; valid: {', '.join(SPLITS)}")
    folder = folder or data_dir()
    stamp = tuple(
        (p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else None
        for p in sorted(folder.glob(f"{SPLITS[split]}-*.gz"))
    )
    return _load(str(folder), split, stamp)


def to_model_size(images: Tensor, size: int) -> Tensor:
    """(N, 1, 28, 28) in [-1, 1] → (N, 1, size, size): padded with background (-1) at 32, resized otherwise."""
    if size == SIDE:
        return images
    if size == PADDED:
        return F.pad(images, (2, 2, 2, 2), value=-1.0)
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True).clamp(-1, 1)


def to_fmnist28(images: Tensor) -> Tensor:
    """Generated RGB images (N, 3, S, S) in [-1, 1] → grey (N, 1, 28, 28) in [-1, 1], the classifier's
    input: the mean of the channels, then the 2-pixel border cropped at S = 32 (the padding of
    `to_model_size`) or a bilinear antialiased resize at other sizes."""
    grey = images.float().mean(dim=1, keepdim=True)
    side = grey.shape[-1]
    if side == PADDED:
        return grey[..., 2:-2, 2:-2]
    if side == SIDE:
        return grey
    return F.interpolate(grey, size=(SIDE, SIDE), mode="bilinear", antialias=True).clamp(-1, 1)


class FashionMNIST(Dataset):
    """One split at `size` as RGB (3, size, size) in [-1, 1]; with `labelled`, items are (image, class).
    `length` keeps the first items of a seeded order (as `builtin:digits`); without it, the whole split in
    file order."""

    def __init__(
        self,
        size: int,
        *,
        split: str = "train",
        seed: int = 0,
        length: int | None = None,
        labelled: bool = False,
    ):
        images, labels = load_split(split)
        order = np.arange(len(labels))
        if length is not None:
            order = np.random.default_rng(seed).permutation(len(labels))[:length]
        self.images, self.labels = images[order], labels[order]  # uint8: 47 MB for the train split
        self.size, self.labelled, self.skipped = size, labelled, []
        self.class_names = list(CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        grey = torch.from_numpy(self.images[index].astype(np.float32))[None, None] / 127.5 - 1.0
        image = to_model_size(grey, self.size)[0].expand(3, -1, -1).contiguous()
        return (image, int(self.labels[index])) if self.labelled else image


def split_images(split: str = "train") -> tuple[Tensor, Tensor]:
    """A whole split at 28×28, the classifier's input: (N, 1, 28, 28) float in [-1, 1], (N,) int64 labels."""
    images, labels = load_split(split)
    pixels = torch.from_numpy(images.astype(np.float32))[:, None] / 127.5 - 1.0
    return pixels, torch.from_numpy(labels.astype(np.int64))
