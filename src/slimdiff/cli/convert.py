"""`slimdiff convert CKPT --preset ldm-f4 --out DIR`: options → `slimdiff.sampling.convert.convert_checkpoint`."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import app, check_out_folder, console, say, user_errors


@app.command()
def convert(
    checkpoint: Path = typer.Argument(..., help="a CompVis LDM checkpoint (.ckpt / .pt / .safetensors)"),
    preset: str = typer.Option(
        ..., "--preset", help="the architecture it holds: ldm-f4, ldm-kl8, lite-ldm-…"
    ),
    out: Path = typer.Option(..., "--out", help="pipeline folder to write"),
    ema: bool = typer.Option(
        False, "--ema", help="take the EMA weights (model_ema.*) instead of the model's"
    ),
    vae: bool = typer.Option(
        True, "--vae/--no-vae", help="also convert the autoencoder (first_stage_model.*)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty --out"),
) -> None:
    """Convert a CompVis latent-diffusion checkpoint into a slimdiff pipeline folder (UNet of PRESET, its noise
    schedule and autoencoder), loading tensors only — no code from the file is executed."""
    from slimdiff.sampling.convert import convert_checkpoint

    check_out_folder(out, overwrite)
    with user_errors(), console.status(f"converting {checkpoint}"):
        record = convert_checkpoint(checkpoint, preset, out, ema=ema, vae=vae)
    autoencoder = record["vae"]
    found = (
        f"{autoencoder['kind']} autoencoder (scale {autoencoder['scaling_factor']:g})"
        if autoencoder
        else "no autoencoder"
    )
    say(f"{out}: {preset} UNet{' (EMA)' if ema else ''}, noise schedule {record['schedule']}, {found}")
