"""The paper's Figure 6 on the GPU: UNet steps per second of LDM-f4, Lite-f4 and SD-f4 (64×64×3 latents) at
batch 1–64 in fp16 and bf16, side by side in one process (no other GPU work runs meanwhile). Timed with
CUDA events after warm-up; the median of `repeats` timings of `iterations` steps each."""

from __future__ import annotations

import functools
import statistics
import time

import torch

from slimdiff.models.presets import get_preset

MODELS = ("ldm-f4", "lite-ldm-f4", "sd-f4")
BATCHES = (1, 8, 16, 32, 64)
DTYPES = ("float16", "bfloat16")


def _elapsed(fn, iterations: int, dev: torch.device) -> float:
    if dev.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iterations):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000
    begin = time.perf_counter()
    for _ in range(iterations):
        fn()
    return time.perf_counter() - begin


@torch.no_grad()
def steps_per_second(
    name: str, dtype: str, batches, dev: torch.device, iterations: int = 10, repeats: int = 3
) -> dict[int, float]:
    """{batch: UNet steps/s} of preset `name` in `dtype`, built once."""
    preset = get_preset(name)
    model = preset.build().to(dev, getattr(torch, dtype)).eval()
    speeds = {}
    for batch in batches:
        inputs = {
            k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v
            for k, v in preset.example_inputs(batch, device=dev).items()
        }
        step = functools.partial(model, **inputs)
        _elapsed(step, 3, dev)  # warm-up: kernels chosen, memory allocated
        speeds[batch] = statistics.median(
            iterations / _elapsed(step, iterations, dev) for _ in range(repeats)
        )
    return speeds


def figure6(
    dev: torch.device, models=MODELS, batches=BATCHES, dtypes=DTYPES, iterations: int = 10, log=print
) -> list[dict]:
    """One row per (model, dtype, batch): UNet steps/s and images/s; and each model's ratio to the first."""
    rows = []
    for dtype in dtypes:
        by_model = {name: steps_per_second(name, dtype, batches, dev, iterations) for name in models}
        for batch in batches:
            speeds = {name: by_model[name][batch] for name in models}
            for name, speed in speeds.items():
                rows.append(
                    {
                        "model": name,
                        "dtype": dtype,
                        "batch": batch,
                        "steps_per_s": speed,
                        "images_per_s": speed * batch,
                        f"vs_{models[0]}": speed / speeds[models[0]],
                    }
                )
            log(f"figure 6: {dtype} batch {batch}: " + ", ".join(f"{n} {v:.1f}/s" for n, v in speeds.items()))
    return rows
