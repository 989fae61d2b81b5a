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
        False,
        "--overwrite",
        help="replace an earlier export in --out (only a folder whose export.json lists every file in it; "
        "any other folder is refused, nothing deleted)",
    ),
    quantize: str | None = typer.Option(
        None,
        "--quantize",
        help="int8: also write int8 graphs (onnxruntime quantisation) and measure their cost",
    ),
    data: str | None = typer.Option(
        None, "--data", help="images for int8's ε-error measurement (default: the model's own samples)"
    ),
    fp16: bool = typer.Option(
        False, "--fp16", help="a float16 UNet graph (checked against the float32 model to 1e-2 relative)"
    ),
) -> None:
    """Write MODEL as a diffusers pipeline folder, optionally with its UNet step as an ONNX graph."""
    from slimdiff.deploy.export import ONNX_TOLERANCE, check_replaceable, export_folder
    from slimdiff.sampling.pipeline import load_pipeline

    if to not in TARGETS:
        fail(f"unknown --to {to!r}; valid: {', '.join(TARGETS)}")
    if quantize is not None and (quantize != "int8" or to != "onnx"):
        fail(f"--quantize {quantize}: only int8, with --to onnx")
    if fp16 and (to != "onnx" or quantize is not None):
        fail("--fp16: only with --to onnx, and not with --quantize (int8 starts from the float32 graph)")
    check_out_folder(out, overwrite)
    with user_errors():
        check_replaceable(out)  # before the model loads: a folder it may not replace is refused at once
        pipe = load_pipeline(model)
        with console.status("writing the pipeline folder" + (" and the ONNX graph" if to == "onnx" else "")):
            record = export_folder(pipe, out, onnx=to == "onnx", source=model, fp16=fp16)
    if to == "onnx":
        error, tolerance = record["relative_error"], record["tolerance"]
        if error > tolerance:
            fail(f"onnxruntime differs from PyTorch by {error:.2e} (relative) > {tolerance:g}", code=1)
        say(f"{record['onnx']}: onnxruntime matches PyTorch to {error:.1e} (relative)")
        for name, decoder in record.get("decoders", {}).items():
            if decoder["relative_error"] > ONNX_TOLERANCE:
                fail(
                    f"the {name} graph differs from PyTorch by {decoder['relative_error']:.2e} (relative)",
                    code=1,
                )
            say(
                f"{name}/model.onnx: onnxruntime matches PyTorch to {decoder['relative_error']:.1e} (relative)"
            )
    if quantize:
        from slimdiff.deploy.quantize import quantize_export

        with user_errors(), console.status("quantising to int8 and measuring its cost"):
            cost = quantize_export(out, data)["quantize"]
        for name, graph in cost["graphs"].items():
            say(f"{name}: int8 ({graph['mode']}) runs {graph['speedup']:.2f}× the fp32 graph's speed")
        eps = cost["cost"]["eps_error"]
        say(
            f"int8 cost: ε error vs fp32 low {eps['int8_vs_fp32']['low']:.2e} / high {eps['int8_vs_fp32']['high']:.2e} "
            f"(the model's own: {eps['fp32_own_error']['low']:.2e} / {eps['fp32_own_error']['high']:.2e}); "
            f"samples PSNR {cost['cost']['samples']['psnr_db']:.1f} dB — details in {out / 'export.json'}"
        )
    say(f"pipeline folder: {out}")
