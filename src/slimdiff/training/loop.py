"""The one training loop (docs/architecture.md): teacher training, the Lite baseline and distillation.

x0 (image or latent) → x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε → objective(unet, x0, x_t, t, ε) → AdamW, EMA. What is
minimised is the objective the config asks for (`training.run.build_objective`): ε-prediction, or a teacher
plus extra loss terms for distillation — not a second loop. Everything the run holds is built by `build_run`.

Runs under accelerate (one CPU/GPU with `slimdiff train`, many GPUs / nodes with `accelerate launch`).
The data order and the noise of every micro-batch are functions of (seed, micro-step, process), so a run
resumed from a checkpoint continues exactly as if it had never stopped. See docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from slimdiff.config import Config
from slimdiff.data.order import StepSampler
from slimdiff.diffusion import add_noise, micro_step_noise
from slimdiff.errors import TrainingDiverged, TrainingError, TrainingStopped, check_output_folder
from slimdiff.reporting.progress import progress_bar, write
from slimdiff.training.checkpoint import candidates, list_checkpoints, restore_checkpoint, save_checkpoint
from slimdiff.training.conditioning import split_batch
from slimdiff.training.objectives import Objective, Terms
from slimdiff.training.run import TrainingRun, build_run
from slimdiff.training.run_folder import check_resume_config, hold_run_folder
from slimdiff.training.run_outputs import RunLog, ScalarWindow, export_model, write_samples


@contextlib.contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """Records SIGINT / SIGTERM in the yielded list instead of raising; the loop checkpoints and stops."""
    received: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, _: received.append(signum))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _forward_backward(run: TrainingRun, batches: Iterator[torch.Tensor]) -> tuple[torch.Tensor, Terms]:
    """Gradients of one optimiser step (all micro-batches); returns the mean loss and the mean logged terms,
    as tensors on the device (nothing is read back here)."""
    accelerator, tc = run.accelerator, run.config.train
    total = torch.zeros((), device=accelerator.device)
    terms: Terms = {}
    for micro in range(tc.grad_accum):
        batch, conditions = split_batch(next(batches))
        x0 = batch.to(accelerator.device)
        x0 = x0 if run.is_latent else run.autoencoder.encode(x0)
        micro_step, process = run.step * tc.grad_accum + micro, accelerator.process_index
        condition = (
            {} if run.conditioner is None else run.conditioner(conditions, micro_step, process, x0.device)
        )
        t, noise = micro_step_noise(tuple(x0.shape), tc.seed, micro_step, process, len(run.alpha_bar))
        t, noise = t.to(accelerator.device), noise.to(accelerator.device, x0.dtype)
        x_t = add_noise(x0, noise, run.alpha_bar[t])
        # Gradients are all-reduced across processes only on the last micro-batch.
        last = micro == tc.grad_accum - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(run.prepared), accelerator.autocast():
            loss, logged = run.objective(run.prepared, x0, x_t, t, noise, **condition)
        accelerator.backward(loss / tc.grad_accum)
        total += loss.detach().float() / tc.grad_accum
        for k, v in logged.items():
            terms[k] = terms.get(k, 0.0) + v.detach().float() / tc.grad_accum
    return total, terms


def _optimiser_step(run: TrainingRun) -> float | None:
    """Average the objective's own gradients (outside DDP), clip, step AdamW, lr schedule and EMA."""
    accelerator, tc = run.accelerator, run.config.train
    if accelerator.num_processes > 1:
        for p in run.objective.trainable_parameters():
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
    make_objective: Callable[[torch.nn.Module], Objective] | None = None,
    resume: str | None = None,
    progress: bool = True,
) -> Path:
    """Train `config`; returns the run folder, whose `model/` holds the EMA model as a pipeline.

    The objective is `build_objective` (distillation when the config has a `distill:` section);
    `make_objective(unet)` replaces it with your own `Objective`, called on the bare UNet before accelerate
    wraps it.
    resume: "latest" (the newest checkpoint that reads) or a checkpoint folder. Raises a `SlimdiffError` on a
    problem the user can fix — `TrainingDiverged` on a NaN loss, `TrainingStopped` after SIGINT / SIGTERM.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    run_dir, tc = Path(config.run.dir), config.train
    check_output_folder(run_dir, "run.dir")
    if tc.steps < tc.warmup_steps:
        warnings.warn(
            f"train.steps ({tc.steps}) is shorter than train.warmup_steps ({tc.warmup_steps}): the learning rate "
            f"never reaches its full value; lower warmup_steps or train longer",
            stacklevel=2,
        )
    resume_from = candidates(run_dir, resume) if resume is not None else None
    if resume is None and list_checkpoints(run_dir / "checkpoints"):
        raise TrainingError(
            f"{run_dir} already holds checkpoints; pass --resume latest to continue it, or choose another run.dir"
        )
    if resume is not None:
        check_resume_config(run_dir, config)
    accelerator = Accelerator(
        # Launched as several processes on a machine without GPUs (torchrun / accelerate launch --multi_gpu):
        # accelerate only sets up gloo across CPU processes when told to stay on the CPU.
        cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
        mixed_precision=tc.mixed_precision,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )
    main = accelerator.is_main_process
    log = RunLog(run_dir / "logs" / "run.log", main, write if progress and main else None)
    run = build_run(config, accelerator, log, make_objective)
    if resume_from is not None:
        log(f"resumed from {restore_checkpoint(run, resume_from)} at step {run.step}")
    # Validated: only now does the run folder change, and only by the process that holds it.
    with hold_run_folder(run_dir) if main else contextlib.nullcontext():
        if main:
            (run_dir / "config.yaml").write_text(config.to_yaml())
            if run.class_names:
                (run_dir / "class_names.json").write_text(json.dumps(run.class_names))
        _loop(run, config, progress)
    return run_dir


def _loop(run: TrainingRun, config: Config, progress: bool) -> None:
    """Steps from `run.step` to `train.steps`: forward/backward, optimiser, logs, samples, checkpoints, and at
    the end the model folder."""
    accelerator, log, tc, run_dir = run.accelerator, run.log, config.train, run.run_dir
    main = accelerator.is_main_process
    log.start()
    sampler = StepSampler(
        len(run.data),
        tc.batch_size,
        seed=tc.seed,
        process=accelerator.process_index,
        processes=accelerator.num_processes,
        start=run.step * tc.grad_accum,
    )
    batches = iter(DataLoader(run.data, batch_sampler=sampler, num_workers=config.data.num_workers))
    accelerator.init_trackers("train")
    total_batch = tc.batch_size * tc.grad_accum * accelerator.num_processes
    log(
        f"training {config.model} for {tc.steps} steps ({'distillation' if config.distill else 'ε-prediction'}): "
        f"total batch {total_batch} = {tc.batch_size} × {tc.grad_accum} accumulation × "
        f"{accelerator.num_processes} process(es), lr {tc.base_lr * total_batch:.3g}"
    )
    bar = progress_bar("training", tc.steps, initial=run.step, disable=not (main and progress), leave=True)
    scalars = ScalarWindow(accelerator)
    with _stop_signals() as received:
        while run.step < tc.steps:
            loss, terms = _forward_backward(run, batches)
            # One collective per step: the summed loss, and whether any process saw a NaN/Inf loss or a signal.
            finite = torch.isfinite(loss)
            signalled = torch.tensor(float(received[0] if received else 0), device=accelerator.device)
            status = accelerator.reduce(
                torch.stack([torch.where(finite, loss, 0.0), (~finite).float(), signalled]), reduction="sum"
            )
            if status[1] > 0:
                raise TrainingDiverged(
                    f"loss became NaN/Inf at step {run.step + 1}; the run stopped without saving, the last good "
                    "checkpoint is intact — lower train.base_lr, raise warmup_steps or keep grad_clip on"
                )
            grad_norm = _optimiser_step(run)
            step, lr = run.step, run.lr_schedule.get_last_lr()[0]
            mean_loss = float(status[0]) / accelerator.num_processes
            scalars.add({"loss": mean_loss, **terms})
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
            if step % config.run.log_every == 0 or step == tc.steps:
                scalars.flush(step, {"lr": lr} | ({} if grad_norm is None else {"grad_norm": grad_norm}))
            if config.run.sample_every and step % config.run.sample_every == 0:
                if main:
                    grid = run_dir / "samples" / f"step-{step:08d}.png"
                    write_samples(
                        run.unet,
                        run.ema,
                        run.autoencoder.model,
                        run.scheduler,
                        grid,
                        count=config.run.sample_count,
                        steps=config.run.sample_steps,
                        seed=tc.seed,
                        objective=run.objective,
                    )
                accelerator.wait_for_everyone()
            if step % config.run.checkpoint_every == 0 or step == tc.steps or status[2] > 0:
                save_checkpoint(run)
            if status[2] > 0:
                log(f"stopped by signal at step {step}; resume with --resume latest")
                bar.close()
                accelerator.end_training()
                raise TrainingStopped(received[0] if received else signal.SIGTERM, step)
    bar.close()
    if run.step == tc.steps and main:
        export_model(
            run.unet,
            run.ema,
            run.autoencoder.model,
            run_dir / "model",
            run.scheduler,
            run.conditioner,
            run.class_names,
            run.objective,
        )
        log(f"model written to {run_dir / 'model'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
