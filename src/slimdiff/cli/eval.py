"""`slimdiff eval MODEL|IMAGE_DIR --data DATA --metrics …`: score generated (or given) images and a model.

MODEL is a pipeline folder, a UNet folder or a hub id: `-n` images are generated with the pipeline.
IMAGE_DIR is a folder of images (read, resized to `--size`). Real images come from `--data` (any source
`slimdiff.data` reads). Each metric runs on its own: one that cannot run records why (in metrics.json and
on stderr) and the others still run. Outputs in `--out`: config.json (resolved options, written first),
metrics.json, summary.md, samples.png and the plots.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from slimdiff.cli.app import app, console, err_console, fail

METRICS = ("fid", "kid", "swd", "spectrum", "eps-spectrum", "macs", "throughput")
NEEDS_DATA = {"fid", "kid", "swd", "spectrum", "eps-spectrum"}


class Skip(Exception):
    """This metric cannot run here; the message says why."""


@dataclass
class Evaluation:
    options: dict
    out: Path
    progress: Progress
    real: Tensor | None = None
    fake: Tensor | None = None
    pipeline: object | None = None
    plots: dict[str, str] = field(default_factory=dict)
    features: dict[str, Tensor] = field(default_factory=dict)  # Inception features, shared by FID and KID
    tables: dict[str, list[str]] = field(default_factory=dict)  # extra markdown tables for summary.md

    def track(self, description: str, total: int) -> Callable[[int], None]:
        """A progress-bar task; the returned function advances it."""
        task = self.progress.add_task(description, total=total)
        return lambda n=1: self.progress.advance(task, n)


def _is_model(path: str) -> bool:
    p = Path(path)
    if not p.exists():
        return True  # a hub id; load_pipeline says so clearly if it is not one
    markers = ("model_index.json", "config.json", "unet/config.json", "model/model_index.json")  # last: a run
    return any((p / name).is_file() for name in markers)


def _generate(ev: Evaluation) -> Tensor:
    o, pipe = ev.options, ev.pipeline
    generator = torch.Generator().manual_seed(o["seed"])
    advance = ev.track("generating", o["n"])
    batches = []
    pipe.set_progress_bar_config(disable=True)
    for start in range(0, o["n"], o["batch_size"]):
        count = min(o["batch_size"], o["n"] - start)
        out = pipe(
            batch_size=count,
            num_inference_steps=o["steps"],
            sampler=o["sampler"],
            generator=generator,
            output_type="pt",
        )
        batches.append(out.images * 2 - 1)  # the pipeline returns [0, 1]; metrics take [-1, 1]
        advance(count)
    return torch.cat(batches)


def _inception_scores(ev: Evaluation, which: str) -> dict:
    from slimdiff.latent_cache import source_fingerprint
    from slimdiff.metrics.fid import (
        INCEPTION_NAME,
        FIDUnavailable,
        cached_features,
        extract_features,
        fid_from_features,
        inception_extractor,
        kid_from_features,
    )

    features = ev.features
    if "fake" not in features:
        try:
            extractor = inception_extractor(ev.options["inception_weights"])
        except FIDUnavailable as error:
            raise Skip(str(error)) from None
        o = ev.options
        # the fingerprint covers a folder's files (path, size, mtime), so changed data is never served stale
        data = source_fingerprint(o["data"], o["size"], o["seed"] + 1, len(ev.real), "image")
        key = {"data": data, "n": len(ev.real), "features": INCEPTION_NAME}
        features["real"] = cached_features(
            key,
            lambda: extract_features(ev.real, extractor, progress=ev.track("Inception (real)", len(ev.real))),
        )
        features["fake"] = extract_features(
            ev.fake, extractor, progress=ev.track("Inception (ours)", len(ev.fake))
        )
    if which == "fid":
        return {"fid": fid_from_features(features["real"], features["fake"])}
    return {"kid": kid_from_features(features["real"], features["fake"], seed=ev.options["seed"])}


def _swd(ev: Evaluation) -> dict:
    from slimdiff.metrics.swd import swd

    return {"swd": swd(ev.real, ev.fake, seed=ev.options["seed"])}


def _spectrum(ev: Evaluation) -> dict:
    from slimdiff.metrics.spectrum import plot_spectra, spectrum_error

    ev.plots["spectra"] = plot_spectra({"real": ev.real, "evaluated": ev.fake}, ev.out / "spectra.png").name
    return {"spectrum_error": spectrum_error(ev.real, ev.fake, cutoff=ev.options["cutoff"])}


def _model_only(ev: Evaluation):
    if ev.pipeline is None:
        raise Skip("needs a model, not a folder of images")
    return ev.pipeline.unet


def _eps_spectrum(ev: Evaluation) -> dict:
    from slimdiff.metrics.eps_spectrum import eps_error_spectrum, plot_eps_spectrum
    from slimdiff.noise import training_scheduler

    unet, o = _model_only(ev), ev.options
    if getattr(unet.config, "cross_attention_dim", None) is not None:
        raise Skip("conditional UNets are not supported by eps-spectrum (it feeds no class or text context)")
    x0 = ev.real
    if ev.pipeline.vae is not None:
        from slimdiff.autoencoders import Autoencoder

        kind = "vq" if type(ev.pipeline.vae).__name__ == "VQModel" else "kl"
        vae = Autoencoder(kind, ev.pipeline.vae, float(ev.pipeline.vae.config.get("scaling_factor", 1.0)))
        x0 = torch.cat([vae.encode(batch) for batch in ev.real.split(o["batch_size"])])
    if x0.shape[1:] != (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size):
        raise Skip(
            f"the model works on {unet.config.sample_size}² inputs but --size gives {tuple(x0.shape[1:])}"
        )
    teacher = None
    if o["teacher"]:
        from slimdiff.models.loading import load_unet

        teacher = load_unet(o["teacher"])
    steps = o["buckets"] * len(x0)
    result = eps_error_spectrum(
        unet,
        x0,
        training_scheduler(),
        buckets=o["buckets"],
        batch_size=o["batch_size"],
        seed=o["seed"],
        teacher=teacher,
        cutoff=o["cutoff"],
        progress=ev.track("ε-error spectrum", steps),
    )
    ev.plots["eps_spectrum"] = plot_eps_spectrum({"model": result}, ev.out / "eps_spectrum.png").name
    ev.tables["ε-error spectrum per timestep bucket (cutoff {:g} Nyquist)".format(o["cutoff"])] = (
        result.table()
    )
    return {"eps_spectrum": result.summary()}


def _example_inputs(unet, batch: int) -> dict:
    from slimdiff.models.presets import Preset

    return Preset.of_model("model", unet).example_inputs(batch)


def _macs(ev: Evaluation) -> dict:
    from slimdiff.metrics.complexity import count_macs_by_kind, count_params

    unet = _model_only(ev)
    kinds = count_macs_by_kind(unet, _example_inputs(unet, 1))
    return {"params": count_params(unet), "macs": kinds["conv_linear"], "attention_macs": kinds["attention"]}


def _throughput(ev: Evaluation) -> dict:
    from slimdiff.metrics.complexity import steps_per_second

    unet, batch = _model_only(ev), ev.options["batch_size"]
    return {
        "unet_steps_per_s": steps_per_second(unet, _example_inputs(unet, batch)),
        "throughput_batch": batch,
    }


RUNNERS: dict[str, Callable[[Evaluation], dict]] = {
    "fid": lambda ev: _inception_scores(ev, "fid"),
    "kid": lambda ev: _inception_scores(ev, "kid"),
    "swd": _swd,
    "spectrum": _spectrum,
    "eps-spectrum": _eps_spectrum,
    "macs": _macs,
    "throughput": _throughput,
}


def _summary(options: dict, results: dict, skipped: dict, plots: dict, tables: dict[str, list[str]]) -> str:
    lines = [f"# Evaluation of `{options['target']}`", "", f"- data: `{options['data']}`"]
    lines += [
        f"- images: {options['n']} evaluated, {options.get('n_real', '—')} real, {options['size']}²",
        "",
    ]
    lines += ["| metric | value |", "|---|---|"]
    for key, value in _flatten(results).items():
        lines.append(f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |")
    for title, rows in tables.items():
        lines += ["", f"{title}:", "", *rows]
    if skipped:
        lines += ["", "Not computed:", ""] + [f"- **{name}**: {why}" for name, why in skipped.items()]
    lines += [""] + [f"![{name}]({file})" for name, file in plots.items()]
    return "\n".join(lines) + "\n"


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):  # per-bucket tables stay in metrics.json
            flat[f"{prefix}{key}"] = value
    return flat


@app.command("eval")
def eval_command(
    target: str = typer.Argument(..., help="a model (pipeline or UNet folder, hub id) or a folder of images"),
    data: str | None = typer.Option(
        None, "--data", help="real images: folder, HF dataset, builtin:photos|textures"
    ),
    metrics: str = typer.Option(
        ",".join(METRICS), "--metrics", help=f"comma-separated, from {','.join(METRICS)}"
    ),
    out: Path = typer.Option(Path("eval"), "--out", help="output folder"),
    n: int = typer.Option(1000, "-n", "--num-images", min=2, max=200_000, help="images to generate / read"),
    n_real: int | None = typer.Option(
        None, "--n-real", min=2, max=200_000, help="real images (default: as -n)"
    ),
    size: int | None = typer.Option(
        None, "--size", min=8, max=1024, help="image side (default: the model's)"
    ),
    steps: int = typer.Option(50, "--steps", min=1, max=1000, help="sampling steps"),
    sampler: str | None = typer.Option(None, "--sampler", help="ddpm, ddim, pndm, dpm++, unipc, deis, euler"),
    batch_size: int = typer.Option(
        64, "--batch-size", min=1, max=4096, help="batch for sampling, features, steps/s"
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="seed for sampling, real subsets, patches, noise"),
    inception_weights: Path | None = typer.Option(
        None, "--inception-weights", help="local Inception weights file"
    ),
    teacher: str | None = typer.Option(None, "--teacher", help="eps-spectrum measures student − teacher"),
    buckets: int = typer.Option(10, "--buckets", min=1, max=1000, help="eps-spectrum timestep buckets"),
    cutoff: float = typer.Option(0.5, "--cutoff", min=0.05, max=0.95, help="low/high split (Nyquist = 1)"),
) -> None:
    """Score a model or a folder of images: FID/KID, SWD, spectra, ε-error spectrum, MACs, throughput."""
    wanted = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in METRICS]
    if unknown or not wanted:
        fail(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(METRICS)}")
    from slimdiff.samplers import SAMPLERS

    if sampler is not None and sampler not in SAMPLERS:
        fail(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    is_model = _is_model(target)
    if not is_model and not Path(target).is_dir():
        fail(f"{target} is neither a model nor a folder of images")
    if NEEDS_DATA & set(wanted) and data is None:
        fail(f"{', '.join(sorted(NEEDS_DATA & set(wanted)))} need real images: pass --data SOURCE")
    options = {
        "target": target,
        "kind": "model" if is_model else "images",
        "data": data,
        "metrics": wanted,
        "n": n,
        "n_real": n_real or n,
        "size": size,
        "steps": steps,
        "sampler": sampler,
        "batch_size": batch_size,
        "seed": seed,
        "inception_weights": str(inception_weights) if inception_weights else None,
        "teacher": teacher,
        "buckets": buckets,
        "cutoff": cutoff,
    }
    pipeline = None
    if is_model:
        from slimdiff.pipeline import load_pipeline

        try:
            pipeline = load_pipeline(target)
        except (OSError, ValueError) as error:
            fail(f"cannot load model {target}: {str(error).splitlines()[0]}")
        sample = pipeline.unet.config.sample_size
        factor = 1 if pipeline.vae is None else 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
        model_size = sample * factor
        if size not in (None, model_size):
            fail(f"the model makes {model_size}² images; drop --size or set it to {model_size}")
        options["size"] = model_size
        conditional = getattr(pipeline.unet.config, "cross_attention_dim", None) is not None
        if conditional and (NEEDS_DATA - {"eps-spectrum"}) & set(wanted):
            fail(
                f"{target} is a conditional model and eval samples unconditionally: generate with "
                "`slimdiff sample --label/--prompt …`, then evaluate that folder of images"
            )
    elif size is None:
        fail("reading a folder of images needs --size (the side images are resized to)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(options, indent=2) + "\n")
    run(options, pipeline, out)


def run(options: dict, pipeline, out: Path) -> dict:
    """Load / generate images, run every wanted metric, write metrics.json and summary.md."""
    from slimdiff.data import load_images
    from slimdiff.images import save_grid

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    results, skipped = {}, {}
    with Progress(*columns, console=err_console, transient=False) as progress:
        ev = Evaluation(options, out, progress, pipeline=pipeline)
        wanted = options["metrics"]
        try:
            if NEEDS_DATA & set(wanted):
                # seed + 1: built-in crops that differ from the training crops (seed 0 by default)
                ev.real = load_images(
                    options["data"], options["size"], options["n_real"], seed=options["seed"] + 1
                )
            if (NEEDS_DATA - {"eps-spectrum"}) & set(wanted):
                ev.fake = (
                    _generate(ev)
                    if pipeline is not None
                    else load_images(options["target"], options["size"], options["n"], seed=options["seed"])
                )
                save_grid(ev.fake[:64], out / "samples.png")
                ev.plots["samples"] = "samples.png"
        except ValueError as error:  # bad data (DataError) or a sampling setting the pipeline refuses
            fail(str(error).splitlines()[0])
        for name in wanted:
            try:
                results.update(RUNNERS[name](ev))
            except Skip as why:
                skipped[name] = str(why)
            except (ValueError, RuntimeError, OSError) as error:  # one metric failing must not lose the rest
                skipped[name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0]}"
            if name in skipped:
                err_console.print(
                    f"[yellow]skipped {name}:[/] {skipped[name]}", highlight=False, soft_wrap=True
                )
    report = {"results": results, "skipped": skipped, "plots": ev.plots, "config": options}
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "summary.md").write_text(_summary(options, results, skipped, ev.plots, ev.tables))
    for key, value in _flatten(results).items():
        console.print(f"{key:32s} {value:.6g}" if isinstance(value, float) else f"{key:32s} {value}")
    console.print(f"wrote {out / 'metrics.json'} and {out / 'summary.md'}")
    return report
