"""Which decoder turns a pipeline's latents into pixels: the autoencoder's own (`full`), the model's slim
decoder (`slim`: the model folder's `slim_decoder/`), or a slim decoder folder given by path."""

from __future__ import annotations

from pathlib import Path

from slimdiff.deploy.onnx_decoder import SLIM_DECODER
from slimdiff.errors import ModelError
from slimdiff.models.slim_decoder import load_slim_decoder

CHOICES = ("full", "slim")


def slim_decoder_folder(model: str | Path, choice: str) -> Path | None:
    """The slim decoder folder `choice` names for `model` (None for `full`)."""
    if choice == "full":
        return None
    folder = Path(model) / SLIM_DECODER if choice == "slim" else Path(choice)
    if choice == "slim" and not folder.is_dir() and (Path(model) / "model" / SLIM_DECODER).is_dir():
        folder = Path(model) / "model" / SLIM_DECODER  # a run folder
    if not folder.is_dir():
        what = f"{model} has no {SLIM_DECODER}/ folder" if choice == "slim" else f"{folder} is not a folder"
        raise ModelError(
            f"--decoder {choice}: {what}; make one with `slimdiff distill-decoder --vae {model} --data DATA "
            f"--out {Path(model) / SLIM_DECODER}`"
        )
    return folder


def use_decoder(pipe, model: str | Path, choice: str = "full"):
    """`pipe` with the decoder `choice` (full, slim or a slim decoder folder) in place of its autoencoder's."""
    folder = slim_decoder_folder(model, choice)
    if folder is None:
        return pipe
    if pipe.vae is None:
        raise ModelError(f"--decoder {choice}: {model} works in pixel space and has no decoder to replace")
    slim = load_slim_decoder(folder)
    want = pipe.vae.config.latent_channels
    if slim.config.latent_channels != want:
        raise ModelError(
            f"the slim decoder in {folder} takes {slim.config.latent_channels} latent channels, {model} makes {want}"
        )
    pipe.register_modules(vae=slim)
    return pipe
