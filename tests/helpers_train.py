"""Shared helpers for the data / training tests: image folders with bad files, tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(root: Path, bad: bool = True) -> Path:
    """An RGB, a grayscale (in a subfolder) and an RGBA image; with `bad`, also a truncated PNG and a text
    file named `.jpg`."""
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "sub" / "gray.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(root / "rgba.png")
    if bad:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "truncated.png")
        data = (root / "truncated.png").read_bytes()
        (root / "truncated.png").write_bytes(data[: len(data) // 2])
        (root / "not-an-image.jpg").write_text("this is text, not a JPEG")
    return root
