"""`slimdiff export MODEL --to diffusers|onnx --out DIR`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from slimdiff.cli.app import app, check_out_folder, console, fail

TARGETS = ("diffusers", "onnx")
# The ONNX graph must answer like PyTorch: max |ONNX − PyTorch| / max |PyTorch| at most this.
ONNX_TOLERANCE = 1e-4


@app.command()
def export(
    model: str = typer.Argument(..., help="pipeline folder, run folder, UNet folder or hub id"),
    to: str = typer.Option(
        ..., "--to", help="diffusers (pipeline folder) or onnx (pipeline folder + unet/model.onnx)"
    ),
    out: Path = typer.Option(..., "--out", help="folder to write"),
    overwrite: bool = typer.Option(False, "--overwrite", help="allow a non-empty --out folder"),
) -> None:
    """Write MODEL as a diffusers pipeline folder, optionally with its UNet step as an ONNX graph."""
    from slimdiff.sampling.pipeline import load_pipeline

    if to not in TARGETS:
        fail(f"unknown --to {to!r}; valid: {', '.join(TARGETS)}")
    check_out_folder(out, overwrite)
    try:
        pipe = load_pipeline(model)
    except (OSError, ValueError) as error:
        fail(f"cannot load {model}: {error}")
    with console.status("writing the pipeline folder"):
        pipe.save_pretrained(str(out))
    record = {"model": model, "to": to, "out": str(out)}
    if to == "onnx":
        from slimdiff.sampling.onnx_export import ONNX_FILE, OnnxUNet, export_onnx, relative_error

        with console.status("exporting the UNet step to ONNX"):
            path = export_onnx(pipe.unet.eval(), out / "unet" / ONNX_FILE)
        with console.status("checking onnxruntime against PyTorch"):
            error = relative_error(pipe.unet, OnnxUNet(path, pipe.unet.config))
        record.update(onnx=str(path), relative_error=error, tolerance=ONNX_TOLERANCE)
        (out / "export.json").write_text(json.dumps(record, indent=2))
        if error > ONNX_TOLERANCE:
            fail(f"onnxruntime differs from PyTorch by {error:.2e} (relative) > {ONNX_TOLERANCE:g}", code=1)
        console.print(f"{path}: onnxruntime matches PyTorch to {error:.1e} (relative)")
    else:
        (out / "export.json").write_text(json.dumps(record, indent=2))
    console.print(f"pipeline folder: {out}")
