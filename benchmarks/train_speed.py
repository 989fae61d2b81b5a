"""Images/s of one training step for the tiny presets (teacher vs Lite vs slim), and of the data pipeline alone.

    python -m benchmarks.train_speed [--batch 32] [--repeats 5]

Target (issue 3): the loader delivers at least 5× the images/s that the slim preset's training step consumes,
so the loop never waits on data. A step is what the loop does per batch: noise, forward, ε-loss, backward,
gradient clipping, AdamW, EMA. The loaders are the loop's own (StepSampler batches, num_workers 0) on the
built-in textures and on a folder of 256×256 PNGs resized to 32. Everything runs interleaved in one process;
medians are reported.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from benchmarks.machine import describe_machine, interleaved_medians, write_result
from slimdiff.data.datasets import make_dataset
from slimdiff.data.order import StepSampler
from slimdiff.diffusion import micro_step_noise
from slimdiff.models.presets import get_preset
from slimdiff.training.objectives import EpsilonObjective
from slimdiff.training.run import make_ema

PRESETS = ("tiny-teacher", "tiny-lite", "tiny-sd")


def step_fn(preset: str, batch: int, images: torch.Tensor) -> Callable[[], None]:
    """One training step of `preset` as the loop runs it, on a fixed batch."""
    torch.manual_seed(0)
    unet = get_preset(preset).build().train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    ema = make_ema(unet, 0.999)
    objective = EpsilonObjective()
    ᾱ = torch.linspace(0.99, 0.01, 1000)
    counter = iter(range(10**9))

    def step() -> None:
        t, noise = micro_step_noise(tuple(images.shape), 0, next(counter), 0, 1000)
        a = ᾱ[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * images + (1 - a).sqrt() * noise
        loss, _ = objective(unet, images, x_t, t, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())

    return step


def loader_fn(source: str, batch: int, batches: int) -> Callable[[], None]:
    """`batches` batches from the loop's loader over `source` at 32×32."""
    dataset = make_dataset(source, 32)
    sampler = StepSampler(len(dataset), batch, seed=0, process=0, processes=1)
    stream = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=0))

    def load() -> None:
        for _ in range(batches):
            next(stream)

    return load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batch = args.batch
    data_batches = 8

    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        for i in range(64):
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
                Path(folder) / f"{i:03d}.png"
            )
        images = torch.rand(batch, 3, 32, 32) * 2 - 1
        variants: dict[str, tuple[Callable[[], None], int]] = {
            f"train step {p}": (step_fn(p, batch, images), batch) for p in PRESETS
        }
        variants["loader builtin:textures"] = (
            loader_fn("builtin:textures", batch, data_batches),
            batch * data_batches,
        )
        variants["loader folder of 256² PNGs"] = (
            loader_fn(folder, batch, data_batches),
            batch * data_batches,
        )
        seconds = interleaved_medians({name: fn for name, (fn, _) in variants.items()}, args.repeats)

    rate = {name: variants[name][1] / seconds[name] for name in variants}
    slim = rate["train step tiny-sd"]
    lines = [
        f"batch {batch}, 32×32 pixel space, median of {args.repeats} interleaved repeats "
        f"(loaders: {data_batches} batches per repeat, num_workers 0)",
        "",
        "| what | images/s | × tiny-sd step |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {value:.1f} | {value / slim:.2f} |" for name, value in rate.items()]
    worst = min(rate["loader builtin:textures"], rate["loader folder of 256² PNGs"]) / slim
    lines += [
        "",
        f"slowest loader / tiny-sd training step = **{worst:.1f}×** (target ≥ 5×: {'met' if worst >= 5 else 'missed'})",
        f"tiny-sd step / tiny-teacher step speed: {slim / rate['train step tiny-teacher']:.2f}×; "
        f"tiny-lite: {rate['train step tiny-lite'] / rate['train step tiny-teacher']:.2f}×",
    ]
    print("\n".join(lines))
    write_result("train_speed", "\n".join(lines), describe_machine())


if __name__ == "__main__":
    main()
