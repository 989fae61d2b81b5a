"""`slimdiff sample MODEL`: numbered PNGs, a grid and the resolved config in `--out`; options →
`sample_folder`."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import SCHEDULER_HELP, app, check_out_folder, fail, say, user_errors
from slimdiff.reporting.progress import progress_bar
from slimdiff.sampling.solvers import SAMPLERS


@app.command()
def sample(
    model: str = typer.Argument(..., help="pipeline folder, run folder, UNet folder or hub id"),
    out: Path = typer.Option(..., "--out", help="folder for the PNGs, grid.png and sample.json"),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help=SCHEDULER_HELP + "; default: a step-distilled model's own, else dpm++",
    ),
    steps: int | None = typer.Option(
        None, "--steps", min=1, max=1000, help="solver steps; default: a step-distilled model's own, else 20"
    ),
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
        None,
        "--guidance",
        min=0.0,
        max=50.0,
        help="classifier-free guidance scale w (with --label or --prompt)",
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
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="with --onnx: the graphs, fp32 or int8 (default: int8 when the export was quantised, else fp32)",
    ),
    decoder: str = typer.Option(
        "full",
        "--decoder",
        help="full (the autoencoder's), slim (MODEL/slim_decoder) or a slim decoder folder",
    ),
    init_image: Path | None = typer.Option(
        None,
        "--init-image",
        help="image-to-image: start every sample from this image (another size is centre-cropped and resized to the model's)",
    ),
    strength: float | None = typer.Option(
        None,
        "--strength",
        min=0.0,
        max=1.0,
        help="share of the steps run from the noised --init-image (1: pure noise); default 0.8, 1 with --mask",
    ),
    mask: Path | None = typer.Option(
        None, "--mask", help="inpainting: repaint the white pixels of this mask, keep the black ones"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="allow a non-empty --out folder"),
) -> None:
    """Draw images from a model with any diffusers solver, optional guidance and stitching, from noise or from
    an --init-image (image-to-image; inpainting with --mask)."""
    from slimdiff.deploy.export import PRECISIONS
    from slimdiff.deploy.sample_folder import DEFAULT_SCHEDULER, SampleSettings, sample_folder

    if scheduler is not None and scheduler not in SAMPLERS:
        fail(f"unknown --scheduler {scheduler!r}; valid: {', '.join(SAMPLERS)}")
    if stitch_teacher is not None and SAMPLERS[scheduler or DEFAULT_SCHEDULER].keeps_model_outputs:
        single = ", ".join(s.name for s in SAMPLERS.values() if not s.keeps_model_outputs)
        fail(
            f"--stitch-teacher needs a single-step --scheduler ({single}); "
            f"{scheduler or DEFAULT_SCHEDULER} keeps past model outputs"
        )
    if guidance is not None and label is None and prompt is None:
        fail("--guidance needs --label or --prompt (what to guide towards)")
    if label is not None and prompt is not None:
        fail("pass --label or --prompt, not both")
    if precision is not None and (not onnx or precision not in PRECISIONS):
        fail(
            f"--precision takes {' or '.join(PRECISIONS)} and needs --onnx (it picks an ONNX export's graphs)"
        )
    if init_image is None and (mask is not None or strength is not None):
        fail("--mask and --strength need --init-image (the image to start from)")
    check_out_folder(out, overwrite)
    settings = SampleSettings(
        model=model,
        out=out,
        scheduler=scheduler,
        steps=steps,
        num_images=num_images,
        batch_size=batch_size,
        seed=seed,
        eta=eta,
        label=label,
        prompt=prompt,
        negative_prompt=negative_prompt,
        guidance=guidance,
        stitch_teacher=stitch_teacher,
        stitch_fraction=stitch_fraction,
        onnx=onnx,
        precision=precision,
        decoder=decoder,
        init_image=None if init_image is None else str(init_image),
        strength=strength,
        mask=None if mask is None else str(mask),
    )
    with user_errors(), progress_bar("sampling", num_images) as bar:
        record = sample_folder(settings, bar.update)
    say(f"{num_images} images in {record['seconds']:.1f} s → {out} (grid.png, sample.json)")
