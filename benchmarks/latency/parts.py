"""The timed parts of the whole path: every UNet and decoder in PyTorch, onnxruntime fp32 and int8 (random
weights; graphs cached in the work folder), the solvers' own per-step overhead, whole pipeline calls, and the
peak memory of a child process drawing one image."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import print_peak
from slimdiff.deploy.onnx_decoder import OnnxDecoder, export_decoder
from slimdiff.deploy.onnx_unet import OnnxUNet, export_onnx, graph_inputs
from slimdiff.deploy.quantize import quantize_graph
from slimdiff.diffusion import training_scheduler
from slimdiff.models.presets import get_preset
from slimdiff.models.slim_decoder import SlimDecoder
from slimdiff.sampling.solvers import SAMPLERS, build_scheduler

MODELS = {"LDM-f4": "ldm-f4", "Lite-f4": "lite-ldm-f4", "SD-f4": "sd-f4"}
HEAVY = ("LDM-f4", "full VQ-f4")
RUNTIMES = [("torch", "fp32"), ("ort", "fp32"), ("ort", "int8")]
LATENT = (3, 64, 64)


def vq_f4():
    """The CompVis VQ-f4 autoencoder (ch 128, mult 1-2-4, 2 res-blocks, 8192 codes of 3 dims) as a diffusers
    VQModel, random weights."""
    from diffusers import VQModel

    torch.manual_seed(0)
    return VQModel(
        block_out_channels=(128, 256, 512),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=2,
        latent_channels=3,
        num_vq_embeddings=8192,
        vq_embed_dim=3,
        scaling_factor=1.0,
    ).eval()


def build(work: Path, models: dict, threads: int = 1, only: list[tuple] | None = None) -> dict:
    """PyTorch modules and ONNX / int8 graphs of every UNet and decoder (graphs cached in `work`), onnxruntime
    sessions with `threads` threads; `only`: just these (name, runtime, precision) keys (others are not built,
    so a process holds only what it runs)."""
    torch.manual_seed(0)
    parts = {}
    wanted = (lambda key: True) if only is None else (lambda key: key in only)
    for label, preset in models.items():
        fp32, int8 = work / f"{preset}.onnx", work / f"{preset}.int8.onnx"
        # weights only where they are used: a torch module, or a graph still to export
        weights = (
            wanted((label, "torch", "fp32")) or label != "LDM-f4" and not (fp32.exists() and int8.exists())
        )
        with contextlib.nullcontext() if weights else torch.device("meta"):
            unet = get_preset(preset).build().eval()
        if wanted((label, "torch", "fp32")):
            parts[(label, "torch", "fp32")] = unet
        if label == "LDM-f4":
            continue  # the paper's setting: PyTorch fp32 only
        if not fp32.exists():
            export_onnx(unet, fp32)
        if not int8.exists():
            feeds = [{k: v.numpy() for k, v in graph_inputs(unet.config, 1, s).items()} for s in range(4)]
            print(label, quantize_graph(fp32, int8, feeds), flush=True)
        for precision, graph in (("fp32", fp32), ("int8", int8)):
            if wanted((label, "ort", precision)):
                parts[(label, "ort", precision)] = OnnxUNet(graph, unet.config, threads=threads)
        del unet
    for label, make in (("full VQ-f4", vq_f4), ("slim", lambda: SlimDecoder(latent_channels=3, factor=4))):
        keys = [(label, runtime, precision) for runtime, precision in RUNTIMES]
        if not any(wanted(k) for k in keys):
            continue
        decoder = make()
        if wanted((label, "torch", "fp32")):
            parts[(label, "torch", "fp32")] = decoder
        name = label.split()[0]
        fp32, int8 = work / f"decoder-{name}.onnx", work / f"decoder-{name}.int8.onnx"
        for precision, graph in (("fp32", fp32), ("int8", int8)):
            if not wanted((label, "ort", precision)):
                continue
            if not fp32.exists():
                export_decoder(decoder, fp32, LATENT[1:])
            if precision == "int8" and not int8.exists():
                feeds = [
                    {"latents": np.random.default_rng(s).standard_normal((1, *LATENT), np.float32)}
                    for s in range(4)
                ]
                print(label, quantize_graph(fp32, int8, feeds), flush=True)
            parts[(label, "ort", precision)] = OnnxDecoder(graph, decoder.config, threads=threads)
    return parts


def unet_call(unet, batch: int):
    x, t = torch.randn(batch, *LATENT), torch.full((batch,), 500.0)
    if isinstance(unet, OnnxUNet):
        return lambda: unet(x, t)
    return lambda: unet(x, t.long()).sample


def decoder_call(decoder, batch: int):
    z = torch.randn(batch, *LATENT)
    return lambda: decoder.decode(z).sample


def solver_overhead(
    sampler: str, steps: int, batch: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds per step a solver adds to the UNet: a whole sampling loop with a free model (ε̂ = 0.1·x)."""
    scheduler = build_scheduler(SAMPLERS[sampler], dict(training_scheduler().config))
    x0 = torch.randn(batch, *LATENT)
    best = float("inf")
    for _ in range(3):
        scheduler.set_timesteps(steps)
        x = x0.clone()
        start = clock()
        for t in scheduler.timesteps:
            x = scheduler.step(0.1 * x, t, x).prev_sample
        best = min(best, (clock() - start) / steps)
    return best


def end_to_end(
    parts,
    unet_key,
    decoder_key,
    sampler: str,
    steps: int,
    batch: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per image of one real pipeline call (UNet steps + decode) for the given parts."""
    from slimdiff.sampling.pipeline import SlimDiffusionPipeline

    pipe = SlimDiffusionPipeline(unet=parts[unet_key], scheduler=training_scheduler(), vae=parts[decoder_key])
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(batch, *LATENT)
    start = clock()
    with torch.no_grad():
        latents = pipe(
            batch_size=batch, latents=noise, num_inference_steps=steps, sampler=sampler, output_type="latent"
        ).images
        pipe.decode(latents)
    return (clock() - start) / batch


def rss_child(config: str, work: Path) -> None:
    """In a child process: draw one image with `config` ("model|runtime|precision|decoder|runtime|precision|steps")
    and print the peak RSS in MiB."""
    model, runtime, precision, decoder, dec_runtime, dec_precision, steps = config.split("|")
    parts = build(work, {model: MODELS[model]})
    seconds = end_to_end(
        parts, (model, runtime, precision), (decoder, dec_runtime, dec_precision), "dpm++", int(steps), 1
    )
    print_peak(seconds)
