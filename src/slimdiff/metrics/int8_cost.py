"""`quantize_export`: int8 graphs for an ONNX export folder, and what they cost in quality and gain in speed,
measured at export and recorded in export.json under `quantize`.

- **ε-prediction error vs fp32** per timestep bucket, split into low and high spatial frequencies (the
  eps-spectrum with the fp32 graph as the "teacher"), next to the fp32 model's own ε error on the same x_t,
  so the int8 error reads as a share of the error the model makes anyway. x0 is the user's data (`data`,
  encoded by the model's autoencoder) or, without it, the fp32 pipeline's own samples.
- **Samples from the same noise**, fp32 vs int8 graphs: PSNR of each pair, SWD ×10³ and the low/high
  spectrum error of the int8 set against the fp32 set, and PSNR of the int8 decoder alone on fp32 latents.
- **Speed**: median seconds of one UNet step and one decode at batch 1, fp32 and int8 graphs, one thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from slimdiff.errors import ModelError
from slimdiff.metrics.eps_spectrum import eps_error_spectrum
from slimdiff.metrics.spectrum import spectrum_error
from slimdiff.metrics.swd import swd
from slimdiff.models.autoencoders import Autoencoder
from slimdiff.models.inputs import condition_input, sample_hw
from slimdiff.sampling.export import load_onnx_pipeline
from slimdiff.sampling.generate import generate
from slimdiff.sampling.onnx_decoder import DECODER_ONNX
from slimdiff.sampling.onnx_export import ONNX_FILE
from slimdiff.sampling.pipeline import load_pipeline
from slimdiff.sampling.quantize import INT8_ONNX, calibration_feeds, quantize_graph, time_graph


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2), over the whole set."""
    mse = float((a.float() - b.float()).square().mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


def _x0(pipe, data: str | None, n: int, seed: int) -> tuple[torch.Tensor, str]:
    """Clean model-space x0 for the ε error: the user's held-out images, encoded, or the pipeline's samples."""
    if data is None:
        return _latents(pipe, n, seed), "samples of the fp32 graphs"
    from slimdiff.data.datasets import held_out_images

    autoencoder = Autoencoder.of(pipe.vae)
    size = sample_hw(pipe.unet.config)[0] * autoencoder.factor
    return autoencoder.encode(held_out_images(data, size, n, seed)), data


@torch.no_grad()
def _latents(pipe, n: int, seed: int, steps: int = 10) -> torch.Tensor:
    noise = torch.randn(
        n,
        pipe.unet.config.in_channels,
        *sample_hw(pipe.unet.config),
        generator=torch.Generator().manual_seed(seed + 10_000),
    )
    return pipe(
        batch_size=n, latents=noise, num_inference_steps=steps, sampler="dpm++", output_type="latent"
    ).images


def int8_cost(
    fp32, int8, x0: torch.Tensor, n: int = 8, steps: int = 10, seed: int = 0, buckets: int = 5
) -> dict:
    """Quality cost of the int8 pipeline `int8` against the fp32 pipeline `fp32` (both onnxruntime)."""
    common = {"buckets": buckets, "batch_size": 8, "seed": seed}
    own = eps_error_spectrum(fp32.unet, x0, fp32.scheduler, **common).summary()
    diff = eps_error_spectrum(int8.unet, x0, fp32.scheduler, teacher=fp32.unet, **common).summary()
    rows = []
    for a, b in zip(own["buckets"], diff["buckets"], strict=True):
        rows.append(
            {
                "t_from": a["t_from"],
                "t_to": a["t_to"],
                "int8_vs_fp32_low": b["low"],
                "int8_vs_fp32_high": b["high"],
                "fp32_own_error_low": a["low"],
                "fp32_own_error_high": a["high"],
            }
        )
    call = {"num_inference_steps": steps, "sampler": "dpm++"}
    a = generate(fp32, n, seed, batch=n, **call)
    b = generate(int8, n, seed, batch=n, **call)
    samples = {"psnr_db": psnr(a, b), "spectrum_error": spectrum_error(a, b)}
    if min(a.shape[-2:]) >= 16:
        samples["swd_x1e3"] = swd(a, b, patches_per_image=64)
    result = {
        "eps_error": {
            "cutoff": own["cutoff"],
            "buckets": rows,
            "int8_vs_fp32": {"low": diff["low"], "high": diff["high"]},
            "fp32_own_error": {"low": own["low"], "high": own["high"]},
        },
        "samples": {"n": n, "steps": steps, "sampler": "dpm++", **samples},
    }
    if fp32.vae is not None and int8.vae is not None:
        latents = _latents(fp32, n, seed)
        result["decoder_psnr_db"] = psnr(fp32.decode(latents), int8.decode(latents))
    return result


def quantize_export(
    folder: str | Path, data: str | None = None, n: int = 8, steps: int = 10, seed: int = 0
) -> dict:
    """Quantise the graphs of the ONNX export `folder` to int8 (calibrated on the model's own sampling
    trajectories), measure the cost and speed-up, and record both in `folder/export.json` under `quantize`."""
    folder = Path(folder)
    record = json.loads((folder / "export.json").read_text())
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
    quantized = {}
    for name, (feeds, graph) in graphs.items():
        fp32_graph, int8_graph = folder / name / graph, folder / name / INT8_ONNX
        quantized[name] = quantize_graph(fp32_graph, int8_graph, feeds)
        fp32_s, int8_s = time_graph(fp32_graph, feeds[0]), time_graph(int8_graph, feeds[0])
        quantized[name].update(fp32_seconds=fp32_s, int8_seconds=int8_s, speedup=fp32_s / int8_s)
    record["quantize"] = {
        "dtype": "int8",
        "calibration": f"{n} fp32 trajectories, dpm++ {steps} steps",
        "graphs": quantized,
    }
    (folder / "export.json").write_text(json.dumps(record, indent=2))
    int8 = load_onnx_pipeline(folder, pipe, threads=1, precision="int8")
    int8.set_progress_bar_config(disable=True)
    x0, source = _x0(fp32, data, n, seed)
    record["quantize"]["cost"] = {"eps_data": source, **int8_cost(fp32, int8, x0, n, steps, seed)}
    (folder / "export.json").write_text(json.dumps(record, indent=2))
    return record
