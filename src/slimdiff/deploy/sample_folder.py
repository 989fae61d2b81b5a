"""`sample_folder`: the whole of `slimdiff sample` — a model, as PyTorch weights or as an ONNX export and with
any of its decoders, drawn into numbered PNGs (written batch by batch, each aside and renamed into place, so an
interrupted run keeps whole images), grid.png and, last, sample.json (the settings, the noise schedule and the
wall time): a folder with sample.json holds a whole set. With an init image (and a mask) every image starts from
it (image-to-image, inpainting: `sampling/init_image.py`); the image is read and checked before anything is
written. A batch the memory estimate says cannot fit
(`sampling.memory`) is refused before anything is written; a write that fails (a full disk) removes what the
run wrote.

It lives in deploy/ because it picks between the deployed forms of a model (`load_onnx_pipeline`,
`use_decoder`), which sampling/ — the layer deploy/ builds on — cannot import.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from slimdiff.data.transforms import open_image, to_rgb
from slimdiff.deploy.decoders import use_decoder
from slimdiff.deploy.export import graph_precision, load_onnx_pipeline
from slimdiff.deploy.onnx_decoder import SLIM_DECODER
from slimdiff.errors import WRITE_ERRORS, ConfigError, DataError, ModelError, OutputError, write_failure
from slimdiff.models.loading import load_unet
from slimdiff.reporting.images import save_grid, to_uint8
from slimdiff.sampling.call_inputs import prompt_inputs
from slimdiff.sampling.conditions import resolve_label
from slimdiff.sampling.generate import generate
from slimdiff.sampling.guidance import conditioning
from slimdiff.sampling.init_image import drawn_size, fit_image, init_pixels, resolve_strength
from slimdiff.sampling.memory import check_batch_memory
from slimdiff.sampling.pipeline import SlimDiffusionPipeline, load_pipeline

GRID_IMAGES = 256  # the grid shows the first images only: a 100k-image grid would not fit in memory
# what a model samples with when not told: a step-distilled model (`default_steps` in its model_index.json) its
# own saved scheduler and step count, any other these
DEFAULT_SCHEDULER, DEFAULT_STEPS = "dpm++", 20


@dataclass(frozen=True)
class SampleSettings:
    """What `slimdiff sample` draws; sample.json records these fields (all but `out`)."""

    model: str  # pipeline folder, run folder, UNet folder or hub id
    out: Path
    scheduler: str | None = None  # None: the model's own if step-distilled, else DEFAULT_SCHEDULER
    steps: int | None = None  # None: the model's `default_steps` if step-distilled, else DEFAULT_STEPS
    num_images: int = 16
    batch_size: int = 8
    seed: int = 0
    eta: float = 0.0
    label: str | None = None  # a class number or name (class-conditional models)
    prompt: str | None = None  # text-conditional models
    negative_prompt: str = ""
    guidance: float | None = None
    stitch_teacher: str | None = None  # a teacher UNet for the late steps
    stitch_fraction: float = 0.5  # the share of the steps the model runs before the teacher
    onnx: bool = False  # the UNet steps and the decoder on onnxruntime (an ONNX export folder)
    precision: str | None = None  # the ONNX graphs: fp32 or int8 (None: int8 when the export has them)
    decoder: str = "full"  # full, slim (MODEL/slim_decoder) or a slim decoder folder
    init_image: str | None = None  # image-to-image: the image every sample starts from
    strength: float | None = None  # the share of the steps run from it (None: diffusers' default)
    mask: str | None = None  # inpainting: white is repainted, black kept

    def record(self) -> dict:
        """sample.json's settings: a negative prompt only with a prompt, a fraction only with a teacher, the
        strength used only with an init image, the ONNX graphs used (fp32 or int8) only with `onnx`."""
        record = {k: v for k, v in asdict(self).items() if k != "out"}
        record["precision"] = graph_precision(self.model, self.precision) if self.onnx else None
        record["negative_prompt"] = self.negative_prompt if self.prompt is not None else None
        record["stitch_fraction"] = self.stitch_fraction if self.stitch_teacher else None
        record["strength"] = resolve_strength(self.init_image, self.mask, self.strength)
        return record


def load_for_sampling(
    model: str, onnx: bool = False, decoder: str = "full", precision: str | None = None
) -> SlimDiffusionPipeline:
    """The pipeline for `model`, its UNet steps (and decoder) run by onnxruntime when `onnx` (`precision`: the
    graphs, `graph_precision`); `decoder` is full, slim (MODEL/slim_decoder) or a slim decoder folder. Its own
    progress bar is off."""
    pipe = load_pipeline(model)
    if onnx:
        graphs = SLIM_DECODER if decoder == "slim" else "vae"
        pipe = load_onnx_pipeline(model, pipe, decoder=graphs, precision=precision)
    # an ONNX export runs its slim decoder's graph already; a path or `full` still swaps in PyTorch weights
    pipe = use_decoder(pipe, model, "full" if onnx and decoder == "slim" else decoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def with_model_defaults(settings: SampleSettings, pipe: SlimDiffusionPipeline) -> SampleSettings:
    """`settings` with an unset step count and scheduler filled in: a step-distilled model samples as it was
    exported (its `default_steps`; the scheduler stays None: the pipeline's own), any other model with
    DEFAULT_SCHEDULER and DEFAULT_STEPS."""
    own_steps = pipe.config.get("default_steps")
    if own_steps:
        return replace(settings, steps=settings.steps or own_steps)
    return replace(
        settings, scheduler=settings.scheduler or DEFAULT_SCHEDULER, steps=settings.steps or DEFAULT_STEPS
    )


def _condition(settings: SampleSettings, pipe: SlimDiffusionPipeline) -> tuple[dict, dict]:
    """(pipeline arguments for the whole set, arguments with one row per image); the prompt is encoded once, by
    the pipeline's own tokenizer and text encoder."""
    condition, per_image = {}, {}
    if settings.label is not None:
        condition["class_labels"] = resolve_label(settings.model, settings.label)
    if settings.prompt is not None:
        guided = settings.guidance is not None
        try:
            embeds, negative = prompt_inputs(
                pipe, 1, settings.prompt, settings.negative_prompt, None, None, guided
            )
        except ValueError as error:  # not a text model, or one saved without its text encoder
            raise ConfigError(f"--prompt: {error}") from None
        per_image["prompt_embeds"] = embeds.expand(settings.num_images, -1, -1)
        if negative is not None:
            condition["negative_prompt_embeds"] = negative
    return condition, per_image


def _init_image(settings: SampleSettings, pipe: SlimDiffusionPipeline) -> tuple[dict, str | None]:
    """(The pipeline arguments of image-to-image / inpainting, none without an init image; how the image was
    fitted to the model's size, None where it had that size), once the files read and the pipeline would take
    them. An image of another size is centre-cropped to the model's aspect and resized (`fit_image`), its mask
    the same way; a mask of another size than its image is refused."""
    try:
        strength = resolve_strength(settings.init_image, settings.mask, settings.strength)
        if settings.init_image is None:
            return {}, None
        image = _read(settings.init_image, "--init-image")
        mask = None if settings.mask is None else _read(settings.mask, "--mask")
        if mask is not None and mask.size != image.size:
            raise ValueError(
                f"--mask is {mask.height}×{mask.width} but --init-image is {image.height}×{image.width}; "
                "pass a mask of the image's size (white = repaint, black = keep)"
            )
        size, fitted = drawn_size(pipe.vae, pipe.unet.config), None
        if (image.height, image.width) != size:
            fitted = f"{image.height}×{image.width} → {size[0]}×{size[1]} (centre crop, then resize)"
            image = fit_image(image, size)
            mask = None if mask is None else fit_image(mask, size, Image.Resampling.NEAREST)
        init_pixels(image, mask, pipe.vae, pipe.unet.config, rows=1)
    except ValueError as error:
        raise ConfigError(str(error).splitlines()[0]) from None
    return {"image": image, "mask_image": mask, "strength": strength}, fitted


def _read(path: str, option: str):
    try:
        return to_rgb(open_image(path))
    except OSError as error:  # missing, unreadable or not an image
        raise DataError(f"cannot read {option} {path}: {error}; pass an image file (PNG, JPEG, …)") from None


def sample_folder(settings: SampleSettings, progress: Callable[[int], None] | None = None) -> dict:
    """Draw `settings.num_images` images into `settings.out` (created; PNGs of an earlier run there are
    replaced — whether a non-empty folder may be used is the caller's call). `progress(k)` hears of every k
    images saved. Returns sample.json's content. A setting the pipeline refuses (a label out of range,
    a label for an unconditional model, …) raises `ConfigError` and leaves no sample.json behind; an init image
    or mask that cannot be read or does not fit the model raises before anything is written."""
    pipe = load_for_sampling(settings.model, settings.onnx, settings.decoder, settings.precision)
    settings = with_model_defaults(settings, pipe)
    condition, per_image = _condition(settings, pipe)
    init, fitted = _init_image(settings, pipe)
    condition |= init
    stitch = None
    if settings.stitch_teacher is not None:
        try:
            teacher = load_unet(settings.stitch_teacher).eval()
        except ModelError as error:  # say which of the two models it is
            raise ModelError(f"cannot load --stitch-teacher {settings.stitch_teacher}: {error}") from None
        stitch = (teacher, settings.stitch_fraction)
    check_batch_memory(pipe, min(settings.batch_size, settings.num_images), settings.guidance is not None)
    if "class_labels" in condition:  # refused before the folder is made, so no empty folder is left behind
        try:
            conditioning(pipe.unet.config, 1, condition["class_labels"], None, None, settings.guidance)
        except ValueError as error:
            raise ConfigError(str(error).splitlines()[0]) from None
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in (*out.glob("*.png"), out / "sample.json"):
        old.unlink(missing_ok=True)
    record = {**settings.record(), "noise_schedule": dict(pipe.scheduler.config)}
    record["scheduler"] = settings.scheduler or f"{type(pipe.scheduler).__name__} (the model's own)"
    record["init_image_fitted"] = fitted
    drawn = 0

    def save(first: int, images: torch.Tensor) -> None:
        nonlocal drawn
        for i, pixels in enumerate(to_uint8(images)):
            with _aside(out / f"{first + i:06d}.png") as tmp:
                Image.fromarray(pixels).save(tmp, format="PNG")
        drawn = first + len(images)
        if progress is not None:
            progress(len(images))

    start = time.perf_counter()
    try:
        images = generate(
            pipe,
            settings.num_images,
            settings.seed,
            settings.batch_size,
            on_batch=save,
            keep=GRID_IMAGES,
            num_inference_steps=settings.steps,
            sampler=settings.scheduler,
            eta=settings.eta,
            guidance_scale=settings.guidance,
            stitch=stitch,
            per_image=per_image,
            **condition,
        )
        record["seconds"] = round(time.perf_counter() - start, 3)
        save_grid(images, out / "grid.png")
        with _aside(out / "sample.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2, default=str))
    except WRITE_ERRORS as error:  # a full disk: what this run wrote goes, so the space is free again
        for path in (*out.glob("*.png"), *out.glob(".*.tmp"), out / "sample.json"):
            path.unlink(missing_ok=True)
        raise OutputError(
            f"could not write the samples to {out}: {write_failure(error)}; the images drawn were removed — "
            "free space and sample again"
        ) from None
    except (RuntimeError, MemoryError) as error:
        if not isinstance(error, MemoryError) and "memory" not in str(error):
            raise
        raise ConfigError(
            f"ran out of memory at --batch-size {settings.batch_size} after {drawn} images (kept in {out}, "
            "no sample.json); use a smaller --batch-size"
        ) from None
    except ValueError as error:  # a setting the pipeline refuses (label range, guidance, …)
        raise ConfigError(str(error).splitlines()[0]) from None
    return record


@contextmanager
def _aside(path: Path) -> Iterator[Path]:
    """A hidden file beside `path` to write, renamed into place after: no half-written file at `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    yield tmp
    os.replace(tmp, path)
