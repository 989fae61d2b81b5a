"""Image files → training tensors: one way to open an image file (a pixel limit of our own, EXIF orientation),
every PIL mode decoded to correct 8-bit RGB, then the paper's preprocessing (centre square crop, resize, scale
to [-1, 1], no flips)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from slimdiff.errors import DataError

# Transparent pixels are composited on this background instead of losing their alpha.
BACKGROUND = (255, 255, 255)
# An image whose short side is under size / UPSCALE_WARNING is blown up so much that it carries little detail.
UPSCALE_WARNING = 4
# Decoding is refused above this many pixels (PIL only warns between 89 and 179 MP and would decode GBs):
# large enough for any camera photo, small enough that one image cannot exhaust memory.
MAX_PIXELS = 64 * 2**20


def check_pixel_limit(image: Image.Image, name: str) -> None:
    """Refuse an opened (not yet decoded) image over `MAX_PIXELS`: its size comes from the header."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(
            f"{name} has {width}×{height} pixels, over slimdiff's limit of {MAX_PIXELS / 2**20:.0f} MP: "
            "downscale it"
        )


def open_image(source: str | Path | bytes) -> Image.Image:
    """An image file (or its bytes) decoded upright: refused with a DataError above `MAX_PIXELS` before any
    pixel is decoded (the size is in the header), and turned as its EXIF orientation says (camera photos)."""
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    try:
        check_pixel_limit(image, "image" if isinstance(source, bytes) else str(source))
    except DataError:
        image.close()
        raise
    with image:  # the upright copy is loaded; the file is closed here
        return ImageOps.exif_transpose(image)


def _high_bit_depth_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer or float grayscale → 8-bit "L", scaled by the range the mode can hold
    (PIL's own convert clips 16-bit values to 255, which turns most images white)."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        # float images are [0, 1] when they fit in it, else 8-bit valued
        scale = 1.0 if array.size and np.nanmax(array) <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or (array.size and array.max() > 255):
        scale = 65535.0
    else:
        scale = 255.0
    if not np.isfinite(array).all():
        raise DataError(f"{image.mode} image holds NaN or infinite values")
    return Image.fromarray((np.clip(array / scale, 0, 1) * 255).round().astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode PIL opens as 8-bit RGB: high bit depths rescaled, CMYK / YCbCr / palette converted, and
    transparency (RGBA, LA, PA, a palette's transparent index) composited on a white background."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _high_bit_depth_to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """Paper preprocessing of one PIL image: RGB, centre square crop, resize, scale to [-1, 1]."""
    image = to_rgb(image)
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return (array.permute(2, 0, 1).float() / 127.5 - 1.0).clamp(-1.0, 1.0)
