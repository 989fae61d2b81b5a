"""`slimdiff export MODEL --to diffusers|onnx --out DIR [--overwrite]`: options → `export_folder`."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdiff.cli.app import app, check_out_folder, console, fail, say, user_errors

TARGETS = ("diffusers", "onnx")


@app.command()
def export(
    model: str = typer.Argument(..., help="pipeline folder, run folder, UNet folder or hub id"),
    to: str = typer.Option(
        ..., "--to", help="diffusers (pipeline folder) or onnx (pipeline folder + unet/model.onnx)"
    ),
    out: Path = typer.Option(..., "--out", help="folder to write"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace the whole content of a non-empty --out"
    ),
) -> None:
    """Write MODEL as a diffusers pipeline folder, optionally with its UNet step as an ONNX graph."""
    from slimdiff.sampling.export import ONNX_TOLERANCE, export_folder
    from slimdiff.sampling.pipeline import load_pipeline

    if to not in TARGETS:
        fail(f"unknown --to {to!r}; valid: {', '.join(TARGETS)}")
    check_out_folder(out, overwrite)
    if out.is_dir() and any(out.iterdir()) and not (out / "model_index.json").is_file():
        fail(f"--out {out} holds files that are not an exported pipeline; --overwrite replaces only those")
    with user_errors():
        try:
            pipe = load_pipeline(model)
        except (OSError, ValueError) as error:
            fail(f"cannot load {model}: {str(error).splitlines()[0]}")
        with console.status("writing the pipeline folder" + (" and the ONNX graph" if to == "onnx" else "")):
            record = export_folder(pipe, out, onnx=to == "onnx", source=model)
    if to == "onnx":
        error = record["relative_error"]
        if error > ONNX_TOLERANCE:
            fail(f"onnxruntime differs from PyTorch by {error:.2e} (relative) > {ONNX_TOLERANCE:g}", code=1)
        say(f"{record['onnx']}: onnxruntime matches PyTorch to {error:.1e} (relative)")
    say(f"pipeline folder: {out}")
