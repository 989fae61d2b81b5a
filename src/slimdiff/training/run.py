"""A training run: everything it holds, built in one place (`build_run`) from its config.

The run's noise schedule is built once here and handed to everything that needs it — the noising of every
micro-batch (its ᾱ), the teacher check, the sample grids and the exported model. So is the conditioning
kind, and so is the UNet. After `build_run` only the step counter of the run changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import DDPMScheduler
from torch import nn
from torch.utils.data import Dataset

from slimdiff.config import Config, DistillConfig
from slimdiff.diffusion import training_scheduler
from slimdiff.errors import ConfigError
from slimdiff.models.autoencoders import Autoencoder, load_autoencoder
from slimdiff.models.loading import load_teacher, load_unet
from slimdiff.models.presets import build_unet
from slimdiff.models.text_encoder import load_text_encoder
from slimdiff.training.conditioning import Conditioner, conditioned_overrides, resolve_kind
from slimdiff.training.distillation import SpectralDistillation
from slimdiff.training.objectives import EpsilonObjective, Objective
from slimdiff.training.steps import ConsistencyDistillation
from slimdiff.training.training_set import training_set

# types only: accelerate and diffusers' training utilities load when a run is built, not on import
if TYPE_CHECKING:
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel
    from torch.optim.lr_scheduler import LRScheduler


@dataclass(kw_only=True)
class TrainingRun:
    """Everything one training run holds; a checkpoint is this at one step."""

    config: Config
    accelerator: Accelerator
    log: Callable[[str], None]
    autoencoder: Autoencoder
    data: Dataset  # images, or latents already (`is_latent`)
    is_latent: bool
    unet: nn.Module  # the bare model (EMA, checkpoints, samples)
    prepared: nn.Module  # the same model as accelerate wrapped it (forward / backward)
    conditioner: Conditioner | None  # labels / captions → UNet inputs (None: unconditional)
    class_names: list[str] | None
    objective: Objective
    optimizer: torch.optim.Optimizer
    lr_schedule: LRScheduler
    ema: EMAModel
    scheduler: DDPMScheduler  # the run's noise schedule (train.beta_end)
    alpha_bar: torch.Tensor  # its ᾱ_t, on the device
    step: int = 0

    @property
    def trained(self) -> list[nn.Parameter]:
        """What AdamW trains: the UNet's parameters, then the objective's own."""
        return [*self.unet.parameters(), *self.objective.trainable_parameters()]

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run.dir)


def build_objective(distill: DistillConfig | None, unet: nn.Module, scheduler: DDPMScheduler) -> Objective:
    """The objective a run's `distill:` section asks for, built on the bare `unet` before any wrapping (so
    distillation hooks attach to the real modules): spectrum-aware distillation from `distill.teacher`, whose
    noise schedule must be the run's `scheduler` — consistency distillation when `distill.steps` is set —, or
    plain ε-prediction when the run has no such section."""
    if distill is None:
        return EpsilonObjective()
    if distill.teacher is None:
        raise ConfigError("the config distils but names no teacher: set distill.teacher or pass --teacher")
    teacher = load_teacher(distill.teacher, schedule=scheduler)
    if distill.steps is not None:
        return ConsistencyDistillation(unet, teacher, distill, scheduler)
    return SpectralDistillation(unet, teacher, distill)


def start_from(unet: nn.Module, source: str) -> None:
    """Load the UNet weights of the model in `source` into `unet` (`distill.student`: step distillation
    usually starts from a trained slim student); its architecture must be the config's."""
    weights = load_unet(source).state_dict()
    ours = unet.state_dict()
    if set(weights) != set(ours) or any(weights[k].shape != ours[k].shape for k in ours):
        raise ConfigError(
            f"distill.student {source} is not a {type(unet).__name__} of the config's model preset and "
            "overrides: set model (and model_overrides) to the student's architecture"
        )
    unet.load_state_dict(weights)


def make_ema(unet: nn.Module, decay: float) -> EMAModel:
    """The EMA of `unet`'s weights the loop keeps (diffusers' EMAModel, warm-up on). `foreach`: fused updates over
    all tensors instead of three small ops per parameter tensor — what a GPU step pays in launches."""
    from diffusers.training_utils import EMAModel

    return EMAModel(unet.parameters(), decay=decay, use_ema_warmup=True, foreach=True)


def build_run(
    config: Config,
    accelerator: Accelerator,
    log: Callable[[str], None],
    make_objective: Callable[[nn.Module], Objective] | None = None,
) -> TrainingRun:
    """Autoencoder, data, UNet, objective (hooks attached before wrapping), optimiser, lr schedule, EMA, and
    the UNet and optimiser as accelerate prepared them; `make_objective(unet)` replaces `build_objective`."""
    from diffusers.optimization import get_scheduler

    tc, ae, device = config.train, config.autoencoder, accelerator.device
    torch.manual_seed(tc.seed)
    scheduler = training_scheduler(beta_end=tc.beta_end)
    autoencoder = load_autoencoder(ae.kind, ae.source, ae.scaling_factor).to(device)
    cache_root = None
    if ae.cache:
        cache_root = Path(ae.cache_dir or Path(config.run.dir).parent / ".latent-cache")
    kind = resolve_kind(config)
    data, is_latent = training_set(
        config.data,
        autoencoder,
        cache_root,
        batch_size=tc.batch_size,
        device=device,
        main_first=accelerator.main_process_first,
        progress=accelerator.is_main_process,
        log=log,
        conditioning=kind,
    )
    class_names = getattr(data, "class_names", None) if kind == "class" else None
    encoder = load_text_encoder(config.conditioning.text_encoder) if kind == "text" else None
    overrides = conditioned_overrides(config.model_overrides, kind, class_names, encoder)
    unet = build_unet(
        config.model, config.data.size, overrides, autoencoder.factor, autoencoder.latent_channels
    )
    if config.distill is not None and config.distill.student is not None:
        start_from(unet, config.distill.student)
    conditioner = None
    if kind != "none":
        conditioner = Conditioner(kind, unet, encoder, config.conditioning.cond_dropout, tc.seed)
    objective = make_objective(unet) if make_objective else build_objective(config.distill, unet, scheduler)
    unet.to(device).train()
    objective.to(device)
    trained = [*unet.parameters(), *objective.trainable_parameters()]
    lr = tc.base_lr * tc.batch_size * tc.grad_accum * accelerator.num_processes
    optimizer = torch.optim.AdamW(trained, lr=lr, betas=tuple(tc.adam_betas), weight_decay=tc.weight_decay)
    lr_schedule = get_scheduler(
        "constant_with_warmup" if tc.lr_schedule == "constant" else tc.lr_schedule,
        optimizer,
        num_warmup_steps=tc.warmup_steps,
        num_training_steps=tc.steps,
    )
    ema = make_ema(unet, tc.ema_decay)
    prepared, optimizer = accelerator.prepare(unet, optimizer)
    return TrainingRun(
        config=config,
        accelerator=accelerator,
        log=log,
        autoencoder=autoencoder,
        data=data,
        is_latent=is_latent,
        unet=unet,
        prepared=prepared,
        conditioner=conditioner,
        class_names=class_names,
        objective=objective,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        ema=ema,
        scheduler=scheduler,
        alpha_bar=scheduler.alphas_cumprod.to(device),
    )
