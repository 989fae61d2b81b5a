"""`slimdiff make-tiny-clip FOLDER`: a tiny CLIP text encoder built locally (`models/tiny_clip.py`), the
offline `conditioning.text_encoder` of configs/tiny-text.yaml."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import app, check_out_folder, fail, say


@app.command()
def make_tiny_clip(
    folder: Path = typer.Argument(..., help="folder to write tokenizer/ and text_encoder/ into"),
    max_length: int = typer.Option(77, "--max-length", min=2, max=512, help="tokens per prompt (CLIP's 77)"),
    width: int = typer.Option(32, "--width", min=4, max=1024, help="hidden size = the UNet's context width"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the random weights"),
    overwrite: bool = typer.Option(False, "--overwrite", help="allow a non-empty FOLDER"),
) -> None:
    """Build a tiny random CLIP text encoder and a byte-level tokenizer, with nothing downloaded: a stand-in
    for openai/clip-vit-large-patch14 in offline text runs (conditioning.text_encoder: FOLDER)."""
    from slimdiff.models.tiny_clip import make_tiny_clip as build

    if width % 4:
        fail(f"--width must be a multiple of 4 (4 attention heads), got {width}")
    check_out_folder(folder, overwrite)
    build(folder, max_length=max_length, hidden_size=width, seed=seed)
    say(f"{folder}: tiny CLIP (width {width}, {max_length} tokens) → set conditioning.text_encoder: {folder}")
