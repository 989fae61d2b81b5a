"""int8 post-training quantisation of an exported pipeline's graphs with onnxruntime's quantisation tools.

Static quantisation (QDQ, per-channel int8 weights, uint8 activations) is calibrated on the model's *own*
inputs: the x_t and t the fp32 pipeline meets along seeded sampling trajectories, and the final latents it hands
to the decoder. `SETTINGS` names the ways to quantise (benchmarks/results/int8_profile.md times them); the
default quantises the convolutions only, with 7-bit weights. Dynamic quantisation is the fallback when the
static tool fails. `quantize_export` records the graphs, their speed-up (one UNet step and one decode, batch
1, one thread) and their quality cost (`slimdiff.metrics.fidelity.int8_cost`) in export.json."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from slimdiff.deploy.export import INT8_ONNX, load_onnx_pipeline, read_record, write_record
from slimdiff.deploy.onnx_decoder import DECODER_ONNX, session_options
from slimdiff.deploy.onnx_unet import ONNX_FILE
from slimdiff.errors import WRITE_ERRORS, ConfigError, ModelError, OutputError, write_failure
from slimdiff.metrics.fidelity import final_latents, int8_cost
from slimdiff.models.autoencoders import Autoencoder
from slimdiff.models.inputs import condition_input, sample_hw
from slimdiff.sampling.pipeline import load_pipeline

QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
# by name: static / dynamic, graph format (QDQ pairs onnxruntime fuses into QLinear* kernels, or QLinear*
# ops), weight type, op types, reduce_range (7-bit weights: no int16 saturation in u8s8 kernels without VNNI)
SETTINGS: dict[str, dict] = {
    "u8s8-qdq": dict(what="static QDQ, u8 act., s8 per-channel weights", mode="static"),
    "u8s8-qdq-rr": dict(what="as u8s8-qdq, reduce_range", mode="static", reduce_range=True),
    "u8u8-qdq": dict(what="static QDQ, u8 act., u8 weights", mode="static", weight="QUInt8"),
    "u8s8-qop": dict(what="static QOperator (QLinear* ops)", mode="static", format="QOperator"),
    "u8s8-conv": dict(what="static QDQ, Conv only", mode="static", ops=["Conv"]),
    "u8s8-conv-rr": dict(
        what="static QDQ, Conv only, reduce_range", mode="static", ops=["Conv"], reduce_range=True
    ),
    "dynamic": dict(what="dynamic, Conv + MatMul", mode="dynamic"),
    "dynamic-matmul": dict(what="dynamic, MatMul / Gemm only", mode="dynamic", ops=["MatMul", "Gemm"]),
}
# on x86 without VNNI (AVX2) u8s8 products saturate int16 unless weights are 7-bit: 17% output error vs 3% on
# a tiny UNet (tests/deploy/test_quantize.py); QDQ around attention becomes QLinearSoftmax / QLinearMatMul, slower
# than fp32 (benchmarks/results/int8_profile.md), so only the convolutions are quantised
DEFAULT_SETTING = "u8s8-conv-rr"


class _Recorder:
    """Stands in for the UNet inside the pipeline and keeps every (sample, timestep) it is called with."""

    def __init__(self, unet):
        self.unet, self.config, self.feeds = unet, unet.config, []

    def __call__(self, sample, timestep, **condition):
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        self.feeds.append({"sample": sample.detach().clone(), "timestep": t.clone(), **condition})
        return self.unet(sample, timestep, **condition)


@torch.no_grad()
def calibration_feeds(pipe, n: int = 8, steps: int = 10, sampler: str = "dpm++", seed: int = 0):
    """(UNet feeds, decoder feeds): the graph inputs of `n` fp32 sampling trajectories of `steps` steps
    (one image each) and the unscaled final latents. Unconditional models only take plain feeds here."""
    recorder = _Recorder(pipe.unet)
    pipe_unet, pipe.unet = pipe.unet, recorder
    try:
        generator = torch.Generator().manual_seed(seed)
        shape = (n, pipe_unet.config.in_channels, *sample_hw(pipe_unet.config))
        noise = torch.randn(shape, generator=generator)
        finals = [
            pipe(
                batch_size=1,
                latents=noise[i : i + 1],
                num_inference_steps=steps,
                sampler=sampler,
                output_type="latent",
            ).images
            for i in range(n)
        ]
    finally:
        pipe.unet = pipe_unet
    unet_feeds = [{k: _array(v) for k, v in feed.items()} for feed in recorder.feeds]
    scale = float(pipe.vae.config.get("scaling_factor", 1.0)) if pipe.vae is not None else 1.0
    decoder_feeds = [{"latents": _array(x / scale)} for x in finals]
    return unet_feeds, decoder_feeds


def _array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().float().cpu().numpy())


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)

    def rewind(self):  # pragma: no cover - only some calibrators call it
        """Nothing to do: each calibration pass gets a fresh reader."""


def unshare_initializers(path: Path) -> None:
    """Give every node its own copy of a weight that several nodes read (the exporter shares equal constants,
    e.g. the wavelet filters); onnxruntime's static QDQ quantiser refuses shared weights."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    seen: dict[str, int] = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            seen[name] = seen.get(name, 0) + (name in initializers)
            if seen[name] > 1:
                copy = numpy_helper.from_array(
                    numpy_helper.to_array(initializers[name]), f"{name}__{seen[name]}"
                )
                graph.initializer.append(copy)
                node.input[k] = copy.name
    onnx.save(model, str(path))


def quantize_graph(
    fp32: Path, int8: Path, feeds: list[dict[str, np.ndarray]] | None, setting: str = DEFAULT_SETTING
) -> dict:
    """Write the int8 version of the graph `fp32` to `int8` with the named `setting` (`SETTINGS`): static
    (calibrated on `feeds`) when the setting is static, feeds are given and the static tool succeeds, else
    dynamic. Returns {"setting", "mode", "seconds", "static_error"?}."""
    _check_setting(setting)
    if not Path(fp32).is_file():
        raise ModelError(f"no ONNX graph at {fp32}; export the model with `slimdiff export --to onnx` first")
    start = time.perf_counter()
    fp32, int8 = Path(fp32).absolute(), Path(int8).absolute()
    prepared = int8.with_name(".prepared-" + fp32.name)
    # onnxruntime's tools leave scratch files (sym_shape_infer_temp.onnx, <uuid>.data) in the working folder
    with tempfile.TemporaryDirectory() as scratch, _working_folder(Path(scratch)):
        return _quantize(fp32, int8, prepared, feeds, SETTINGS[setting], start) | {"setting": setting}


def _check_setting(setting: str) -> None:
    if setting not in SETTINGS:
        raise ConfigError(f"unknown int8 setting {setting!r}; choose one of {', '.join(SETTINGS)}")


@contextlib.contextmanager
def _working_folder(folder: Path):
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _quantize(fp32: Path, int8: Path, prepared: Path, feeds, setting: dict, start: float) -> dict:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    record: dict = {}
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    try:
        quant_pre_process(str(fp32), str(prepared))
    except Exception:  # the pre-processing (shape inference, fusions) is an optimisation only
        shutil.copyfile(fp32, prepared)
    unshare_initializers(prepared)
    source = prepared
    ops = setting.get("ops", QUANTIZED_OPS)
    try:
        if feeds and setting["mode"] == "static":
            reader = type("Reader", (_Reader, CalibrationDataReader), {})(feeds)
            quantize_static(
                str(source),
                str(int8),
                reader,
                quant_format=QuantFormat[setting.get("format", "QDQ")],
                per_channel=True,
                reduce_range=setting.get("reduce_range", False),
                activation_type=QuantType.QUInt8,
                weight_type=QuantType[setting.get("weight", "QInt8")],
                # only the matrix products: Q/DQ pairs around element-wise ops cost more than they save
                op_types_to_quantize=ops,
            )
            record["mode"] = "static"
    except Exception as error:  # the static tool fails on some graphs; dynamic quantisation still helps
        record["static_error"] = str(error).splitlines()[0][:300]
    if "mode" not in record:
        quantize_dynamic(
            str(source),
            str(int8),
            weight_type=QuantType[setting.get("weight", "QInt8")],
            per_channel=True,
            reduce_range=setting.get("reduce_range", False),
            op_types_to_quantize=ops,
        )
        record["mode"] = "dynamic"
    prepared.unlink(missing_ok=True)
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


def time_graph(path: Path, feed: dict[str, np.ndarray], repeats: int = 5, threads: int = 1) -> float:
    """Median seconds of one run of the graph at `path` on `feed` (after a warm-up run)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _x0(pipe, data: str | None, n: int, seed: int) -> tuple[torch.Tensor, str]:
    """Clean model-space x0 for the ε error: the user's held-out images, encoded, or the pipeline's samples."""
    if data is None:
        return final_latents(pipe, n, seed), "samples of the fp32 graphs"
    from slimdiff.data.datasets import held_out_images

    autoencoder = Autoencoder.of(pipe.vae)
    size = sample_hw(pipe.unet.config)[0] * autoencoder.factor
    return autoencoder.encode(held_out_images(data, size, n, seed)), data


def quantize_export(
    folder: str | Path,
    data: str | None = None,
    n: int = 8,
    steps: int = 10,
    seed: int = 0,
    setting: str = DEFAULT_SETTING,
) -> dict:
    """Quantise the graphs of the ONNX export `folder` to int8 with `setting` (calibrated on the model's own
    sampling trajectories), measure the cost and speed-up, and record both in `folder/export.json` under
    `quantize`."""
    _check_setting(setting)
    folder = Path(folder)
    record = read_record(folder)
    pipe = load_pipeline(folder)
    if condition_input(pipe.unet.config) is not None:
        raise ModelError(
            "int8 quantisation supports unconditional models only for now; export without --quantize"
        )
    fp32 = load_onnx_pipeline(folder, pipe, threads=1, precision="fp32")
    fp32.set_progress_bar_config(disable=True)
    unet_feeds, decoder_feeds = calibration_feeds(fp32, n=n, steps=steps, seed=seed)
    graphs = {"unet": (unet_feeds, ONNX_FILE)}
    graphs.update({name: (decoder_feeds, DECODER_ONNX) for name in record.get("decoders", {})})
    before = dict(record)
    try:
        return _quantize_graphs(folder, record, graphs, fp32, pipe, (data, n, steps, seed), setting)
    except WRITE_ERRORS as error:  # a full disk: back to the fp32 export as it was
        for name in graphs:
            for written in (folder / name / INT8_ONNX, *(folder / name).glob(".prepared-*")):
                written.unlink(missing_ok=True)
        write_record(folder, before)
        raise OutputError(
            f"could not write the int8 graphs to {folder}: {write_failure(error)}; the fp32 export is intact "
            "— free space and export again with --quantize int8"
        ) from None


def _quantize_graphs(
    folder: Path, record: dict, graphs: dict, fp32, pipe, measure: tuple, setting: str
) -> dict:
    data, n, steps, seed = measure
    quantized = {}
    for name, (feeds, graph) in graphs.items():
        fp32_graph, int8_graph = folder / name / graph, folder / name / INT8_ONNX
        quantized[name] = quantize_graph(fp32_graph, int8_graph, feeds, setting)
        fp32_s, int8_s = time_graph(fp32_graph, feeds[0]), time_graph(int8_graph, feeds[0])
        quantized[name].update(fp32_seconds=fp32_s, int8_seconds=int8_s, speedup=fp32_s / int8_s)
    record["quantize"] = {
        "dtype": "int8",
        "calibration": f"{n} fp32 trajectories, dpm++ {steps} steps",
        "graphs": quantized,
    }
    write_record(folder, record)  # the int8 graphs' digests, which loading them checks
    int8 = load_onnx_pipeline(folder, pipe, threads=1, precision="int8")
    int8.set_progress_bar_config(disable=True)
    x0, source = _x0(fp32, data, n, seed)
    record["quantize"]["cost"] = {"eps_data": source, **int8_cost(fp32, int8, x0, n, steps, seed)}
    write_record(folder, record)
    return record
