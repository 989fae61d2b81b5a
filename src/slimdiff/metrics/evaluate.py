"""`evaluate`: score a model or a folder of images — the one path behind `slimdiff eval` and the demo.

A model (pipeline folder, run folder, UNet folder or hub id) is sampled with `generate`; a folder of images
is read as it is. Real images come from `data` by the one held-out rule (`held_out_images`). Each metric runs
on its own: one that cannot run records why ("skipped", in metrics.json and the summary) and the others
still run. Outputs: config.json (written first), metrics.json, summary.md, samples.png and the plots.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from slimdiff.data.datasets import held_out_images, load_images
from slimdiff.data.image_files import image_files
from slimdiff.errors import ConfigError, DataError, SlimdiffError
from slimdiff.metrics.conditional import (
    class_labelled_real,
    model_classes,
    per_class_scores,
    per_class_table,
    rows_by_class,
    sampling_conditions,
)
from slimdiff.metrics.protocols import Protocol, get_protocol
from slimdiff.metrics.runners import RUNNERS, Evaluation, Skip, sampler_call
from slimdiff.metrics.summary import summary
from slimdiff.metrics.targets import image_folder_target, is_model, model_target
from slimdiff.models.inputs import condition_input
from slimdiff.reporting.images import save_grid
from slimdiff.sampling.generate import generate
from slimdiff.sampling.pipeline import SlimDiffusionPipeline
from slimdiff.sampling.solvers import SAMPLERS

METRICS = tuple(RUNNERS)
NEEDS_DATA = {"fid", "kid", "swd", "spectrum", "eps-spectrum", "fd-fmnist", "cas"}
NEEDS_SAMPLES = NEEDS_DATA - {"eps-spectrum"}
DEFAULT_N = 1000


@dataclass
class EvalOptions:
    target: str  # a model (pipeline / run / UNet folder, hub id) or a folder of images
    data: str | None = None  # real images: folder, HF dataset, builtin:… (fashion-mnist:test for FD-FMNIST)
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
    guidance: float | None = None  # classifier-free guidance w (class-context and text models)
    prompts: str | None = None  # prompt file for a text model (slimdiff.sampling.conditions.read_prompts)
    label_column: str | None = None  # the label column of a Hugging Face `data`, for per-class metrics
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


def _sampling(options: EvalOptions, protocol: Protocol) -> tuple[dict, list[str]]:
    """The sampling settings: the user's where given, else the protocol's; and where they depart from it."""
    if options.scheduler is not None and options.scheduler not in SAMPLERS:
        raise ConfigError(f"unknown scheduler {options.scheduler!r}; valid: {', '.join(SAMPLERS)}")
    settings = {"scheduler": protocol.scheduler, "steps": protocol.steps, "eta": protocol.eta}
    settings["guidance"] = protocol.guidance
    given = {key: getattr(options, key) for key in settings if getattr(options, key) is not None}
    departures = [
        f"{key} {value} (protocol {protocol.name}: {settings[key]})"
        for key, value in given.items()
        if value != settings[key]
    ]
    return {**settings, **given}, departures


def _wanted_metrics(options: EvalOptions) -> list[str]:
    """The metrics asked for, all known, at least one."""
    wanted = [m for m in options.metrics if m]
    unknown = [m for m in wanted if m not in METRICS]
    if unknown or not wanted:
        raise ConfigError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(METRICS)}"
        )
    return wanted


def _real_count(options: EvalOptions, protocol: Protocol, n: int, wanted: list[str]) -> tuple[int, list[str]]:
    """How many real images to compare with (the protocol's unless -n or --n-real is given), checked against
    a --data folder; and where the counts depart from the protocol."""
    n_real = options.n_real or (protocol.n_real if options.n is None else None) or n
    counts = {"n": (n, protocol.n), "n_real": (n_real, protocol.n_real or protocol.n)}
    departures = [f"{k} {v} (protocol {protocol.name}: {p})" for k, (v, p) in counts.items() if v != p]
    if options.data and Path(options.data).is_dir() and NEEDS_DATA & set(wanted):
        available = len(image_files(Path(options.data)))
        if available < n_real:
            raise DataError(f"{options.data} holds {available} images, fewer than the {n_real} requested")
    return n_real, departures


def resolve(options: EvalOptions) -> tuple[EvalOptions, SlimDiffusionPipeline | None]:
    """Validate `options` and fill in what they leave open; returns them with the loaded pipeline (None for
    an image folder). Raises a SlimdiffError naming the problem; nothing is written."""
    wanted = _wanted_metrics(options)
    protocol = get_protocol(options.protocol)
    sampling, departures = _sampling(options, protocol)
    if NEEDS_DATA & set(wanted) and options.data is None:
        raise ConfigError(
            f"{', '.join(sorted(NEEDS_DATA & set(wanted)))} need real images: pass --data SOURCE"
        )
    pipeline, notes = None, []
    if is_model(options.target):
        kind, sampled = "model", bool(NEEDS_SAMPLES & set(wanted))
        pipeline, size = model_target(
            options.target, options.size, options.prompts, sampling["guidance"], sampled
        )
        n = options.n or protocol.n
    elif Path(options.target).is_dir():
        if options.prompts is not None:
            raise ConfigError("--prompts needs a model to sample; a folder of images is scored as it is")
        kind = "images"
        n, size, notes = image_folder_target(options.target, options.size, options.n, protocol)
    else:
        raise ConfigError(f"{options.target} is neither a model nor a folder of images")
    n_real, count_departures = _real_count(options, protocol, n, wanted)
    departures += count_departures
    if departures and protocol.name != "fast":
        notes.append(f"not protocol {protocol.name} as published: " + "; ".join(departures))
    resolved = replace(options, metrics=tuple(wanted), n=n, n_real=n_real, size=size, kind=kind, **sampling)
    return replace(resolved, notes=tuple(notes), departures=tuple(departures)), pipeline


def _draw_images(ev: Evaluation, skipped: dict, unreadable: list[str]) -> None:
    """The real images (with their labels for a class model) and, for sample metrics, the evaluated ones:
    generated with balanced labels or the prompt file, or read from the folder."""
    o, pipeline = ev.options, ev.pipeline
    sampled = NEEDS_SAMPLES & set(o.metrics) and pipeline is not None
    per_image, shared, ev.labels = (
        sampling_conditions(pipeline, o.target, o.n, o.seed, o.prompts, o.guidance is not None)
        if sampled
        else ({}, {}, None)
    )
    if pipeline is not None and condition_input(pipeline.unet.config) == "class_labels":
        try:  # labels for the per-class scores and the class-conditional ε-error spectrum
            ev.real, ev.real_labels, ev.class_names = class_labelled_real(o, pipeline)
        except SlimdiffError as why:  # the overall metrics still run on unlabelled real images
            if sampled:
                skipped["per-class"] = str(why)
    if ev.real is None:
        ev.real = held_out_images(o.data, o.size, o.n_real, seed=o.seed)
    if not NEEDS_SAMPLES & set(o.metrics):
        return
    if sampled:
        advance = ev.track("generating", o.n)
        pipeline.set_progress_bar_config(disable=True)
        ev.fake = generate(
            pipeline,
            o.n,
            o.seed,
            o.batch_size,
            on_batch=lambda _, images: advance(len(images)),
            per_image=per_image,
            **sampler_call(o),
            **shared,
        )
    else:
        ev.fake = load_images(o.target, o.size, o.n, o.seed, skipped=unreadable)
    upscale = max(1, 48 // o.size)  # small images shown at ≥ 48 px
    if ev.labels is None:
        save_grid(ev.fake[:64], ev.out / "samples.png", upscale=upscale)
    else:  # one row per class
        shown = rows_by_class(ev.fake, ev.labels, model_classes(pipeline, o.target))
        save_grid(shown, ev.out / "samples.png", nrow=8, upscale=upscale)
    ev.plots["samples"] = "samples.png"


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
    wanted, unreadable, skipped = options.metrics, [], {}
    if NEEDS_DATA & set(wanted):
        _draw_images(ev, skipped, unreadable)
    results = {}
    for name in wanted:
        try:
            results.update(RUNNERS[name](ev))
        except Skip as why:
            skipped[name] = str(why)
        except (SlimdiffError, RuntimeError, OSError) as error:  # one metric failing must not lose the rest
            skipped[name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0]}"
    if ev.real_labels is not None and ev.labels is not None:
        ev.per_class = per_class_scores(
            ev.real,
            ev.real_labels,
            ev.fake,
            ev.labels,
            ev.class_names,
            metrics=wanted,
            features=ev.features if "fake" in ev.features else None,
            seed=options.seed,
            cutoff=options.cutoff,
        )
        ev.tables["Per class"] = per_class_table(ev.per_class)
    ev.report = {
        "results": results,
        "per_class": ev.per_class,
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
