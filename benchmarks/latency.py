"""Seconds per 256×256 image on the whole path — UNet steps plus decoder — for LDM-f4 DDIM-200 (the paper's
setting), Lite-f4 and SD-f4 with DPM-Solver++ / UniPC at 20 and 10 steps, in PyTorch and onnxruntime, fp32 and
int8, with the full VQ-f4 decoder and with the slim decoder; batch 1 and 8; peak memory (RSS).

    python -m benchmarks.latency [--rounds 3] [--threads 1] [--batches 1 8] [--work DIR]

Goal (issue 14): ≤ 1 s per image and ≥ 200× faster than LDM DDIM-200, measured in the same run.

How: the parts are timed side by side in one process, in interleaved rounds (medians), one thread for torch and
onnxruntime alike: one UNet step of each model / runtime / precision, one decode of each decoder, and each
solver's own per-step overhead (its update with a free model). A path's time is steps × (UNet step + solver
overhead) + decode, divided by the batch; a few whole paths are also run end to end through the pipeline to
check that sum. Weights are random (the speed of a dense network does not depend on them; the int8 graphs are
calibrated on random inputs, so their *quality* here means nothing — `benchmarks/deploy_quality.py` measures
it on trained models). Peak RSS comes from one child process per configuration drawing one image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import RESULTS, describe_machine, interleaved_medians, write_result
from slimdiff.deploy.onnx_decoder import OnnxDecoder, export_decoder
from slimdiff.deploy.onnx_unet import OnnxUNet, export_onnx, graph_inputs
from slimdiff.deploy.quantize import quantize_graph
from slimdiff.diffusion import training_scheduler
from slimdiff.models.presets import get_preset
from slimdiff.models.slim_decoder import SlimDecoder
from slimdiff.sampling.solvers import SAMPLERS, build_scheduler

MODELS = {"LDM-f4": "ldm-f4", "Lite-f4": "lite-ldm-f4", "SD-f4": "sd-f4"}
HEAVY = ("LDM-f4", "full VQ-f4")
LATENT = (3, 64, 64)


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def interleaved_cpu(variants: dict, repeats: int) -> dict[str, float]:
    """`interleaved_medians` on the process's CPU time: with one thread, what a call costs on an idle core,
    whatever else the shared machine runs (memory-bandwidth and cache contention still count)."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


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


def build(work: Path, models: dict) -> dict:
    """PyTorch modules and ONNX / int8 graphs of every UNet and decoder (graphs cached in `work`)."""
    torch.manual_seed(0)
    parts = {}
    for label, preset in models.items():
        unet = get_preset(preset).build().eval()
        parts[(label, "torch", "fp32")] = unet
        if label == "LDM-f4":
            continue  # the paper's setting: PyTorch fp32 only
        fp32, int8 = work / f"{preset}.onnx", work / f"{preset}.int8.onnx"
        if not fp32.exists():
            export_onnx(unet, fp32)
        if not int8.exists():
            feeds = [{k: v.numpy() for k, v in graph_inputs(unet.config, 1, s).items()} for s in range(4)]
            print(label, quantize_graph(fp32, int8, feeds), flush=True)
        parts[(label, "ort", "fp32")] = OnnxUNet(fp32, unet.config, threads=1)
        parts[(label, "ort", "int8")] = OnnxUNet(int8, unet.config, threads=1)
    for label, decoder in (("full VQ-f4", vq_f4()), ("slim", SlimDecoder(latent_channels=3, factor=4))):
        parts[(label, "torch", "fp32")] = decoder
        name = label.split()[0]
        fp32, int8 = work / f"decoder-{name}.onnx", work / f"decoder-{name}.int8.onnx"
        if not fp32.exists():
            export_decoder(decoder, fp32, LATENT[1:])
        if not int8.exists():
            feeds = [
                {"latents": np.random.default_rng(s).standard_normal((1, *LATENT), np.float32)}
                for s in range(4)
            ]
            print(label, quantize_graph(fp32, int8, feeds), flush=True)
        parts[(label, "ort", "fp32")] = OnnxDecoder(fp32, decoder.config, threads=1)
        parts[(label, "ort", "int8")] = OnnxDecoder(int8, decoder.config, threads=1)
    return parts


def unet_call(unet, batch: int):
    x, t = torch.randn(batch, *LATENT), torch.full((batch,), 500.0)
    if isinstance(unet, OnnxUNet):
        return lambda: unet(x, t)
    return lambda: unet(x, t.long()).sample


def decoder_call(decoder, batch: int):
    z = torch.randn(batch, *LATENT)
    return lambda: decoder.decode(z).sample


def solver_overhead(sampler: str, steps: int, batch: int) -> float:
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


def end_to_end(parts, unet_key, decoder_key, sampler: str, steps: int, batch: int) -> float:
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
    hwm = next(
        line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM")
    )
    print(json.dumps({"rss_mib": int(hwm.split()[1]) / 1024, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--work", type=Path, default=Path("outputs/latency"))
    parser.add_argument(
        "--heavy-max-batch", type=int, default=8, help="time LDM and the full decoder only up to this batch"
    )
    parser.add_argument("--clock", choices=CLOCK, default="wall", help="wall time, or the process's CPU time")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.rss_child:
        rss_child(args.rss_child, args.work)
        return
    from benchmarks.latency_report import report

    global clock
    clock = CLOCK[args.clock]
    timer = interleaved_medians if args.clock == "wall" else interleaved_cpu
    result_name = "latency" if args.clock == "wall" else "latency_cpu"

    parts = build(args.work, MODELS)
    timings: dict = {"unet": {}, "decoder": {}, "solver": {}, "end_to_end": {}, "rss": {}}
    with torch.no_grad():
        for batch in args.batches:
            heavy = batch <= args.heavy_max_batch  # LDM and the full decoder: minutes per call at batch 8
            keys = [k for k in parts if heavy or k[0] not in HEAVY]
            unets = {"|".join(k): unet_call(parts[k], batch) for k in keys if k[0] in MODELS}
            decoders = {"|".join(k): decoder_call(parts[k], batch) for k in keys if k[0] not in MODELS}
            rounds = args.rounds if batch == 1 else max(1, args.rounds - 1)
            print(f"batch {batch}: timing {len(unets)} UNets and {len(decoders)} decoders", flush=True)
            timings["unet"][batch] = timer(unets, rounds)
            timings["decoder"][batch] = timer(decoders, rounds)
            if not heavy:  # per image as at batch 1, times the batch (marked in the report)
                for part in ("unet", "decoder"):
                    for key, value in timings[part][args.batches[0]].items():
                        if key.split("|")[0] in HEAVY:
                            timings[part][batch][key] = value * batch
                timings.setdefault("from_batch_1", []).append(batch)
            timings["solver"][batch] = {s: solver_overhead(s, 10, batch) for s in ("ddim", "dpm++", "unipc")}
            print(json.dumps({k: timings[k][batch] for k in ("unet", "decoder")}, indent=1), flush=True)
        checks = [
            (("SD-f4", "ort", "fp32"), ("slim", "ort", "fp32"), "dpm++", 10),
            (("SD-f4", "ort", "int8"), ("slim", "ort", "int8"), "unipc", 10),
            (("SD-f4", "torch", "fp32"), ("full VQ-f4", "torch", "fp32"), "dpm++", 20),
        ]
        for unet_key, decoder_key, sampler, steps in checks:
            name = f"{'|'.join(unet_key)} + {'|'.join(decoder_key)} {sampler}-{steps}"
            timings["end_to_end"][name] = end_to_end(parts, unet_key, decoder_key, sampler, steps, 1)
            print(name, timings["end_to_end"][name], flush=True)
    del parts
    for config in (
        ()
        if args.clock == "cpu"
        else (
            "SD-f4|ort|fp32|slim|ort|fp32|10",
            "SD-f4|torch|fp32|full VQ-f4|torch|fp32|20",
            "LDM-f4|torch|fp32|full VQ-f4|torch|fp32|2",
        )
    ):
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.latency",
                "--rss-child",
                config,
                "--work",
                str(args.work),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        timings["rss"][config] = json.loads(lines[-1]) if lines else {"error": child.stderr[-300:]}
        print(config, timings["rss"][config], flush=True)
    machine = describe_machine()
    timings["clock"] = args.clock
    (RESULTS / f"{result_name}.json").write_text(
        json.dumps({"machine": machine, "threads": args.threads, **timings}, indent=2, default=str)
    )
    print(write_result(result_name, report(timings, args.threads), machine))


if __name__ == "__main__":
    main()
