"""What a `POST /api/generate` may hold, checked by pydantic before any work: types are strict (a JSON true
is not a number, "3" is not a count), numbers are finite and within the limits below, unknown fields are
refused, and an init image is a PNG / JPEG / WebP data URL of at most `MAX_UPLOAD_BYTES` that decodes.

Defaults are those of `slimdiff sample` (`deploy/sample_folder.SampleSettings`), so the page and the command
draw the same images from the same seed."""

from __future__ import annotations

import base64
import binascii
import re

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from slimdiff.deploy.sample_folder import DEFAULT_SCHEDULER, DEFAULT_STEPS, SampleSettings
from slimdiff.errors import DataError, SlimdiffError
from slimdiff.sampling.init_image import fit_image
from slimdiff.sampling.solvers import SAMPLERS

MAX_STEPS, MAX_IMAGES = 200, 8
MAX_UPLOAD_BYTES = 4 * 2**20  # an init image file; the model draws at most a few hundred pixels a side
MAX_TEXT = 1000  # characters of a prompt
DATA_URL = re.compile(r"data:image/(png|jpeg|webp);base64,([A-Za-z0-9+/=\s]*)", re.ASCII)
# base64 is 4 characters per 3 bytes, plus the data URL's head
MAX_BODY = (MAX_UPLOAD_BYTES * 4) // 3 + 64 * 1024


class BadRequest(SlimdiffError):
    """A request that cannot be served as sent; its message is shown on the page."""


class GenerateRequest(BaseModel):
    """One generation: the student's images, the teacher's from the same noise, and the stitched ones."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    sampler: str = Field(DEFAULT_SCHEDULER, description="a solver of `slimdiff sample --scheduler`")
    steps: int = Field(DEFAULT_STEPS, ge=1, le=MAX_STEPS, description="solver steps")
    seed: int = Field(SampleSettings.seed, ge=0, le=2**31 - 1, description="seed of the initial noise")
    n: int = Field(1, ge=1, le=MAX_IMAGES, description="images per model")
    label: int | None = Field(None, ge=0, description="class number (class-conditional models)")
    prompt: str = Field("", max_length=MAX_TEXT, description="text prompt (text-conditional models)")
    negative_prompt: str = Field("", max_length=MAX_TEXT, description="what guidance steers away from")
    guidance: float | None = Field(None, ge=0.0, le=50.0, description="classifier-free guidance scale w")
    stitch: float | None = Field(
        None, ge=0.0, le=1.0, description="share of the steps the student runs before the teacher"
    )
    init_image: str | None = Field(
        None,
        max_length=MAX_BODY,
        description="image-to-image: a PNG / JPEG / WebP data URL, fitted to the model's size",
    )
    strength: float | None = Field(
        None, ge=0.0, le=1.0, description="share of the steps run from the noised init image (default 0.8)"
    )

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, sampler: str) -> str:
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown solver {sampler!r}; valid: {', '.join(SAMPLERS)}")
        return sampler


def decode_upload(data_url: str, size: tuple[int, int]) -> Image.Image:
    """An uploaded data URL as an RGB image of `size` (height, width): centre-cropped to the model's aspect
    and resized, since a page user cannot be asked to crop to 32×32 first."""
    from slimdiff.data.transforms import open_image, to_rgb

    match = DATA_URL.fullmatch(data_url)
    if match is None:
        raise BadRequest("init_image must be a PNG, JPEG or WebP image (a data:image/…;base64 URL)")
    try:
        raw = base64.b64decode(match.group(2), validate=False)
    except (binascii.Error, ValueError):
        raise BadRequest("init_image is not valid base64") from None
    if len(raw) > MAX_UPLOAD_BYTES:
        raise BadRequest(f"init_image is {len(raw)} bytes; at most {MAX_UPLOAD_BYTES} are accepted")
    try:
        image = to_rgb(open_image(raw))
    except DataError as error:
        raise BadRequest(f"init_image: {str(error).splitlines()[0]}") from None
    except (OSError, ValueError, Image.DecompressionBombError):  # not an image, truncated, …
        raise BadRequest("init_image is not an image PIL can read; upload a PNG, JPEG or WebP file") from None
    return fit_image(image, size)
