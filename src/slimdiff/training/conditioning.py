"""Conditioning in training: labels or captions of a batch → the UNet's keyword inputs, with
classifier-free-guidance dropout to the null class / the empty prompt.

The kind (`none`, `class`, `text`) comes from `conditioning.kind`, or from the preset when unset; it is
resolved once per run (`resolve_kind`, in `training.run.build_run`) and checked against the data before
anything starts. A class model has K + 1 context rows, row K meaning "no
class"; a text model learns the empty prompt's embedding as its unconditional input.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slimdiff.config import Config
from slimdiff.errors import ConfigError, DataError
from slimdiff.models.inputs import condition_input
from slimdiff.models.presets import get_preset


def preset_kind(model: str) -> str:
    """What preset `model` is conditioned on: none, class or text."""
    condition = condition_input(get_preset(model).config)
    return {None: "none", "class_labels": "class", "encoder_hidden_states": "text"}[condition]


def resolve_kind(config: Config) -> str:
    """The run's conditioning kind — `conditioning.kind`, or what the preset takes — checked against the model
    and the data settings (the data set itself then refuses a source without such conditions)."""
    model_kind = preset_kind(config.model)
    kind = config.conditioning.kind or model_kind
    if kind != model_kind:
        raise ConfigError(
            f"conditioning.kind {kind} does not fit model {config.model}, which takes {model_kind}"
        )
    column = {"class": config.data.caption_column, "text": config.data.label_column}.get(kind)
    given = config.data.label_column or config.data.caption_column
    if (kind == "none" and given) or column:
        raise ConfigError(
            f"model {config.model} takes {kind} conditioning but data sets "
            f"{'label_column' if config.data.label_column else 'caption_column'}; pick a fitting preset or drop it"
        )
    return kind


def drop_mask(n: int, p: float, seed: int, micro_step: int, process: int) -> torch.Tensor:
    """Which of `n` samples of a micro-batch train unconditioned, a function of (seed, micro-step, process)."""
    key = int(np.random.SeedSequence([seed, micro_step, process, 1]).generate_state(1)[0])
    return torch.rand(n, generator=torch.Generator().manual_seed(key)) < p


class Conditioner(nn.Module):
    """labels or captions (+ which to drop) → `class_labels` or `encoder_hidden_states` for the UNet."""

    def __init__(
        self, kind: str, unet: nn.Module, text_encoder: nn.Module | None = None, p: float = 0.1, seed: int = 0
    ):
        super().__init__()
        self.kind, self.text_encoder, self.p, self.seed = kind, text_encoder, p, seed
        classes = unet.config.get("num_context_classes")
        self.null_label = classes if classes else (unet.config.get("num_class_embeds") or 1) - 1

    def forward(self, conditions, micro_step: int, process: int, device) -> dict[str, torch.Tensor]:
        drop = drop_mask(len(conditions), self.p, self.seed, micro_step, process)
        if self.kind == "class":
            labels = torch.as_tensor(conditions, dtype=torch.long)
            if labels.max() >= self.null_label:
                raise DataError(
                    f"class label {int(labels.max())} is outside the model's {self.null_label} classes"
                )
            return {"class_labels": torch.where(drop, self.null_label, labels).to(device)}
        prompts = ["" if d else c for c, d in zip(conditions, drop.tolist(), strict=True)]
        return {"encoder_hidden_states": self.text_encoder(prompts).to(device)}


def conditioned_overrides(
    overrides: dict, kind: str, class_names: list[str] | None, text_encoder: nn.Module | None
) -> dict:
    """The preset `overrides` of a run's UNet with its conditioning sized for the data and the text encoder:
    a class table with a row per class of the data (unless set larger), a context as wide as the encoder's."""
    overrides = dict(overrides)
    if kind == "class":
        overrides.setdefault("num_context_classes", len(class_names))
        if overrides["num_context_classes"] < len(class_names):
            raise ConfigError(
                f"the data has {len(class_names)} classes but model_overrides.num_context_classes is "
                f"{overrides['num_context_classes']}"
            )
    elif kind == "text":
        overrides.setdefault("cross_attention_dim", text_encoder.hidden_size)
    return overrides


def split_batch(batch) -> tuple[torch.Tensor, object]:
    """(images or latents, their labels / captions or None) of a loader batch."""
    return tuple(batch) if isinstance(batch, (list, tuple)) else (batch, None)
