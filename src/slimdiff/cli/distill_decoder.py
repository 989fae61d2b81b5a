"""`slimdiff distill-decoder --vae SOURCE --data DATA --out DIR`: options → `distill_and_measure`."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import app, check_out_folder, say, user_errors
from slimdiff.reporting.progress import progress_bar


@app.command("distill-decoder")
def distill_decoder(
    vae: str = typer.Option(
        ..., "--vae", help="autoencoder folder, pipeline folder (vae/ or vqvae/) or run folder"
    ),
    data: str = typer.Option(
        ..., "--data", help="images whose latents it learns on (folder, HF set, builtin:…)"
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="folder to write; MODEL/slim_decoder makes `slimdiff sample MODEL --decoder slim` use it",
    ),
    steps: int = typer.Option(1000, "--steps", min=1, help="training steps"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="latent crops per step"),
    lr: float = typer.Option(1e-3, "--lr", min=1e-8, help="peak learning rate (one-cycle schedule)"),
    images: int = typer.Option(256, "--images", min=1, help="training images (encoded once)"),
    size: int = typer.Option(256, "--size", min=8, help="image side"),
    crop: int = typer.Option(16, "--crop", min=0, help="latent crop side for training (0: whole latents)"),
    lambda_freq: float = typer.Option(
        1.0, "--lambda-freq", min=0.0, help="weight of the frequency-weighted loss"
    ),
    n_eval: int = typer.Option(32, "--n-eval", min=1, help="held-out images for PSNR / SWD / spectrum error"),
    seed: int = typer.Option(0, "--seed", min=0),
    overwrite: bool = typer.Option(False, "--overwrite", help="allow a non-empty --out folder"),
) -> None:
    """Distil a slim decoder (about 1M weights) from an autoencoder's decoder, pixel + frequency-weighted loss."""
    from slimdiff.deploy.decoder_distillation import DecoderDistillSettings, distill_and_measure

    check_out_folder(out, overwrite)
    settings = DecoderDistillSettings(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        images=images,
        size=size,
        crop=crop,
        lambda_freq=lambda_freq,
        seed=seed,
    )
    with user_errors(), progress_bar("distilling the decoder", steps) as bar:
        record = distill_and_measure(vae, data, out, settings, n_eval, lambda step, logs: bar.update())
    q = record["quality_vs_full_decoder"]
    say(
        f"slim decoder ({record['params'] / 1e6:.2f}M weights) → {out}: PSNR {q['psnr_db']:.1f} dB against the full "
        f"decoder, spectrum error low {q['spectrum_error']['low']:.3f} / high {q['spectrum_error']['high']:.3f}"
    )
