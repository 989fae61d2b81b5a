"""What an evaluation scores: a model, loaded and checked against the settings it will be sampled with, or a
folder of images, read as it is (its image side, how many of its files read)."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from slimdiff.data.datasets import make_dataset
from slimdiff.data.image_files import IMAGE_SUFFIXES, READ_ERRORS, image_files
from slimdiff.data.transforms import check_pixel_limit
from slimdiff.errors import ConfigError, DataError
from slimdiff.metrics.conditional import model_classes
from slimdiff.metrics.protocols import Protocol
from slimdiff.models.autoencoders import Autoencoder
from slimdiff.models.inputs import sample_hw
from slimdiff.sampling.pipeline import SlimDiffusionPipeline, load_pipeline


def is_model(target: str) -> bool:
    """Whether `target` names a model (pipeline, run or UNet folder, or a hub id) rather than images."""
    p = Path(target)
    if not p.exists():
        return True  # a hub id; load_pipeline says so clearly if it is not one
    markers = ("model_index.json", "config.json", "unet/config.json", "model/model_index.json")  # last: a run
    return any((p / name).is_file() for name in markers)


def model_target(
    target: str, size: int | None, prompts: str | None, guidance: float | None, sampled: bool
) -> tuple[SlimDiffusionPipeline, int]:
    """The pipeline of `target` and the side of the images it makes; `size` must be that side if given, and
    the conditions (`prompts`, `guidance`; `sampled`: a metric needs its samples) must fit the model."""
    pipeline = load_pipeline(target)
    model_size = sample_hw(pipeline.unet.config)[0] * Autoencoder.of(pipeline.vae).factor
    if size not in (None, model_size):
        raise ConfigError(f"the model makes {model_size}² images; drop --size or set it to {model_size}")
    cfg = pipeline.unet.config
    text = cfg.get("cross_attention_dim") is not None and not model_classes(pipeline, target)
    if text and prompts is None and sampled:
        raise ConfigError(
            f"{target} is a text-conditional model: pass --prompts FILE (one prompt per line, "
            "or metadata .jsonl / .csv with a `text` field) to say what to draw"
        )
    if prompts is not None and not text:
        raise ConfigError(f"--prompts is for text-conditional models; {target} is not one")
    if guidance is not None and cfg.get("num_context_classes") is None and not text:
        raise ConfigError(
            f"guidance {guidance} needs a class-context model (num_context_classes) or a "
            f"text model; {target} is neither: choose another --protocol or drop --guidance"
        )
    return pipeline, model_size


def image_folder_target(
    target: str, size: int | None, n: int | None, protocol: Protocol
) -> tuple[int, int, list[str]]:
    """(images to score, their side, notes) for a folder of images: the side all images share and
    all readable images up to the protocol's count unless given."""
    files, notes = image_files(Path(target)), []
    if not files:
        raise DataError(f"{target} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if size is None:
        size = _common_side(target, files)
        notes.append(f"--size {size}, read from the images")
    readable = _readable_count(target, size)
    if readable < len(files):
        notes.append(f"{len(files) - readable} unreadable file(s) skipped")
    if n is None:
        n = min(protocol.n, readable)
        if n < protocol.n:
            notes.append(f"using all {n} images of the folder (fewer than the protocol's {protocol.n})")
    elif n > readable:
        raise DataError(f"{target} holds {readable} readable images, fewer than -n {n}")
    return n, size, notes


def _common_side(target: str, files: list[Path]) -> int:
    """The square side all readable images of a folder share (read from their headers); a folder of mixed
    sizes is an error rather than a silent choice of one."""
    sides: dict[int, Path] = {}
    for path in files:
        try:
            with Image.open(path) as image:
                check_pixel_limit(image, str(path))
                sides.setdefault(min(image.size), path)
        except READ_ERRORS:
            continue
    if not sides:
        raise DataError(f"no readable image in {target}")
    if len(sides) > 1:
        examples = ", ".join(f"{side} ({path.name})" for side, path in sorted(sides.items())[:3])
        raise DataError(
            f"{target} holds images of {len(sides)} sizes (short sides {examples}); pass --size to resize "
            "them all to one side"
        )
    return next(iter(sides))


def _readable_count(folder: str, size: int) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unreadable ones are counted in the notes and metrics.json
        return len(make_dataset(folder, size))
