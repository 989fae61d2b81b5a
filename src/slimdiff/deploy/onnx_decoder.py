"""The decoder half of a whole-pipeline ONNX export: latents → images for a VQ, KL or slim decoder, with the
same parity check as the UNet step, and an onnxruntime stand-in for `pipe.vae`.

The graph is `vae.decode(z).sample` on *unscaled* latents (the pipeline divides by the scaling factor first,
as for the PyTorch decoder), with a dynamic batch axis; a VQ decoder keeps its quantisation in the graph.
`export_decoders` writes `vae/model.onnx` (and `slim_decoder/model.onnx` when the model has a slim decoder)
into an export folder and returns what export.json records about them.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimdiff.errors import ModelError
from slimdiff.models.inputs import sample_hw

DECODER_ONNX = "model.onnx"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
SLIM_DECODER = "slim_decoder"  # the subfolder of a model folder that `--decoder slim` reads


def session_options(threads: int | None = None):
    """onnxruntime settings for a CPU session: every graph optimisation, sequential execution, and
    `threads` intra-op threads (None: onnxruntime's default, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    return options


class DecoderStep(nn.Module):
    """`vae.decode(z).sample` as a plain tensor function, the form the exporter traces."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).sample


def decoder_inputs(vae: nn.Module, latent_hw: tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Seeded unscaled latents of the decoder's input shape (roughly the scale the UNet's samples have)."""
    g = torch.Generator().manual_seed(seed)
    scale = float(vae.config.get("scaling_factor", 1.0))
    return torch.randn(batch, vae.config.latent_channels, *latent_hw, generator=g) / scale


def export_decoder(vae: nn.Module, path: str | Path, latent_hw: tuple[int, int]) -> Path:
    """Write the decoder of `vae` (latents → images) as an ONNX graph with a dynamic batch axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    step = DecoderStep(vae).eval()  # the wrapper as well: torch.onnx warns on a module left in training mode
    with torch.no_grad():
        program = torch.onnx.export(
            step,
            (decoder_inputs(vae, latent_hw),),
            dynamo=True,
            input_names=["latents"],
            output_names=["images"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    program.save(str(path))
    return path


class DecoderOutput:
    def __init__(self, sample: torch.Tensor):
        self.sample = sample


class OnnxDecoder:
    """An onnxruntime session that answers `vae.decode(z).sample`, so `SlimDiffusionPipeline.decode` runs it in
    place of the PyTorch decoder. `config` is the exported decoder's config (its scaling factor is used)."""

    dtype = torch.float32

    def __init__(self, path: str | Path, config, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.config = config

    def decode(self, latents: torch.Tensor, **_: object) -> DecoderOutput:
        array = np.ascontiguousarray(latents.detach().float().cpu().numpy())
        return DecoderOutput(torch.from_numpy(self.session.run(None, {"latents": array})[0]))


def decoder_relative_error(
    vae: nn.Module, onnx_decoder: OnnxDecoder, latent_hw: tuple[int, int], batch: int = 3, seed: int = 1
) -> float:
    """max |ONNX − PyTorch| / max |PyTorch| of one decode on random latents (batch ≠ the exported one)."""
    latents = decoder_inputs(vae, latent_hw, batch, seed)
    with torch.no_grad():
        reference = DecoderStep(vae.eval())(latents)
    got = onnx_decoder.decode(latents).sample
    return float((got - reference).abs().max() / reference.abs().max())


def file_digest(path: Path) -> str:
    """SHA-256 of a file: export.json records one per file an export wrote (`check_exported`)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_exported(folder: Path, graph: Path, weights: Path, record: dict) -> None:
    """Refuse the graph `folder/graph` unless it and the weights `folder/weights` it was made from are still
    the files export.json's `files` recorded: a graph copied from another export of the same architecture, or
    weights changed since, would otherwise run and draw another model's images."""
    files = record.get("files", {})
    for part in (graph, weights):
        path = folder / part
        expected = files.get(part.as_posix())
        if expected is None or not path.is_file() or file_digest(path) != expected:
            raise ModelError(
                f"{folder / graph} was not exported from the weights in {folder / weights.parent} "
                f"({part.as_posix()} is not the file export.json records); export again with "
                "`slimdiff export … --to onnx --overwrite`"
            )


def _export_checked(decoder: nn.Module, folder: Path, latent_hw: tuple[int, int]) -> dict:
    path = export_decoder(decoder, folder / DECODER_ONNX, latent_hw)
    error = decoder_relative_error(decoder, OnnxDecoder(path, decoder.config), latent_hw)
    return {"relative_error": error}


def export_decoders(pipe, folder: Path, source: str = "") -> dict:
    """Into the export folder `folder` (already holding the saved pipeline): `vae/model.onnx` when the pipeline
    has an autoencoder, and the model's slim decoder (`source/slim_decoder`, copied, with its graph) when it
    has one. Returns export.json's `decoders` entry: per decoder its relative error against PyTorch."""
    from slimdiff.models.slim_decoder import load_slim_decoder

    latent_hw = sample_hw(pipe.unet.config)
    record = {}
    if pipe.vae is not None:
        record["vae"] = _export_checked(pipe.vae, folder / "vae", latent_hw)
    slim = Path(source) / SLIM_DECODER if source else None
    if slim is not None and slim.is_dir():
        shutil.copytree(slim, folder / SLIM_DECODER, ignore=shutil.ignore_patterns("*.onnx"))
        record[SLIM_DECODER] = _export_checked(load_slim_decoder(slim), folder / SLIM_DECODER, latent_hw)
    return record


def load_onnx_decoder(
    folder: Path, name: str, record: dict, threads: int | None = None, graph: str = DECODER_ONNX
):
    """The onnxruntime decoder `folder/name/graph`, after checking that it and the weights beside it are the
    files the export wrote (`check_exported`); None when the export has no such decoder."""
    import json

    entry = record.get("decoders", {}).get(name)
    path = folder / name / graph
    if entry is None or not path.is_file():
        if name == SLIM_DECODER:
            raise ModelError(
                f"{path} does not exist; put a slim decoder (`slimdiff distill-decoder`) in the model's "
                f"{SLIM_DECODER}/ folder and export again"
            )
        return None
    check_exported(folder, Path(name) / graph, Path(name) / WEIGHTS_FILE, record)
    config = json.loads((folder / name / "config.json").read_text())
    try:
        return OnnxDecoder(path, _Config(config), threads)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
        raise ModelError(f"onnxruntime cannot read {path}: {str(error).splitlines()[0]}") from None


class _Config(dict):
    """A decoder's config.json read back: `config.get(...)` and `config.scaling_factor` both work."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None
