"""`slimdiff sample MODEL`: numbered PNGs, a grid and the resolved config in `--out`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import typer
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from slimdiff.cli.app import SCHEDULER_HELP, app, check_out_folder, console, fail, say, user_errors
from slimdiff.sampling.solvers import SAMPLERS


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create `out`; refuse a non-empty folder unless `overwrite` (then its old PNGs are replaced)."""
    check_out_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()


def load_or_fail(model: str, onnx: bool, decoder: str = "full"):
    """The pipeline for `model`, its UNet steps (and decoder) run by onnxruntime when `onnx`; `decoder` is
    full, slim (MODEL/slim_decoder) or a slim decoder folder."""
    from slimdiff.sampling.decoders import use_decoder
    from slimdiff.sampling.pipeline import load_pipeline

    try:
        pipe = load_pipeline(model)
    except (OSError, ValueError) as error:
        fail(f"cannot load {model}: {str(error).splitlines()[0]}")
    if onnx:
        from slimdiff.sampling.export import load_onnx_pipeline

        with user_errors():
            pipe = load_onnx_pipeline(model, pipe, decoder="slim_decoder" if decoder == "slim" else "vae")
    with user_errors():
        pipe = use_decoder(pipe, model, "full" if onnx and decoder == "slim" else decoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@app.command()
def sample(
    model: str = typer.Argument(..., help="pipeline folder, run folder, UNet folder or hub id"),
    out: Path = typer.Option(..., "--out", help="folder for the PNGs, grid.png and sample.json"),
    scheduler: str = typer.Option("dpm++", "--scheduler", help=SCHEDULER_HELP),
    steps: int = typer.Option(20, "--steps", min=1, max=1000, help="solver steps"),
    num_images: int = typer.Option(16, "-n", "--num-images", min=1, max=100_000, help="images to draw"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=1024, help="images per UNet call"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the initial noise and of stochastic solvers"),
    eta: float = typer.Option(0.0, "--eta", min=0.0, max=1.0, help="DDIM η (0 = deterministic)"),
    label: str | None = typer.Option(
        None, "--label", help="class (class-conditional models): its number or its name (class_names.json)"
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="text prompt (text-conditional models)"),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="what guidance steers away from"),
    guidance: float | None = typer.Option(
        None, "--guidance", min=0.0, max=50.0, help="classifier-free guidance scale w (needs --label)"
    ),
    stitch_teacher: str | None = typer.Option(
        None, "--stitch-teacher", help="teacher UNet for the late steps (trajectory stitching)"
    ),
    stitch_fraction: float = typer.Option(
        0.5,
        "--stitch-fraction",
        min=0.0,
        max=1.0,
        help="fraction of the steps run by MODEL before the teacher",
    ),
    onnx: bool = typer.Option(
        False, "--onnx", help="run the UNet steps and the decoder with onnxruntime (an ONNX export folder)"
    ),
    decoder: str = typer.Option(
        "full",
        "--decoder",
        help="full (the autoencoder's), slim (MODEL/slim_decoder) or a slim decoder folder",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="allow a non-empty --out folder"),
) -> None:
    """Draw images from a model with any diffusers solver, optional guidance and stitching."""
    from slimdiff.reporting.images import save_grid, to_uint8
    from slimdiff.sampling.conditions import prompt_embeddings, resolve_label, text_encoder_of
    from slimdiff.sampling.generate import generate

    if scheduler not in SAMPLERS:
        fail(f"unknown --scheduler {scheduler!r}; valid: {', '.join(SAMPLERS)}")
    if stitch_teacher is not None and SAMPLERS[scheduler].keeps_model_outputs:
        single = ", ".join(s.name for s in SAMPLERS.values() if not s.keeps_model_outputs)
        fail(
            f"--stitch-teacher needs a single-step --scheduler ({single}); {scheduler} keeps past model outputs"
        )
    if guidance is not None and label is None and prompt is None:
        fail("--guidance needs --label or --prompt (what to guide towards)")
    if label is not None and prompt is not None:
        fail("pass --label or --prompt, not both")
    pipe = load_or_fail(model, onnx, decoder)
    condition, per_image = {}, {}
    with user_errors():
        if label is not None:
            condition["class_labels"] = resolve_label(model, label)
        if prompt is not None:
            embeds, negative = prompt_embeddings(text_encoder_of(model), prompt, negative_prompt)
            per_image["prompt_embeds"] = embeds.expand(num_images, -1, -1)
            condition["negative_prompt_embeds"] = negative
    stitch = None
    if stitch_teacher is not None:
        from slimdiff.models.loading import load_unet

        try:
            stitch = (load_unet(stitch_teacher).eval(), stitch_fraction)
        except (OSError, ValueError) as error:
            fail(f"cannot load --stitch-teacher {stitch_teacher}: {error}")
    prepare_out(out, overwrite)
    config = {
        "model": model,
        "scheduler": scheduler,
        "steps": steps,
        "num_images": num_images,
        "batch_size": batch_size,
        "seed": seed,
        "eta": eta,
        "label": label,
        "prompt": prompt,
        "negative_prompt": negative_prompt if prompt is not None else None,
        "guidance": guidance,
        "stitch_teacher": stitch_teacher,
        "stitch_fraction": stitch_fraction if stitch_teacher else None,
        "onnx": onnx,
        "decoder": decoder,
        "noise_schedule": dict(pipe.scheduler.config),
    }
    (out / "sample.json").write_text(json.dumps(config, indent=2, default=str))

    start = time.perf_counter()
    columns = (TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sampling", total=num_images)

        def save(first: int, images: torch.Tensor) -> None:
            # Written batch by batch: an interrupted run keeps what it drew.
            for i, pixels in enumerate(to_uint8(images)):
                Image.fromarray(pixels).save(out / f"{first + i:06d}.png")
            progress.advance(task, len(images))

        try:
            images = generate(
                pipe,
                num_images,
                seed,
                batch_size,
                on_batch=save,
                num_inference_steps=steps,
                sampler=scheduler,
                eta=eta,
                guidance_scale=guidance,
                stitch=stitch,
                per_image=per_image,
                **condition,
            )
        except ValueError as error:  # a setting the pipeline refuses (label range, guidance, …)
            (out / "sample.json").unlink(missing_ok=True)
            fail(str(error).splitlines()[0])
    seconds = time.perf_counter() - start
    save_grid(images[:256], out / "grid.png")
    config["seconds"] = round(seconds, 3)
    (out / "sample.json").write_text(json.dumps(config, indent=2, default=str))
    say(f"{num_images} images in {seconds:.1f} s → {out} (grid.png, sample.json)")
