"""What a training run shows and leaves behind: its log, sample grids from the EMA weights and the final
model folder."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
from diffusers import DDPMScheduler
from torch import nn

from slimdiff.errors import WRITE_ERRORS, TrainingError, write_failure
from slimdiff.reporting.images import save_grid
from slimdiff.sampling.generate import generate
from slimdiff.sampling.pipeline import SlimDiffusionPipeline
from slimdiff.sampling.solvers import sampling_scheduler
from slimdiff.training.objectives import Objective


class RunLog:
    """`logs/run.log` of a run folder (main process only). Lines are held back until `start()`, so nothing in
    the folder changes before a resume has been validated; `echo` prints each line too."""

    def __init__(self, path: Path, enabled: bool, echo=None):
        self.path, self.enabled, self.echo = path, enabled, echo
        self.pending: list[str] | None = []

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
        if self.echo is not None:
            self.echo(message)
        if not self.enabled:
            return
        if self.pending is not None:
            self.pending.append(line)
            return
        with self.path.open("a") as f:
            f.write(line)

    def start(self) -> None:
        """Write the held-back lines; from now on every line goes straight to the file."""
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.writelines(self.pending or [])
        self.pending = None


class ScalarWindow:
    """Training scalars averaged over the steps since the last flush, then logged as `train/<name>`. Values
    may be tensors on the device: they are read back only here, when logged, not at every step."""

    def __init__(self, accelerator):
        self.accelerator, self.values = accelerator, {}

    def add(self, values: dict[str, float | torch.Tensor]) -> None:
        for k, v in values.items():
            self.values.setdefault(k, []).append(v)

    def flush(self, step: int, current: dict[str, float]) -> None:
        means = {k: sum(map(float, v)) / len(v) for k, v in self.values.items()}
        self.accelerator.log({f"train/{k}": v for k, v in (means | current).items()}, step=step)
        self.values.clear()


def ema_unet(unet: nn.Module, ema) -> nn.Module:
    """A copy of the bare UNet (no hooks) holding the EMA weights."""
    copy = type(unet).from_config(unet.config).to(next(unet.parameters()).device)
    ema.copy_to(copy.parameters())
    return copy.eval()


def _pipeline(
    unet: nn.Module,
    vae: nn.Module | None,
    scheduler: DDPMScheduler,
    objective: Objective | None = None,
    **components,
) -> SlimDiffusionPipeline:
    """The pipeline of a trained UNet, sampling as its `objective` says (a step-distilled student: its
    scheduler and step count); `components`: a text model's tokenizer and text encoder, class names."""
    sampler = sampling_scheduler(scheduler, pixel_space=vae is None)
    sampler, steps = (sampler, None) if objective is None else objective.sampling(sampler)
    pipe = SlimDiffusionPipeline(unet=unet, scheduler=sampler, vae=vae, default_steps=steps, **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_samples(
    unet: nn.Module,
    ema,
    vae: nn.Module | None,
    scheduler: DDPMScheduler,
    path: Path,
    *,
    count: int,
    steps: int,
    seed: int,
    objective: Objective | None = None,
) -> None:
    """A grid of `count` samples from the EMA weights, from fixed noise drawn from `seed` (comparable over
    time): DDIM with `steps` steps, or as the `objective` says the model samples (a step-distilled student)."""
    pipe = _pipeline(ema_unet(unet, ema), vae, scheduler, objective)
    own_steps = pipe.config.default_steps
    call = {"num_inference_steps": steps, "sampler": "ddim"} if own_steps is None else {}
    images = generate(pipe, count, seed=seed, batch=count, **call)
    save_grid(images, path, padding=0)


def export_model(
    unet: nn.Module,
    ema,
    vae: nn.Module | None,
    folder: Path,
    scheduler: DDPMScheduler,
    conditioner=None,
    class_names=None,
    objective: Objective | None = None,
) -> None:
    """`folder` = a SlimDiffusionPipeline: unet/ (EMA weights), scheduler/ (training schedule, or the
    `objective`'s sampling scheduler), vae/ if any; a text model's tokenizer/ and text_encoder/ as components, a
    class model's class names in model_index.json."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    encoder = getattr(conditioner, "text_encoder", None)
    text = {} if encoder is None else {"tokenizer": encoder.tokenizer, "text_encoder": encoder.model}
    try:
        pipe = _pipeline(ema_unet(unet, ema), vae, scheduler, objective, class_names=class_names, **text)
        pipe.save_pretrained(str(tmp), safe_serialization=True)
    except WRITE_ERRORS as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TrainingError(
            f"could not write the model to {folder}: {write_failure(error)}; the last checkpoint is intact — "
            "free space and run again with --resume latest to write it"
        ) from None
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
