"""The few-step path (issue 25): an sd-f4 student sampled with N ∈ {1, 2, 4} UNet calls, end to end through the
pipeline on onnxruntime (fp32 and int8 UNet, slim decoder), beside LDM-f4 DDIM-200 (PyTorch fp32, the full
VQ-f4 decoder) in the same run; batch 1, wall clock, median of interleaved rounds; the peak RSS of a fresh
process per configuration. Weights are random (a dense network's speed does not depend on them); the step
count, not the weights, is what a step-distilled student changes, so its export times the same. The sampler
is a parameter (`--sampler`): a preset of `slimdiff.sampling.solvers.SAMPLERS` or `lcm`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.latency.parts import LATENT, MODELS, build
from benchmarks.machine import child_result, print_peak
from slimdiff.diffusion import training_scheduler

GOAL_SECONDS, GOAL_SPEEDUP, GOAL_RSS_MIB = 1.0, 500.0, 1024.0
LDM = (("LDM-f4", "torch", "fp32"), ("full VQ-f4", "torch", "fp32"), "ddim", 200)
LDM_COMPOSED = "LDM-f4|torch|fp32|full VQ-f4|ddim (200 × one timed step + one timed decode)|200"
LDM_WHOLE = "LDM-f4|torch|fp32|full VQ-f4|ddim (whole pipeline call)|200"


def pipeline(parts, unet_key, decoder_key, sampler: str):
    """A pipeline over the given parts, and the `sampler=` its call takes (None: the scheduler set here)."""
    from slimdiff.sampling.pipeline import SlimDiffusionPipeline

    scheduler = training_scheduler()
    if sampler == "lcm":  # a step-distilled student's own scheduler, set on the pipeline as is
        from diffusers import LCMScheduler

        scheduler, sampler = LCMScheduler.from_config(scheduler.config), None
    pipe = SlimDiffusionPipeline(unet=parts[unet_key], scheduler=scheduler, vae=parts[decoder_key])
    pipe.set_progress_bar_config(disable=True)
    return pipe, sampler


def image_call(parts, unet_key, decoder_key, sampler: str, steps: int):
    """One image (batch 1) through the whole pipeline: `steps` UNet calls and the decode."""
    pipe, sampler = pipeline(parts, unet_key, decoder_key, sampler)
    noise = torch.randn(1, *LATENT, generator=torch.Generator().manual_seed(0))

    def call():
        with torch.no_grad():
            latents = pipe(
                batch_size=1, latents=noise, num_inference_steps=steps, sampler=sampler, output_type="latent"
            ).images
            return pipe.decode(latents)

    return call


def configurations(sampler: str, steps: list[int]) -> dict[str, tuple]:
    """name → (UNet key, decoder key, sampler, steps) of every few-step row."""
    rows = {}
    for precision in ("fp32", "int8"):
        for n in steps:
            unet, decoder = ("SD-f4", "ort", precision), ("slim", "ort", precision)
            rows[f"SD-f4|ort|{precision}|slim|{sampler}|{n}"] = (unet, decoder, sampler, n)
    return rows


def time_rows(parts, rows: dict, rounds: int, ldm_rounds: int) -> dict[str, list[float]]:
    """Seconds of every call of every row, in interleaved rounds after one warm-up call each. LDM DDIM-200
    (minutes per image) is composed in every round from one LDM UNet step and one full VQ-f4 decode timed in
    that round (`LDM_COMPOSED`: 200 × step + decode), and drawn whole through the pipeline in the first
    `ldm_rounds` rounds only (`LDM_WHOLE`, no warm-up call)."""
    from benchmarks.latency.parts import decoder_call, unet_call

    calls = {name: image_call(parts, *row) for name, row in rows.items()}
    unet_key, decoder_key, _, ldm_steps = LDM
    step, decode = unet_call(parts[unet_key], 1), decoder_call(parts[decoder_key], 1)
    with torch.no_grad():
        for call in [*calls.values(), step, decode]:
            call()
    ldm = image_call(parts, *LDM)
    times: dict[str, list[float]] = {name: [] for name in [*calls, LDM_COMPOSED, LDM_WHOLE]}
    for r in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
        with torch.no_grad():
            start = time.perf_counter()
            step()
            middle = time.perf_counter()
            decode()
        times[LDM_COMPOSED].append(ldm_steps * (middle - start) + time.perf_counter() - middle)
        if r < ldm_rounds:
            start = time.perf_counter()
            ldm()
            times[LDM_WHOLE].append(time.perf_counter() - start)
        print(f"round {r}:", {k: round(v[-1], 3) for k, v in times.items() if v}, os.getloadavg(), flush=True)
    return {name: values for name, values in times.items() if values}


def rss_of(name: str, row: tuple, work: Path, threads: int) -> dict:
    """Peak RSS (MiB) and seconds of a fresh process that loads only this row's graphs and draws one image."""
    return child_result(
        ["benchmarks.latency.few_step", json.dumps([name, row]), str(work), str(threads)], threads
    )


def _child(spec: str, work: Path, threads: int) -> None:
    name, (unet_key, decoder_key, sampler, steps) = json.loads(spec)
    torch.set_num_threads(threads)
    parts = build(
        work, {unet_key[0]: MODELS[unet_key[0]]}, threads, only=[tuple(unet_key), tuple(decoder_key)]
    )
    call = image_call(parts, tuple(unet_key), tuple(decoder_key), sampler, steps)
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    print_peak(seconds)


def report(times: dict, rss: dict, threads: int, rounds: int, loads: list[list[float]]) -> str:
    """The page; `loads`: the load averages (1, 5, 15 min) before timing, after it and after the RSS children."""
    reference = LDM_WHOLE if LDM_WHOLE in times else LDM_COMPOSED
    ldm = statistics.median(times[reference])
    whole = (
        f"drawn whole through the pipeline {len(times[LDM_WHOLE])} time(s) in the first round(s), without a "
        "warm-up call; "
        if LDM_WHOLE in times
        else "not drawn whole (200 steps take minutes here); "
    )
    # the benchmark's own threads raise the load to about `threads`; more than one beyond that is other work
    loaded = max(load[0] for load in loads) > threads + 1
    lines = [
        (
            "**The machine was loaded** while this ran: other work shared its cores; "
            if loaded
            else "**The machine was otherwise idle** while this ran (nothing but this benchmark); "
        )
        + f"load average (1 / 5 / 15 min) before timing, after timing and after the RSS children: "
        f"{'; '.join(' / '.join(f'{x:.2f}' for x in load) for load in loads)}."
        + (
            " Wall-clock seconds are therefore inflated by contention (several-fold at a load of ~10 on 2 "
            "cores); every row met the same load, interleaved, so the ratios hold better than the seconds.\n"
            if loaded
            else "\n"
        ),
        f"Batch 1, 256×256 images (64×64×3 latents), wall clock, {threads} thread(s) for torch and onnxruntime, "
        f"median of {rounds} interleaved rounds after one warm-up call. Few-step rows: one whole pipeline "
        "call each (N UNet calls + the slim decoder), onnxruntime, random weights. LDM-f4 DDIM-200 (PyTorch "
        f"fp32, full VQ-f4 decoder), in the same rounds: {whole}composed in each round from one timed LDM UNet "
        f"step × 200 + one timed full decode. Reference of the × column: **{ldm:.1f} s** per image "
        f"({reference.split('|')[4]}). Peak RSS: a fresh process that loads only that row's graphs and "
        "draws one image (VmHWM).\n",
        "| model | runtime | sampler | UNet calls | decoder | s / image (median) | min – max | × faster than "
        "LDM DDIM-200 | ≤ 1 s | ≥ 500× | peak RSS MiB | ≤ 1 GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, values in times.items():
        model, runtime, precision, decoder, sampler, steps = name.split("|")
        s = statistics.median(values)
        r = rss.get(name, {})
        mib = f"{r['rss_mib']:.0f}" if "rss_mib" in r else "—"
        rss_ok = "—" if "rss_mib" not in r else ("yes" if r["rss_mib"] <= GOAL_RSS_MIB else "no")
        is_ldm = model == "LDM-f4"
        fast = "—" if is_ldm else ("yes" if s <= GOAL_SECONDS else "no")
        speedup = "—" if is_ldm else ("yes" if ldm / s >= GOAL_SPEEDUP else "no")
        lines.append(
            f"| {model} | {runtime} {precision} | {sampler} | {steps} | {decoder} | {s:.3f} | "
            f"{min(values):.3f} – {max(values):.3f} | {ldm / s:.0f}× | {fast} | {speedup} | {mib} | {rss_ok} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the RSS child: python -m benchmarks.latency.few_step ROW_JSON WORK THREADS
    _child(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
