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
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

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
from slimdiff.data_order import StepSampler, micro_step_noise
from slimdiff.models.presets import get_preset
from slimdiff.noise import training_scheduler
from slimdiff.objective import EpsilonObjective, Objective, load_trainable_state, trainable_state
from slimdiff.run_outputs import export_model, write_samples

__all__ = [
    "EpsilonObjective",
    "Objective",
    "StepSampler",
    "TrainingError",
    "build_unet",
    "micro_step_noise",
    "train",
]


class TrainingError(RuntimeError):
    """A run that cannot start or continue, with a one-line reason (what is wrong, what to do)."""


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


@dataclass
class _Run:
    """Everything one training run holds; a checkpoint is this at one step."""

    config: Config
    accelerator: object
    autoencoder: Autoencoder
    unet: nn.Module  # the bare model (EMA, checkpoints, samples)
    prepared: nn.Module  # the same model as accelerate wrapped it (forward / backward)
    objective: nn.Module
    trained: list[torch.nn.Parameter]  # UNet parameters, then the objective's trainable ones
    optimizer: torch.optim.Optimizer
    lr_schedule: object
    ema: object
    log: Callable[[str], None]
    alpha_bar: torch.Tensor  # ᾱ_t of the training schedule, on the device
    step: int = 0

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run.dir)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def _setup(config: Config, make_objective, accelerator, log) -> tuple[_Run, Dataset, bool]:
    """Data, autoencoder, UNet, objective (hooks attached before wrapping), optimiser, lr schedule, EMA."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    tc = config.train
    torch.manual_seed(tc.seed)
    autoencoder = _autoencoder(config).to(accelerator.device)
    dataset, is_latent = _training_data(config, autoencoder, accelerator, log)
    unet = build_unet(config, autoencoder)
    objective = (make_objective or (lambda _: EpsilonObjective()))(unet)
    unet.to(accelerator.device).train()
    objective.to(accelerator.device)
    trained = list(unet.parameters()) + [p for p in objective.parameters() if p.requires_grad]
    lr = tc.base_lr * tc.batch_size * tc.grad_accum * accelerator.num_processes
    optimizer = torch.optim.AdamW(trained, lr=lr, betas=tuple(tc.adam_betas), weight_decay=tc.weight_decay)
    lr_schedule = get_scheduler(
        "linear", optimizer, num_warmup_steps=tc.warmup_steps, num_training_steps=tc.steps
    )
    ema = EMAModel(
        unet.parameters(),
        decay=tc.ema_decay,
        use_ema_warmup=True,
        model_cls=type(unet),
        model_config=unet.config,
    )
    ᾱ = training_scheduler().alphas_cumprod.to(accelerator.device)
    run = _Run(
        config, accelerator, autoencoder, unet, unet, objective, trained, optimizer, lr_schedule, ema, log, ᾱ
    )
    return run, dataset, is_latent


def _restore(run: _Run, checkpoint: Path) -> None:
    """Load a checkpoint into the run: weights, objective, optimiser, lr schedule, EMA, RNG, step."""
    accelerator = run.accelerator
    try:
        saved = read_checkpoint(
            checkpoint, accelerator.process_index, [n for n, _ in run.unet.named_parameters()]
        )
        if saved["state"]["model"] != run.config.model:
            raise ValueError(
                f"it was written for model {saved['state']['model']!r}, not {run.config.model!r}"
            )
        run.unet.load_state_dict(saved["unet"])
        load_trainable_state(run.objective, saved["objective"])
        run.optimizer.load_state_dict(saved["optimizer"])
        run.lr_schedule.load_state_dict(saved["lr_schedule"])
        run.ema.load_state_dict(saved["ema"])
    except (KeyError, RuntimeError, ValueError) as error:
        reason = str(error).strip("'\"").splitlines()[0]
        raise TrainingError(
            f"cannot resume from {checkpoint}: it does not fit this run ({reason}); resume with the config "
            "the run was started with (its config.yaml)"
        ) from None
    run.step = saved["state"]["step"]
    if saved["rng"] is not None:
        set_rng_state(saved["rng"])
    same_layout = (saved["state"]["processes"], saved["state"]["grad_accum"]) == (
        accelerator.num_processes,
        run.config.train.grad_accum,
    )
    if not same_layout:
        warnings.warn(
            "resuming with another number of processes or grad_accum: the data order changes", stacklevel=3
        )
    run.log(f"resumed from {checkpoint} at step {run.step}")


def _save(run: _Run) -> None:
    """Checkpoint the run at its current step: every process writes its RNG state, the main one the rest."""
    accelerator, folder = run.accelerator, run.run_dir / "checkpoints"
    tmp = pending_checkpoint(folder, run.step)
    if run.main:
        start_checkpoint(folder, run.step)
    accelerator.wait_for_everyone()
    write_rng(tmp, accelerator.process_index)
    accelerator.wait_for_everyone()
    if run.main:
        tc = run.config.train
        write_checkpoint(
            tmp,
            unet=run.unet,
            ema=run.ema,
            objective_state=trainable_state(run.objective),
            optimizer=run.optimizer,
            lr_schedule=run.lr_schedule,
            state={
                "step": run.step,
                "micro_step": run.step * tc.grad_accum,
                "processes": accelerator.num_processes,
                "grad_accum": tc.grad_accum,
                "model": run.config.model,
            },
        )
        run.log(f"checkpoint {publish_checkpoint(tmp, run.step, run.config.run.keep_checkpoints)}")
    accelerator.wait_for_everyone()


def _forward_backward(
    run: _Run, batches: Iterator[torch.Tensor], is_latent: bool
) -> tuple[torch.Tensor, dict]:
    """Gradients of one optimiser step (all micro-batches); returns the mean loss and logged terms."""
    accelerator, tc = run.accelerator, run.config.train
    ᾱ = run.alpha_bar
    total = torch.zeros((), device=accelerator.device)
    terms: dict[str, float] = {}
    for micro in range(tc.grad_accum):
        batch = next(batches).to(accelerator.device)
        x0 = batch if is_latent else run.autoencoder.encode(batch)
        micro_step = run.step * tc.grad_accum + micro
        t, noise = micro_step_noise(tuple(x0.shape), tc.seed, micro_step, accelerator.process_index, len(ᾱ))
        t, noise = t.to(accelerator.device), noise.to(accelerator.device, x0.dtype)
        a = ᾱ[t].view(-1, 1, 1, 1).to(x0.dtype)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        # Gradients are all-reduced across processes only on the last micro-batch.
        last = micro == tc.grad_accum - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(run.prepared), accelerator.autocast():
            loss, logged = run.objective(run.prepared, x0, x_t, t, noise)
        accelerator.backward(loss / tc.grad_accum)
        total += loss.detach().float() / tc.grad_accum
        for k, v in logged.items():
            terms[k] = terms.get(k, 0.0) + _to_float(v) / tc.grad_accum
    return total, terms


def _optimiser_step(run: _Run) -> float | None:
    """Average the objective's own gradients (outside DDP), clip, step AdamW, lr schedule and EMA."""
    accelerator, tc = run.accelerator, run.config.train
    if accelerator.num_processes > 1:
        for p in run.trained[len(list(run.unet.parameters())) :]:
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
    grad_norm = accelerator.clip_grad_norm_(run.trained, tc.grad_clip) if tc.grad_clip > 0 else None
    run.optimizer.step()
    run.lr_schedule.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.ema.step(run.unet.parameters())
    run.step += 1
    return None if grad_norm is None else float(grad_norm)


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
    from tqdm.auto import tqdm

    run_dir, tc = Path(config.run.dir), config.train
    checkpoint = None
    if resume is not None:
        try:
            checkpoint = resolve_checkpoint(run_dir, resume)
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

    run, dataset, is_latent = _setup(config, make_objective, accelerator, log)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config.to_yaml())
    if checkpoint is not None:
        _restore(run, checkpoint)
    run.ema.to(accelerator.device)
    run.prepared, run.optimizer = accelerator.prepare(run.unet, run.optimizer)
    sampler = StepSampler(
        len(dataset),
        tc.batch_size,
        seed=tc.seed,
        process=accelerator.process_index,
        processes=accelerator.num_processes,
        start=run.step * tc.grad_accum,
    )
    batches = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=config.data.num_workers))
    accelerator.init_trackers("train")
    total_batch = tc.batch_size * tc.grad_accum * accelerator.num_processes
    log(
        f"training {config.model} for {tc.steps} steps: total batch {total_batch} = {tc.batch_size} × "
        f"{tc.grad_accum} accumulation × {accelerator.num_processes} process(es), "
        f"lr {tc.base_lr * total_batch:.3g}"
    )

    stop = _StopRequest()
    bar = tqdm(
        total=tc.steps, initial=run.step, disable=not (main and progress), desc="training", dynamic_ncols=True
    )
    window: dict[str, list[float]] = {}
    with _catch_stop_signals(stop):
        while run.step < tc.steps:
            loss, terms = _forward_backward(run, batches, is_latent)
            # One collective per step: the summed loss, and whether any process saw a NaN/Inf loss or a signal.
            finite = torch.isfinite(loss)
            signalled = torch.tensor(float(stop.signal != 0), device=accelerator.device)
            status = accelerator.reduce(
                torch.stack([torch.where(finite, loss, 0.0), (~finite).float(), signalled]), reduction="sum"
            )
            if status[1] > 0:
                raise TrainingError(
                    f"loss became NaN/Inf at step {run.step + 1}; the run stopped without saving, the last good "
                    "checkpoint is intact — lower train.base_lr, raise warmup_steps or keep grad_clip on"
                )
            grad_norm = _optimiser_step(run)
            step, lr = run.step, run.lr_schedule.get_last_lr()[0]
            mean_loss = float(status[0]) / accelerator.num_processes
            for k, v in {"loss": mean_loss, **terms}.items():
                window.setdefault(k, []).append(v)
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
            if step % config.run.log_every == 0 or step == tc.steps:
                scalars = {f"train/{k}": sum(v) / len(v) for k, v in window.items()} | {"train/lr": lr}
                if grad_norm is not None:
                    scalars["train/grad_norm"] = grad_norm
                accelerator.log(scalars, step=step)
                window.clear()
            if config.run.sample_every and step % config.run.sample_every == 0:
                if main:
                    path = run_dir / "samples" / f"step-{step:08d}.png"
                    write_samples(run.unet, run.ema, run.autoencoder, config, path)
                accelerator.wait_for_everyone()
            if step % config.run.checkpoint_every == 0 or step == tc.steps or status[2] > 0:
                _save(run)
            if status[2] > 0:
                log(f"stopped by signal at step {step}; resume with --resume latest")
                break
    bar.close()
    if run.step == tc.steps and main:
        export_model(run.unet, run.ema, run.autoencoder, run_dir / "model")
        log(f"model written to {run_dir / 'model'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir
