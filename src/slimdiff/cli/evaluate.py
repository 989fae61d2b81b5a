"""`slimdiff eval MODEL|IMAGE_DIR --data DATA --metrics …`: options → `slimdiff.metrics.evaluate`."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import SCHEDULER_HELP, app, check_out_folder, fail, say, user_errors
from slimdiff.metrics.evaluate import METRICS
from slimdiff.metrics.protocols import PROTOCOLS
from slimdiff.reporting.progress import progress_bars


@app.command("eval")
def eval_command(
    target: str = typer.Argument(..., help="a model (pipeline or UNet folder, hub id) or a folder of images"),
    data: str | None = typer.Option(
        None,
        "--data",
        help="real images: folder, HF dataset, builtin:photos|textures|digits; FD-FMNIST and CAS compare with "
        "builtin:fashion-mnist:test",
    ),
    metrics: str = typer.Option(
        ",".join(METRICS), "--metrics", help=f"comma-separated, from {','.join(METRICS)}"
    ),
    out: Path = typer.Option(Path("eval"), "--out", help="output folder"),
    protocol: str = typer.Option(
        "fast",
        "--protocol",
        help=f"sampling settings and image counts by name, from {', '.join(PROTOCOLS)}; "
        "options given explicitly override it (and are recorded as departures)",
    ),
    n: int | None = typer.Option(
        None,
        "-n",
        "--num-images",
        min=2,
        max=200_000,
        help="images to generate / read (default: the protocol's, or all of a smaller folder)",
    ),
    n_real: int | None = typer.Option(
        None, "--n-real", min=2, max=200_000, help="real images (default: the protocol's, or as -n)"
    ),
    size: int | None = typer.Option(
        None, "--size", min=8, max=1024, help="image side (default: the model's or the folder's)"
    ),
    steps: int | None = typer.Option(
        None, "--steps", min=1, max=1000, help="sampling steps (default: the protocol's)"
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help=SCHEDULER_HELP + "; default: the protocol's"
    ),
    eta: float | None = typer.Option(
        None, "--eta", min=0.0, max=1.0, help="DDIM's η (default: the protocol's)"
    ),
    guidance: str | None = typer.Option(
        None,
        "--guidance",
        help="classifier-free guidance w (class-context and text models); several, e.g. 1,2,3: a sweep, "
        "one table",
    ),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="text models: prompt file (one per line, or .jsonl/.csv with `text`)"
    ),
    label_column: str | None = typer.Option(
        None, "--label-column", help="class models: the label column of a Hugging Face --data set"
    ),
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
    overwrite: bool = typer.Option(
        True, "--overwrite/--no-overwrite", help="replace results in a non-empty --out"
    ),
) -> None:
    """Score a model or a folder of images: FID/KID, SWD, spectra, ε-error spectrum, MACs, throughput.
    Exits 1 when none of the requested metrics could be computed."""
    from slimdiff.config import dotted_keys
    from slimdiff.metrics.evaluate import EvalOptions, evaluate, resolve
    from slimdiff.metrics.sweep import evaluate_sweep, parse_scales

    with user_errors():
        scales = parse_scales(guidance) if guidance is not None else [None]

    options = EvalOptions(
        target=target,
        data=data,
        metrics=tuple(m.strip() for m in metrics.split(",")),
        protocol=protocol,
        n=n,
        n_real=n_real,
        size=size,
        steps=steps,
        scheduler=scheduler,
        eta=eta,
        guidance=scales[0],
        prompts=str(prompts) if prompts else None,
        label_column=label_column,
        batch_size=batch_size,
        seed=seed,
        inception_weights=str(inception_weights) if inception_weights else None,
        teacher=teacher,
        buckets=buckets,
        cutoff=cutoff,
    )
    check_out_folder(out, overwrite)
    with user_errors():
        options, pipeline = resolve(options)
    for note in options.notes:
        say(f"note: {note}", stderr=True)
    with progress_bars() as track, user_errors():
        if len(scales) > 1:
            reports = evaluate_sweep(options, out, pipeline, scales, track=track)["sweep"]
        else:
            reports = [evaluate(options, out, pipeline, track=track).report]
    for report in reports:
        prefix = f"w={report['guidance']:g} " if len(reports) > 1 else ""
        for name, why in report["skipped"].items():
            say(f"{prefix}skipped {name}: {why}", style="yellow", stderr=True)
        for key, value in dotted_keys(report["results"], keep_lists=False).items():
            name = prefix + key
            say(f"{name:36s} {value:.6g}" if isinstance(value, float) else f"{name:36s} {value}")
        if report["per_class"]:
            say(
                f"{prefix}per-class scores: {len(report['per_class'])} classes, in summary.md and metrics.json"
            )
    say(f"wrote {out / 'metrics.json'} and {out / 'summary.md'}")
    if not any(report["results"] for report in reports):
        fail(f"none of the requested metrics ({', '.join(options.metrics)}) could be computed", code=1)
