"""Training objectives: what the one training loop minimises, behind one interface.

An objective is an `Objective` called as `objective(unet, x0, x_t, t, noise, **condition)` that returns
`(loss, terms)`: the loss as a tensor and the terms to log as detached tensors. Nothing in an objective
reads a value back to the host — the loop converts the terms to numbers only when it logs them. The plain
ε-prediction loss is the default; distillation (`training.distillation.SpectralDistillation`) is another
objective, not another loop. An objective may own trainable modules (e.g. feature projectors): the loop
optimises `trainable_parameters()`, and checkpoints save and restore `trainable_state()`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import SchedulerMixin
from torch import nn

from slimdiff.config import DistillConfig
from slimdiff.models.loading import check_compatible

# name → detached scalar tensor, logged as train/<name>
Terms = dict[str, torch.Tensor]


class Objective(nn.Module):
    """Base class of training objectives."""

    def forward(
        self,
        unet: nn.Module,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        **condition: torch.Tensor,
    ) -> tuple[torch.Tensor, Terms]:
        """`condition`: the UNet's conditioning inputs (class_labels / encoder_hidden_states), if any."""
        raise NotImplementedError

    def sampling(self, scheduler: SchedulerMixin) -> tuple[SchedulerMixin, int | None]:
        """How the trained model samples, saved with it: a scheduler built from `scheduler` (the settings
        slimdiff samples with on the run's noise schedule) and the step count a call without
        `num_inference_steps` takes (None: the pipeline's default). Unchanged for objectives that do not
        change how the model samples."""
        return scheduler, None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The objective's own parameters, trained alongside the UNet (a frozen teacher's are not)."""
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds of the objective: its trainable parameters (a frozen teacher is rebuilt
        from its source, not copied into every checkpoint)."""
        return {name: p.detach() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.trainable_state())
        if set(state) != expected:
            raise ValueError(
                f"the checkpoint's objective holds {sorted(state)} but this objective trains "
                f"{sorted(expected)}; "
                "was it written by another command (train vs distill) or other distillation positions?"
            )
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)


class TeacherObjective(Objective):
    """An objective of a student against a frozen teacher, with the distillation `settings`. The teacher is held
    outside the module tree, so its weights stay out of checkpoints and the optimizer, and it follows the
    batch to its device on first use (`teacher_on`)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, settings: DistillConfig):
        super().__init__()
        check_compatible(teacher, student)
        self.settings = settings
        self.__dict__["teacher"] = teacher.eval().requires_grad_(False)

    def teacher_on(self, device: torch.device) -> nn.Module:
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        return self.teacher


class EpsilonObjective(Objective):
    """L_ε = ‖ε − ε_θ(x_t, t)‖² (mean over every element), the DDPM / LDM training loss."""

    def forward(self, unet, x0, x_t, t, noise, **condition):
        prediction = unet(x_t, t, **condition).sample
        loss = F.mse_loss(prediction.float(), noise.float())
        return loss, {"loss_eps": loss.detach()}
