"""`export_folder`: a pipeline written as a diffusers folder, optionally with its UNet step as an ONNX graph,
and `load_onnx_pipeline`, which runs such a folder's UNet steps on onnxruntime — only when the graph still
belongs to the weights beside it.

An export is written to a hidden sibling and swapped in, so no stale `unet/model.onnx` of an earlier export
survives and a failed export (a full disk) leaves nothing half written. `export.json` lists every file the
export wrote with its SHA-256: loading checks each graph and the weights it was made from against it, and an
export replaces a non-empty folder only when everything in it is on that list (nothing of the user's is
deleted).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from slimdiff.deploy.onnx_decoder import check_exported, export_decoders, file_digest, load_onnx_decoder
from slimdiff.deploy.onnx_unet import FP16_TOLERANCE, ONNX_FILE, OnnxUNet, export_onnx, relative_error
from slimdiff.errors import WRITE_ERRORS, ModelError, OutputError, write_failure
from slimdiff.sampling.pipeline import SlimDiffusionPipeline

WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"
RECORD = "export.json"
# The ONNX graph must answer like PyTorch: max |ONNX − PyTorch| / max |PyTorch| at most this.
ONNX_TOLERANCE = 1e-4
INT8_ONNX = "model.int8.onnx"  # beside each model.onnx after `--quantize int8` (`slimdiff.deploy.quantize`)
PRECISIONS = ("fp32", "int8")  # the graphs an export can be sampled with
# What `slimdiff export --overwrite` may replace; its help text says the same.
OVERWRITE_RULE = (
    "--overwrite replaces only an earlier export (a folder whose export.json lists every file in it)"
)


def read_record(folder: Path) -> dict:
    """`folder/export.json`; {} when there is none or it does not read as a JSON object."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_record(folder: Path, record: dict) -> None:
    """Write `record` as `folder/export.json` (written aside and renamed into place), with `files`: the SHA-256
    of every file in `folder`, all of which the export wrote."""
    folder = Path(folder)
    record["files"] = {
        path.relative_to(folder).as_posix(): file_digest(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != RECORD
    }
    tmp = folder / f".{RECORD}.tmp"
    try:
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, folder / RECORD)
    finally:
        tmp.unlink(missing_ok=True)


def check_replaceable(out: Path) -> None:
    """Refuse to replace a non-empty `out` that holds anything an export did not write (per its export.json):
    a user's notes beside a pipeline, another pipeline, a folder of an older slimdiff that listed nothing."""
    out = Path(out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    record = read_record(out)
    listed = set(record.get("files", {})) | {RECORD}
    others = [
        rel
        for rel in (p.relative_to(out).as_posix() for p in sorted(out.rglob("*")) if p.is_file())
        if rel not in listed
    ]
    if "files" not in record:
        reason = "it has no export.json listing the files an export wrote"
    elif others:
        reason = f"it holds files no export wrote ({', '.join(others[:3])}{', …' if len(others) > 3 else ''})"
    else:
        return
    raise OutputError(f"--out {out} is left as it is: {reason}; {OVERWRITE_RULE}")


def export_folder(
    pipe: SlimDiffusionPipeline, out: Path, onnx: bool, source: str = "", fp16: bool = False
) -> dict:
    """Write `pipe` to `out` (replacing an earlier export there, `check_replaceable`); with `onnx`, also
    unet/model.onnx, checked against PyTorch (`fp16`: a float16 UNet graph, checked against the float32 model
    to FP16_TOLERANCE). Returns the record written to export.json (relative_error and the tolerance it must
    meet when onnx). A write that fails (a full disk) raises `OutputError` and leaves `out` as it was."""
    out = Path(out)
    check_replaceable(out)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        record = _write(pipe, tmp, out, onnx, source, fp16)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)  # whatever stopped it, nothing half written stays behind
        if isinstance(error, WRITE_ERRORS):
            raise OutputError(
                f"could not write the export to {out}: {write_failure(error)}; nothing was changed — free "
                "space and export again"
            ) from None
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return record


def _write(pipe: SlimDiffusionPipeline, tmp: Path, out: Path, onnx: bool, source: str, fp16: bool) -> dict:
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    record = {"model": source, "to": "onnx" if onnx else "diffusers", "out": str(out)}
    if onnx:
        path = export_onnx(pipe.unet.eval(), tmp / "unet" / ONNX_FILE, fp16=fp16)
        error = relative_error(pipe.unet, OnnxUNet(path, pipe.unet.config))
        record.update(
            onnx=str(out / "unet" / ONNX_FILE),
            unet_precision="fp16" if fp16 else "fp32",
            relative_error=error,
            tolerance=FP16_TOLERANCE if fp16 else ONNX_TOLERANCE,
            # the decoder too (vae/model.onnx, slim_decoder/model.onnx): the whole pipeline on onnxruntime
            decoders=export_decoders(pipe, tmp, source),
        )
    write_record(tmp, record)
    return record


def graph_precision(folder: str | Path, precision: str | None = None) -> str:
    """The graphs an ONNX export is sampled with: `precision` ("fp32" or "int8") when given, else int8 when the
    folder was exported with `--quantize int8` and fp32 otherwise."""
    if precision not in (None, *PRECISIONS):
        raise ModelError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return precision or ("int8" if "quantize" in read_record(Path(folder)) else "fp32")


def load_onnx_pipeline(
    folder: str | Path,
    pipe: SlimDiffusionPipeline,
    threads: int | None = None,
    decoder: str = "vae",
    precision: str | None = None,
):
    """`pipe` (loaded from `folder`) with its UNet steps on onnxruntime, after checking that the graph and the
    weights in `folder/unet` are the files the export wrote and that onnxruntime can read the graph. The
    decoder (`decoder`: "vae" or "slim_decoder") runs on onnxruntime too when the export has its graph.
    `precision` "fp32" or "int8" picks the graphs (`graph_precision`)."""
    folder = Path(folder)
    record = read_record(folder)
    precision = graph_precision(folder, precision)
    graph = INT8_ONNX if precision == "int8" else ONNX_FILE
    path = folder / "unet" / graph
    if not path.is_file():
        raise ModelError(
            f"{path} does not exist; run `slimdiff export {folder} --to onnx --out DIR`"
            + (" --quantize int8" if precision == "int8" else "")
            + ", then sample DIR"
        )
    check_exported(folder, Path("unet") / graph, WEIGHTS, record)
    try:
        onnx_unet = OnnxUNet(path, pipe.unet.config, threads)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
        raise ModelError(f"onnxruntime cannot read {path}: {str(error).splitlines()[0]}") from None
    vae = load_onnx_decoder(folder, decoder, record, threads, graph) or pipe.vae
    components = {**pipe.components, "unet": onnx_unet, "vae": vae}  # a text model's encoder stays in PyTorch
    return SlimDiffusionPipeline(**components, class_names=pipe.config.class_names)
