"""`evaluate`: score a model or a folder of images — the one path behind `slimdiff eval` and the demo.

A model (pipeline folder, run folder, UNet folder or hub id) is sampled with `generate`; a folder of images
is read as it is. Real images come from `data` by the one held-out rule (`held_out_images`). Each metric runs
on its own: one that cannot run records why ("skipped", in metrics.json and the summary) and the others
still run. Outputs: config.json (written first), metrics.json, summary.md, samples.png and the plots.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from slimdiff.data.datasets import IMAGE_SUFFIXES, held_out_images, load_images, make_dataset
from slimdiff.errors import ConfigError, DataError, ModelError, SlimdiffError
from slimdiff.metrics.protocols import Protocol, get_protocol
from slimdiff.metrics.runners import RUNNERS, Evaluation, Skip
from slimdiff.models.autoencoders import Autoencoder
from slimdiff.models.inputs import sample_hw
from slimdiff.reporting.images import save_grid
from slimdiff.sampling.generate import generate
from slimdiff.sampling.pipeline import load_pipeline
from slimdiff.sampling.solvers import SAMPLERS

METRICS = tuple(RUNNERS)
NEEDS_DATA = {"fid", "kid", "swd", "spectrum", "eps-spectrum"}
NEEDS_SAMPLES = NEEDS_DATA - {"eps-spectrum"}
DEFAULT_N = 1000


@dataclass
class EvalOptions:
    target: str  # a model (pipeline / run / UNet folder, hub id) or a folder of images
    data: str | None = None  # real images: folder, HF dataset, builtin:photos|textures
    metrics: tuple[str, ...] = METRICS
    protocol: str = "fast"  # slimdiff.metrics.protocols: fills every sampling setting left as None below
    n: int | None = (
        None  # images to generate / read (default: the protocol's; a smaller image folder: all of it)
    )
    n_real: int | None = None  # real images (default: the protocol's, else as n)
    size: int | None = None  # image side (default: the model's, or the folder's first image)
    steps: int | None = None  # sampling steps
    scheduler: str | None = None  # solver name
    eta: float | None = None  # DDIM's η
    guidance: float | None = None  # classifier-free guidance w (class-conditional models, uniform labels)
    batch_size: int = 64  # for sampling, features and steps/s
    seed: int = 0  # sampling noise, real subsets, patches, ε-spectrum noise
    inception_weights: str | None = None
    teacher: str | None = None  # eps-spectrum measures student − teacher
    buckets: int = 10  # eps-spectrum timestep buckets
    cutoff: float = 0.5  # low/high split, Nyquist = 1
    timing_seconds: float = 1.0  # per steps/s measurement
    kind: str = ""  # set by `resolve`: model or images
    notes: tuple[str, ...] = ()  # set by `resolve`: what it decided for the user
    departures: tuple[str, ...] = ()  # set by `resolve`: settings that differ from the protocol


def is_model(target: str) -> bool:
    p = Path(target)
    if not p.exists():
        return True  # a hub id; load_pipeline says so clearly if it is not one
    markers = ("model_index.json", "config.json", "unet/config.json", "model/model_index.json")  # last: a run
    return any((p / name).is_file() for name in markers)


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _first_image_side(files: list[Path]) -> int:
    for path in files:
        try:
            with Image.open(path) as image:
                return min(image.size)
        except OSError:
            continue
    raise DataError("no readable image in the folder")


def _readable_count(folder: str, size: int) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unreadable ones are counted in the notes and metrics.json
        return len(make_dataset(folder, size))


def _sampling(options: EvalOptions, protocol: Protocol) -> tuple[dict, list[str]]:
    """The sampling settings: the user's where given, else the protocol's; and where they depart from it."""
    settings = {"scheduler": protocol.scheduler, "steps": protocol.steps, "eta": protocol.eta}
    settings["guidance"] = protocol.guidance
    given = {key: getattr(options, key) for key in settings if getattr(options, key) is not None}
    departures = [
        f"{key} {value} (protocol {protocol.name}: {settings[key]})"
        for key, value in given.items()
        if value != settings[key]
    ]
    return {**settings, **given}, departures


def resolve(options: EvalOptions) -> tuple[EvalOptions, object | None]:
    """Validate `options` and fill in what they leave open; returns them with the loaded pipeline (None for
    an image folder). Raises a SlimdiffError naming the problem; nothing is written."""
    wanted = [m for m in options.metrics if m]
    unknown = [m for m in wanted if m not in METRICS]
    if unknown or not wanted:
        raise ConfigError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(METRICS)}"
        )
    protocol = get_protocol(options.protocol)
    if options.scheduler is not None and options.scheduler not in SAMPLERS:
        raise ConfigError(f"unknown scheduler {options.scheduler!r}; valid: {', '.join(SAMPLERS)}")
    sampling, departures = _sampling(options, protocol)
    if NEEDS_DATA & set(wanted) and options.data is None:
        raise ConfigError(
            f"{', '.join(sorted(NEEDS_DATA & set(wanted)))} need real images: pass --data SOURCE"
        )
    notes, n, size, pipeline = [], options.n, options.size, None
    if is_model(options.target):
        kind = "model"
        try:
            pipeline = load_pipeline(options.target)
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot load model {options.target}: {str(error).splitlines()[0]}") from None
        model_size = sample_hw(pipeline.unet.config)[0] * Autoencoder.of(pipeline.vae).factor
        if size not in (None, model_size):
            raise ConfigError(f"the model makes {model_size}² images; drop --size or set it to {model_size}")
        size, n = model_size, n or protocol.n
        cfg = pipeline.unet.config
        classes = cfg.get("num_context_classes") or cfg.get("num_class_embeds")
        if cfg.get("cross_attention_dim") is not None and not classes and NEEDS_SAMPLES & set(wanted):
            raise ConfigError(
                f"{options.target} is a text-conditional model and eval draws no prompts: generate with "
                "`slimdiff sample --prompt …`, then evaluate that folder of images"
            )
        if sampling["guidance"] is not None and cfg.get("num_context_classes") is None:
            raise ConfigError(
                f"guidance {sampling['guidance']} needs a class-context model (num_context_classes); "
                f"{options.target} has none: choose another --protocol or drop --guidance"
            )
    elif Path(options.target).is_dir():
        kind, files = "images", _folder_images(Path(options.target))
        if not files:
            raise DataError(f"{options.target} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        if size is None:
            size = _first_image_side(files)
            notes.append(f"--size {size}, read from the first image")
        readable = _readable_count(options.target, size)
        if readable < len(files):
            notes.append(f"{len(files) - readable} unreadable file(s) skipped")
        if n is None:
            n = min(protocol.n, readable)
            if n < protocol.n:
                notes.append(f"using all {n} images of the folder (fewer than the protocol's {protocol.n})")
        elif n > readable:
            raise DataError(f"{options.target} holds {readable} readable images, fewer than -n {n}")
    else:
        raise ConfigError(f"{options.target} is neither a model nor a folder of images")
    n_real = options.n_real or (protocol.n_real if options.n is None else None) or n
    counts = {"n": (n, protocol.n), "n_real": (n_real, protocol.n_real or protocol.n)}
    departures += [f"{k} {v} (protocol {protocol.name}: {p})" for k, (v, p) in counts.items() if v != p]
    if options.data and Path(options.data).is_dir() and NEEDS_DATA & set(wanted):
        available = len(_folder_images(Path(options.data)))
        if available < n_real:
            raise DataError(f"{options.data} holds {available} images, fewer than the {n_real} requested")
    if departures and protocol.name != "fast":
        notes.append(f"not protocol {protocol.name} as published: " + "; ".join(departures))
    resolved = replace(options, metrics=tuple(wanted), n=n, n_real=n_real, size=size, kind=kind, **sampling)
    return replace(resolved, notes=tuple(notes), departures=tuple(departures)), pipeline


def _class_labels(pipeline, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Uniform class labels for a class-conditional model (from their own seed: the noise stays the same)."""
    cfg = pipeline.unet.config
    classes = cfg.get("num_context_classes") or cfg.get("num_class_embeds")
    if not classes:
        return {}
    return {"class_labels": torch.randint(classes, (n,), generator=torch.Generator().manual_seed(seed + 2))}


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n=1: None


def evaluate(
    options: EvalOptions,
    out: Path,
    pipeline=None,
    *,
    track: Callable[[str, int], Callable[[int], None]] = _no_progress,
) -> Evaluation:
    """Run the metrics of resolved `options` (see `resolve`) into `out`; returns the evaluation state with
    `report` = {results, skipped, plots, config, unreadable} (also written as metrics.json)."""
    out.mkdir(parents=True, exist_ok=True)
    config = {**asdict(options), "protocol_settings": get_protocol(options.protocol).to_dict()}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    ev = Evaluation(options, out, track, pipeline=pipeline)
    wanted, unreadable = options.metrics, []
    if NEEDS_DATA & set(wanted):
        ev.real = held_out_images(options.data, options.size, options.n_real, seed=options.seed)
    if NEEDS_SAMPLES & set(wanted):
        if pipeline is not None:
            advance = track("generating", options.n)
            pipeline.set_progress_bar_config(disable=True)
            ev.fake = generate(
                pipeline,
                options.n,
                options.seed,
                options.batch_size,
                on_batch=lambda _, images: advance(len(images)),
                per_image=_class_labels(pipeline, options.n, options.seed),
                num_inference_steps=options.steps,
                sampler=options.scheduler,
                eta=options.eta,
                guidance_scale=options.guidance,
            )
        else:
            ev.fake = load_images(options.target, options.size, options.n, options.seed, skipped=unreadable)
        save_grid(ev.fake[:64], out / "samples.png")
        ev.plots["samples"] = "samples.png"
    results, skipped = {}, {}
    for name in wanted:
        try:
            results.update(RUNNERS[name](ev))
        except Skip as why:
            skipped[name] = str(why)
        except (SlimdiffError, RuntimeError, OSError) as error:  # one metric failing must not lose the rest
            skipped[name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0]}"
    ev.report = {
        "results": results,
        "skipped": skipped,
        "unreadable": unreadable,
        "plots": ev.plots,
        "protocol": options.protocol,
        "departures": list(options.departures),
        "config": config,
    }
    (out / "metrics.json").write_text(json.dumps(ev.report, indent=2) + "\n")
    (out / "summary.md").write_text(summary(options, results, skipped, ev.plots, ev.tables, unreadable))
    return ev


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}; lists (per-bucket tables) are left out."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            flat[f"{prefix}{key}"] = value
    return flat


def summary(
    options: EvalOptions, results: dict, skipped: dict, plots: dict, tables: dict, unreadable: list[str]
) -> str:
    lines = [f"# Evaluation of `{options.target}`", "", f"- data: `{options.data}`"]
    lines += [
        f"- protocol: {options.protocol}"
        + (f" (departures: {'; '.join(options.departures)})" if options.departures else "")
    ]
    if options.kind == "model":
        lines += [
            f"- sampling: {options.scheduler}, {options.steps} steps, η {options.eta}, guidance {options.guidance}"
        ]
    lines += [f"- images: {options.n} evaluated, {options.n_real} real, {options.size}²"]
    lines += [f"- note: {note}" for note in options.notes]
    if unreadable:
        lines.append(f"- unreadable files skipped: {len(unreadable)}")
    lines += ["", "| metric | value |", "|---|---|"]
    for key, value in flatten(results).items():
        lines.append(f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |")
    for title, rows in tables.items():
        lines += ["", f"{title}:", "", *rows]
    if skipped:
        lines += ["", "Not computed:", ""] + [f"- **{name}**: {why}" for name, why in skipped.items()]
    lines += [""] + [f"![{name}]({file})" for name, file in plots.items()]
    return "\n".join(lines) + "\n"
