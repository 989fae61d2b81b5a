"""`export_folder`: a pipeline written as a diffusers folder, optionally with its UNet step as an ONNX graph,
and `load_onnx_pipeline`, which runs such a folder's UNet steps on onnxruntime — only when the graph still
belongs to the weights beside it.

An export replaces the folder's whole content (it is written to a hidden sibling and swapped in), so no
stale `unet/model.onnx` of an earlier export can survive. `export.json` records the SHA-256 of the UNet
weights the graph was made from; loading checks it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from slimdiff.deploy.onnx_decoder import export_decoders, file_digest, load_onnx_decoder
from slimdiff.deploy.onnx_unet import FP16_TOLERANCE, ONNX_FILE, OnnxUNet, export_onnx, relative_error
from slimdiff.errors import ModelError
from slimdiff.sampling.pipeline import SlimDiffusionPipeline

WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"
# The ONNX graph must answer like PyTorch: max |ONNX − PyTorch| / max |PyTorch| at most this.
ONNX_TOLERANCE = 1e-4
INT8_ONNX = "model.int8.onnx"  # beside each model.onnx after `--quantize int8` (`slimdiff.deploy.quantize`)


def export_folder(
    pipe: SlimDiffusionPipeline, out: Path, onnx: bool, source: str = "", fp16: bool = False
) -> dict:
    """Write `pipe` to `out` (replacing whatever was there); with `onnx`, also unet/model.onnx, checked
    against PyTorch (`fp16`: a float16 UNet graph, checked against the float32 model to FP16_TOLERANCE).
    Returns the record written to export.json (relative_error and the tolerance it must meet when onnx)."""
    out = Path(out)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
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
            unet_weights_sha256=file_digest(tmp / WEIGHTS),
            # the decoder too (vae/model.onnx, slim_decoder/model.onnx): the whole pipeline on onnxruntime
            decoders=export_decoders(pipe, tmp, source),
        )
    (tmp / "export.json").write_text(json.dumps(record, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return record


def load_onnx_pipeline(
    folder: str | Path,
    pipe: SlimDiffusionPipeline,
    threads: int | None = None,
    decoder: str = "vae",
    precision: str | None = None,
):
    """`pipe` (loaded from `folder`) with its UNet steps on onnxruntime, after checking that the graph was
    exported from the weights in `folder/unet` and that onnxruntime can read it. The decoder (`decoder`:
    "vae" or "slim_decoder") runs on onnxruntime too when the export has its graph. `precision` "fp32" or
    "int8" picks the graphs; None takes int8 when the folder was exported with `--quantize int8`."""
    folder = Path(folder)
    record_file = folder / "export.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    precision = precision or ("int8" if "quantize" in record else "fp32")
    graph = INT8_ONNX if precision == "int8" else ONNX_FILE
    path = folder / "unet" / graph
    if not path.is_file():
        raise ModelError(
            f"{path} does not exist; run `slimdiff export {folder} --to onnx --out DIR`"
            + (" --quantize int8" if precision == "int8" else "")
            + ", then sample DIR"
        )
    expected = record.get("unet_weights_sha256")
    if expected is None or not (folder / WEIGHTS).is_file() or file_digest(folder / WEIGHTS) != expected:
        raise ModelError(
            f"{path} was not exported from the weights in {folder / 'unet'} (export.json has no or another "
            "weights digest); export again with `slimdiff export … --to onnx --overwrite`"
        )
    try:
        onnx_unet = OnnxUNet(path, pipe.unet.config, threads)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
        raise ModelError(f"onnxruntime cannot read {path}: {str(error).splitlines()[0]}") from None
    vae = load_onnx_decoder(folder, decoder, record, threads, graph) or pipe.vae
    return SlimDiffusionPipeline(unet=onnx_unet, scheduler=pipe.scheduler, vae=vae)
