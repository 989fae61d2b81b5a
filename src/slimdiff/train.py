"""The one training loop (DESIGN §4): teacher training, the Lite baseline and distillation.

x0 (image or latent) → x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε → objective(unet, x0, x_t, t, ε) → AdamW, EMA. What is
minimised is the objective: ε-prediction by default, a teacher plus extra loss terms for distillation —
`train(config, make_objective=...)`, not a second loop.

Runs under accelerate (one CPU/GPU with `slimdiff train`, many GPUs / nodes with `accelerate launch`).
The data order and the noise of every micro-batch are functions of (seed, micro-step, process), so a run
resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from slimdiff.autoencoders import Autoencoder, load_autoencoder
from slimdiff.checkpoint import (
    list_checkpoints,
    pending_checkpoint,
    publish_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    set_rng_state,
    start_checkpoint,
    write_checkpoint,
    write_rng,
)
from slimdiff.config import Config
from slimdiff.data import make_dataset
from slimdiff.models.presets import get_preset
from slimdiff.noise import training_scheduler
from slimdiff.objective import EpsilonObjective, Objective, load_trainable_state, trainable_state

__all__ = ["EpsilonObjective", "Objective", "TrainingError", "build_unet", "train"]


class TrainingError(RuntimeError):
    """A run that cannot start or continue, with a one-line reason (what is wrong, what to do)."""


# --- data order and noise ------------------------------------------------------------------------------


class StepSampler(Sampler[list[int]]):
    """Index batches for one process: an endless stream of seeded permutations of the data set, cut into
    global micro-batches of `batch_size × processes` of which this process takes its slice. Starts at
    micro-step `start`, so resuming continues the stream where it stopped."""

    def __init__(
        self, length: int, batch_size: int, *, seed: int, process: int, processes: int, start: int = 0
    ):
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.process, self.processes, self.start = process, processes, start

    def _permutation(self, epoch: int) -> torch.Tensor:
        return torch.randperm(
            self.length, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        )

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        epoch, permutation = -1, None
        while True:
            first = (step * self.processes + self.process) * self.batch_size
            batch = []
            for position in range(first, first + self.batch_size):
                if position // self.length != epoch:
                    epoch = position // self.length
                    permutation = self._permutation(epoch)
                batch.append(int(permutation[position % self.length]))
            yield batch
            step += 1


def micro_step_noise(
    shape: tuple[int, ...], seed: int, micro_step: int, process: int, timesteps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, ε) for one micro-batch, drawn from a generator seeded by (seed, micro-step, process)."""
    key = int(np.random.SeedSequence([seed, micro_step, process]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(key)
    t = torch.randint(0, timesteps, (shape[0],), generator=generator)
    return t, torch.randn(shape, generator=generator)


# --- building the pieces ----------------------------------------------------------------------------------


def build_unet(config: Config, autoencoder: Autoencoder) -> nn.Module:
    """The preset's UNet with `model_overrides`, sized for the latents this autoencoder produces."""
    size = config.data.size
    if size % autoencoder.factor:
        raise TrainingError(
            f"data.size {size} is not a multiple of the autoencoder's factor {autoencoder.factor}"
        )
    overrides = {"sample_size": size // autoencoder.factor, **config.model_overrides}
    try:
        unet = get_preset(config.model).build(**overrides)
    except (TypeError, ValueError) as error:
        raise TrainingError(f"model_overrides do not fit preset {config.model}: {error}") from None
    cfg = unet.config
    if cfg.sample_size != size // autoencoder.factor:
        raise TrainingError(
            f"model_overrides.sample_size {cfg.sample_size} ≠ latent size {size // autoencoder.factor} "
            f"(data.size {size} / factor {autoencoder.factor}); drop the override"
        )
    if cfg.in_channels != autoencoder.latent_channels or cfg.out_channels != autoencoder.latent_channels:
        c = autoencoder.latent_channels
        raise TrainingError(
            f"model {config.model} maps {cfg.in_channels}→{cfg.out_channels} channels but the autoencoder gives "
            f"{c}; set model_overrides: {{in_channels: {c}, out_channels: {c}}}"
        )
    levels = 2 ** (len(cfg.block_out_channels) - 1)
    if cfg.sample_size % levels:
        raise TrainingError(
            f"latent size {cfg.sample_size} must be a multiple of {levels} for {config.model}"
        )
    return unet


def _autoencoder(config: Config) -> Autoencoder:
    ae = config.autoencoder
    try:
        return load_autoencoder(ae.kind, ae.source, ae.scaling_factor)
    except ValueError as error:
        raise TrainingError(str(error)) from None


def _training_data(config: Config, autoencoder: Autoencoder, accelerator, log) -> tuple[Dataset, bool]:
    """(dataset, whether it yields latents already) — images, or latents from the on-disk cache."""
    d = config.data
    images = make_dataset(
        d.source, d.size, seed=d.seed, strict=d.strict, image_column=d.image_column, length=d.length
    )
    skipped = getattr(images, "skipped", [])
    if skipped:
        log(f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped)}")
    if not config.autoencoder.cache or autoencoder.kind == "identity":
        return images, False
    from slimdiff.latent_cache import cached_latents, source_fingerprint

    cache_root = Path(config.autoencoder.cache_dir or Path(config.run.dir).parent / ".latent-cache")
    key = source_fingerprint(d.source, d.size, d.seed, d.length, d.image_column)
    # The main process encodes (or finds) the cache; the others then read the same folder.
    with accelerator.main_process_first():
        latents, folder = cached_latents(
            images,
            autoencoder,
            cache_root,
            key,
            batch_size=config.train.batch_size,
            device=accelerator.device,
            progress=accelerator.is_main_process,
        )
    log(f"latents: {len(latents)} from cache {folder}")
    return latents, True


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class _StopRequest:
    """Set by SIGINT / SIGTERM; the loop checkpoints and exits after the current step."""

    signal: int = 0

    def __call__(self, signum, frame) -> None:
        self.signal = signum


@contextlib.contextmanager
def _catch_stop_signals(stop: _StopRequest):
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _to_float(value) -> float:
    return float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)


def train(
    config: Config,
    *,
    make_objective: Callable[[nn.Module], nn.Module] | None = None,
    resume: str | None = None,
    progress: bool = True,
) -> Path:
    """Train `config`; returns the run folder, whose `model/` holds the EMA model as a pipeline.

    make_objective(unet) → objective, called on the bare UNet before accelerate wraps it (so feature hooks
    attach to the real modules); None trains plain ε-prediction. resume: "latest" or a checkpoint folder.
    Raises TrainingError (or a ConfigError / DataError) on a problem that a user can fix.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    run_dir = Path(config.run.dir)
    tc = config.train
    checkpoint_path = None
    if resume is not None:
        try:
            checkpoint_path = resolve_checkpoint(run_dir, resume)
        except FileNotFoundError as error:
            raise TrainingError(f"cannot resume: {error}") from None
    elif list_checkpoints(run_dir / "checkpoints"):
        raise TrainingError(
            f"{run_dir} already holds checkpoints; pass --resume latest to continue it, or choose another run.dir"
        )

    accelerator = Accelerator(
        # Launched as several processes on a machine without GPUs (torchrun / accelerate launch --multi_gpu):
        # accelerate only sets up gloo across CPU processes when told to stay on the CPU.
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
        mixed_precision=tc.mixed_precision,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )
    main = accelerator.is_main_process
    log_file = run_dir / "logs" / "run.log"

    def log(message: str) -> None:
        if main:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            if progress:
                tqdm.write(message)

    torch.manual_seed(tc.seed)
    autoencoder = _autoencoder(config).to(accelerator.device)
    dataset, is_latent = _training_data(config, autoencoder, accelerator, log)
    unet = build_unet(config, autoencoder)
    objective = (make_objective or (lambda _: EpsilonObjective()))(unet)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config.to_yaml())

    processes = accelerator.num_processes
    total_batch = tc.batch_size * tc.grad_accum * processes
    lr = tc.base_lr * total_batch
    unet.to(accelerator.device).train()
    objective.to(accelerator.device)
    objective_params = [p for p in objective.parameters() if p.requires_grad]
    trained = list(unet.parameters()) + objective_params
    optimizer = torch.optim.AdamW(trained, lr=lr, betas=tuple(tc.adam_betas), weight_decay=tc.weight_decay)
    lr_schedule = get_scheduler(
        "linear", optimizer, num_warmup_steps=tc.warmup_steps, num_training_steps=tc.steps
    )
    ema_kwargs = {
        "decay": tc.ema_decay,
        "use_ema_warmup": True,
        "model_cls": type(unet),
        "model_config": unet.config,
    }
    ema = EMAModel(unet.parameters(), **ema_kwargs)

    step = 0
    if checkpoint_path is not None:
        saved = read_checkpoint(
            checkpoint_path, accelerator.process_index, [n for n, _ in unet.named_parameters()]
        )
        unet.load_state_dict(saved["unet"])
        try:
            load_trainable_state(objective, saved["objective"])
        except ValueError as error:
            raise TrainingError(str(error)) from None
        optimizer.load_state_dict(saved["optimizer"])
        lr_schedule.load_state_dict(saved["lr_schedule"])
        ema.load_state_dict(saved["ema"])
        step = saved["state"]["step"]
        if saved["rng"] is not None:
            set_rng_state(saved["rng"])
        if saved["state"]["processes"] != processes or saved["state"]["grad_accum"] != tc.grad_accum:
            warnings.warn(
                "resuming with another number of processes or grad_accum: the data order changes",
                stacklevel=2,
            )
        log(f"resumed from {checkpoint_path} at step {step}")
    ema.to(accelerator.device)

    prepared_unet, optimizer = accelerator.prepare(unet, optimizer)
    scheduler = training_scheduler()
    ᾱ = scheduler.alphas_cumprod.to(accelerator.device)
    sampler = StepSampler(
        len(dataset),
        tc.batch_size,
        seed=tc.seed,
        process=accelerator.process_index,
        processes=processes,
        start=step * tc.grad_accum,
    )
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.data.num_workers)
    batches = iter(loader)
    if main:
        accelerator.init_trackers("train")
    log(
        f"training {config.model} for {tc.steps} steps: total batch {total_batch} = {tc.batch_size} × "
        f"{tc.grad_accum} accumulation × {processes} process(es), lr {lr:.3g}"
    )

    def save(at: int) -> None:
        folder = run_dir / "checkpoints"
        tmp = pending_checkpoint(folder, at)
        if main:
            start_checkpoint(folder, at)
        accelerator.wait_for_everyone()
        write_rng(tmp, accelerator.process_index)
        accelerator.wait_for_everyone()
        if main:
            write_checkpoint(
                tmp,
                unet=unet,
                ema=ema,
                objective_state=trainable_state(objective),
                optimizer=optimizer,
                lr_schedule=lr_schedule,
                state={
                    "step": at,
                    "micro_step": at * tc.grad_accum,
                    "processes": processes,
                    "grad_accum": tc.grad_accum,
                    "model": config.model,
                },
            )
            published = publish_checkpoint(tmp, at, config.run.keep_checkpoints)
            log(f"checkpoint {published}")
        accelerator.wait_for_everyone()

    stop = _StopRequest()
    bar = tqdm(
        total=tc.steps, initial=step, disable=not (main and progress), desc="training", dynamic_ncols=True
    )
    window: dict[str, list[float]] = {}
    with _catch_stop_signals(stop):
        while step < tc.steps:
            total_loss = torch.zeros((), device=accelerator.device)
            terms: dict[str, float] = {}
            for micro in range(tc.grad_accum):
                micro_step = step * tc.grad_accum + micro
                batch = next(batches).to(accelerator.device)
                x0 = batch if is_latent else autoencoder.encode(batch)
                t, noise = micro_step_noise(
                    tuple(x0.shape), tc.seed, micro_step, accelerator.process_index, len(ᾱ)
                )
                t, noise = t.to(accelerator.device), noise.to(accelerator.device, x0.dtype)
                a = ᾱ[t].view(-1, 1, 1, 1).to(x0.dtype)
                x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
                last = micro == tc.grad_accum - 1
                sync = contextlib.nullcontext() if last else accelerator.no_sync(prepared_unet)
                with sync, accelerator.autocast():
                    loss, logged = objective(prepared_unet, x0, x_t, t, noise)
                accelerator.backward(loss / tc.grad_accum)
                total_loss += loss.detach().float() / tc.grad_accum
                for k, v in logged.items():
                    terms[k] = terms.get(k, 0.0) + _to_float(v) / tc.grad_accum

            # One collective per step: the mean loss, and whether any process saw a non-finite loss or a signal.
            status = accelerator.reduce(
                torch.stack(
                    [
                        total_loss if torch.isfinite(total_loss) else torch.zeros_like(total_loss),
                        (~torch.isfinite(total_loss)).float(),
                        torch.tensor(float(stop.signal != 0), device=accelerator.device),
                    ]
                ),
                reduction="sum",
            )
            if status[1] > 0:
                raise TrainingError(
                    f"loss became NaN/Inf at step {step + 1}; the run stopped without saving, the last good "
                    "checkpoint is intact — lower train.base_lr, raise warmup_steps or keep grad_clip on"
                )
            for p in objective_params:  # outside DDP: average the objective's own gradients by hand
                if p.grad is not None and processes > 1:
                    p.grad = accelerator.reduce(p.grad, reduction="mean")
            grad_norm = accelerator.clip_grad_norm_(trained, tc.grad_clip) if tc.grad_clip > 0 else None
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(unet.parameters())
            step += 1

            mean_loss = float(status[0]) / processes
            for k, v in {"loss": mean_loss, **terms}.items():
                window.setdefault(k, []).append(v)
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr_schedule.get_last_lr()[0]:.2e}")
            if step % config.run.log_every == 0 or step == tc.steps:
                scalars = {f"train/{k}": sum(v) / len(v) for k, v in window.items()}
                scalars["train/lr"] = lr_schedule.get_last_lr()[0]
                if grad_norm is not None:
                    scalars["train/grad_norm"] = float(grad_norm)
                accelerator.log(scalars, step=step)
                window.clear()
            if config.run.sample_every and step % config.run.sample_every == 0:
                if main:
                    write_samples(
                        unet, ema, autoencoder, config, run_dir / "samples" / f"step-{step:08d}.png"
                    )
                accelerator.wait_for_everyone()
            if step % config.run.checkpoint_every == 0 or step == tc.steps or status[2] > 0:
                save(step)
            if status[2] > 0:
                log(f"stopped by signal at step {step}; resume with --resume latest")
                break
    bar.close()
    if step == tc.steps and main:
        export_model(unet, ema, autoencoder, run_dir / "model")
        log(f"model written to {run_dir / 'model'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


# --- outputs -------------------------------------------------------------------------------------------------


def ema_unet(unet: nn.Module, ema) -> nn.Module:
    """A copy of the bare UNet (no hooks) holding the EMA weights."""
    copy = type(unet).from_config(unet.config).to(next(unet.parameters()).device)
    ema.copy_to(copy.parameters())
    return copy.eval()


def _pipeline(unet: nn.Module, autoencoder: Autoencoder):
    from slimdiff.pipeline import SlimDiffusionPipeline

    pipe = SlimDiffusionPipeline(unet=unet, scheduler=training_scheduler(), vae=autoencoder.model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_samples(unet: nn.Module, ema, autoencoder: Autoencoder, config: Config, path: Path) -> None:
    """A grid of `run.sample_count` DDIM samples from the EMA weights, from fixed noise (comparable over time)."""
    from PIL import Image

    pipe = _pipeline(ema_unet(unet, ema), autoencoder)
    generator = torch.Generator().manual_seed(config.train.seed)
    n = config.run.sample_count
    images = pipe(
        batch_size=n,
        num_inference_steps=config.run.sample_steps,
        sampler="ddim",
        generator=generator,
        output_type="np",
    ).images
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    h, w = images.shape[1:3]
    grid = np.ones((rows * h, columns * w, 3), dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(path)


def export_model(unet: nn.Module, ema, autoencoder: Autoencoder, folder: Path) -> None:
    """`folder` = a SlimDiffusionPipeline: unet/ (EMA weights), scheduler/ (training schedule), vae/ if any."""
    import shutil

    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    _pipeline(ema_unet(unet, ema), autoencoder).save_pretrained(str(tmp), safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
