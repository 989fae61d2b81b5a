"""Training objectives: what the one training loop minimises.

An objective is an `nn.Module` called as `objective(unet, x0, x_t, t, noise) -> (loss, logged terms)`. The
plain ε-prediction loss is the default; distillation is another objective (a teacher and extra loss terms),
not another loop. `build_objective(config, unet)` picks it from the run config, so a config with a `distill:`
section always distils. An objective may own trainable modules (e.g. feature projectors): the loop optimises every
parameter of it that requires grad, and checkpoints save and restore `trainable_state(objective)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimdiff.config import Config
from slimdiff.errors import ConfigError, ModelError
from slimdiff.models.loading import load_teacher
from slimdiff.sampling.schedule import run_scheduler
from slimdiff.training.distillation import SpectralDistillation


class Objective(nn.Module):
    """Base class of training objectives; any `nn.Module` with this `forward` works in the loop."""

    def forward(
        self,
        unet: nn.Module,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        **condition: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """`condition`: the UNet's conditioning inputs (class_labels / encoder_hidden_states), if any."""
        raise NotImplementedError


def trainable_state(objective: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint holds of an objective: its trainable parameters (a frozen teacher is rebuilt from its
    source, not copied into every checkpoint)."""
    return {name: p.detach() for name, p in objective.named_parameters() if p.requires_grad}


def load_trainable_state(objective: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = set(trainable_state(objective))
    if set(state) != expected:
        raise ValueError(
            f"the checkpoint's objective holds {sorted(state)} but this objective trains {sorted(expected)}; "
            "was it written by another command (train vs distill) or other distillation positions?"
        )
    params = dict(objective.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


class EpsilonObjective(Objective):
    """L_ε = ‖ε − ε_θ(x_t, t)‖² (mean over every element), the DDPM / LDM training loss."""

    def forward(self, unet, x0, x_t, t, noise, **condition):
        prediction = unet(x_t, t, **condition).sample
        loss = F.mse_loss(prediction.float(), noise.float())
        return loss, {"loss_eps": loss.detach()}


def build_objective(config: Config, unet: nn.Module) -> nn.Module:
    """The objective `config` asks for, built on the bare `unet` before any wrapping (so distillation hooks
    attach to the real modules): spectrum-aware distillation from `distill.teacher` when the config has a
    `distill:` section, plain ε-prediction otherwise."""
    section = config.distill
    if section is None:
        return EpsilonObjective()
    if section.teacher is None:
        raise ConfigError("the config distils but names no teacher: set distill.teacher or pass --teacher")
    try:
        teacher = load_teacher(section.teacher, schedule=run_scheduler(config.train))
    except ModelError:
        raise  # already names the teacher and the fix
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load teacher {section.teacher}: {str(error).splitlines()[0]}") from None
    return SpectralDistillation(
        unet,
        teacher,
        positions=section.positions,
        lambda_spatial=section.lambda_spatial,
        lambda_freq=section.lambda_freq,
        alpha=section.alpha,
        delta=section.delta,
        omega=section.omega,
    )
