"""Load any diffusers UNet — a slimdiff run or model folder, a local diffusers folder or a hub id — by one
path, as a model or as a frozen distillation teacher."""

from __future__ import annotations

import functools
import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from diffusers import DDPMScheduler, ModelMixin, UNet2DConditionModel, UNet2DModel
from torch import nn

from slimdiff.errors import ModelError, loading
from slimdiff.models.inputs import condition_input
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel

UNET_CLASSES: dict[str, type[ModelMixin]] = {
    cls.__name__: cls
    for cls in (SlimUNet2DModel, SlimUNet2DConditionModel, UNet2DModel, UNet2DConditionModel)
}


WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"  # a diffusers model's weights in its folder
# What to do about a model folder the libraries cannot read.
FOLDER_FIX = (
    "slimdiff reads config.json + safetensors only: re-save a .bin / pickle checkpoint with diffusers' "
    "save_pretrained, copy a damaged file again"
)


def check_source(source: str | Path, what: str) -> None:
    """Refuse at once a `source` that is neither an existing folder nor shaped like a hub id ("owner/name"),
    before any library asks the hub about it."""
    path = Path(source)
    if path.is_dir():
        return
    if path.exists() or str(source).count("/") != 1:
        raise ModelError(
            f"cannot load the {what}: {source} is neither a model folder nor a hub id like 'CompVis/ldm-celebahq-256'"
        )
    if path.parent.is_dir():  # e.g. a mistyped runs/… folder: say so
        raise ModelError(
            f"cannot load the {what}: no folder {source} (its parent {path.parent} exists here: a typo?)"
        )


def locate(
    source: str | Path,
    model_class: type[ModelMixin],
    local: tuple[str | None, ...],
    hub: tuple[str | None, ...],
    what: str = "",
    **hub_kwargs,
) -> tuple[str, str | None]:
    """(path or hub id, subfolder) of the first config.json of a `model_class` (named `what`) in `source`: in
    the `local` subfolders of a folder, or the `hub` subfolders of a hub id. `hub_kwargs` (cache_dir,
    local_files_only, revision, token) go to the hub look-up."""
    what = what or model_class.__name__
    check_source(source, what)
    path = Path(source)
    if path.is_dir():
        for subfolder in local:
            if (path / (subfolder or "") / "config.json").is_file():
                parent, _, name = (subfolder or "").rpartition("/")  # model/unet: the pipeline folder model/
                return str(path / parent), name or None
        where = ", ".join(f"in {s}/" for s in local if s)
        raise ModelError(f"cannot load the {what}: {path} holds no {what} (no config.json in it, {where})")
    # The local hub cache first; the network only when it answers, so a wrong id fails fast offline.
    attempts = [{**hub_kwargs, "local_files_only": True}]
    if not hub_kwargs.get("local_files_only") and hub_reachable():
        attempts.append(hub_kwargs)
    for kwargs in attempts:
        for subfolder in hub:
            try:
                model_class.load_config(str(source), subfolder=subfolder, **kwargs)
            except OSError:
                continue
            return str(source), subfolder
    where = "not in the local hub cache" + (
        "" if len(attempts) > 1 else " and the hub is not reachable (offline?)"
    )
    raise ModelError(f"cannot load the {what}: no config of {source!r} found: {where}, or no such repository")


def locate_unet(source: str | Path, **hub_kwargs) -> tuple[str, str | None]:
    """(path or hub id, subfolder) of the UNet in `source`: a bare model folder, a pipeline folder with `unet/`,
    a slimdiff run folder (its `model/`), or a hub id, whose UNet is looked for in `unet/`, then at the top."""
    return locate(source, UNet2DModel, (None, "unet", "model/unet"), ("unet", None), "UNet", **hub_kwargs)


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (False at once under HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def load_unet(source: str | Path, **hub_kwargs) -> ModelMixin:
    """The UNet in `source` as the class its config names (slimdiff or plain diffusers)."""
    with loading(f"the UNet in {source}", FOLDER_FIX):
        location, subfolder = locate_unet(source, **hub_kwargs)
        config = UNet2DModel.load_config(location, subfolder=subfolder, **hub_kwargs)
        class_name = config.get("_class_name")
        if class_name not in UNET_CLASSES:
            raise ModelError(
                f"{source}: {class_name!r} is not a supported UNet; supported: {', '.join(UNET_CLASSES)}"
            )
        # safetensors only: a pickled .bin could run code while loading
        unet = UNET_CLASSES[class_name].from_pretrained(
            location, subfolder=subfolder, use_safetensors=True, **hub_kwargs
        )
    check_finite(unet, Path(location) / (subfolder or ""))
    return unet


def check_finite(model: nn.Module, folder: str | Path) -> None:
    """Refuse a model whose weights hold NaN or ±Inf (a diverged run saved, a damaged copy): every weight of a
    UNet or decoder is on the path of every image, so it would draw only NaN — black images, exit 0 and
    meaningless scores. Refused rather than warned about: nothing it could draw is of use."""
    tensors = model.state_dict()
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ModelError(
            f"{Path(folder) / WEIGHTS_FILE}: {len(bad)} of {len(tensors)} tensors hold NaN or Inf (first: "
            f"{bad[0]}); the model cannot draw images — use an earlier checkpoint or train again"
        )


def scheduler_config(source: str | Path, **hub_kwargs) -> dict:
    """The scheduler config stored with a model; {} when none is stored (a bare UNet folder)."""
    location, subfolder = locate_unet(source, **hub_kwargs)
    if subfolder is None:
        return {}
    path = Path(location) / "scheduler" / "scheduler_config.json"
    if path.is_file():
        with loading(f"the scheduler config {path}", "save the model again or fix the JSON"):
            return json.loads(path.read_text())
    if Path(location).is_dir():
        return {}
    try:
        return dict(DDPMScheduler.load_config(location, subfolder="scheduler", **hub_kwargs))
    except OSError:
        return {}


def load_teacher(source: str | Path, schedule: DDPMScheduler | None = None, **hub_kwargs) -> nn.Module:
    """Any ε-predicting diffusers UNet (slimdiff run/model folder, local diffusers folder, hub id), frozen,
    in eval mode. Given the student's training `schedule`, a teacher that stores another noise schedule is
    refused: on the student's x_t and t it would answer for a different noise level."""
    stored = scheduler_config(source, **hub_kwargs)
    predicts = stored.get("prediction_type", "epsilon")
    if predicts != "epsilon":
        raise ModelError(
            f"teacher {source} predicts {predicts!r}; slimdiff distils ε-prediction teachers only"
        )
    if schedule is not None and stored:
        theirs = DDPMScheduler.from_config(stored).alphas_cumprod
        ours = schedule.alphas_cumprod
        if theirs.shape != ours.shape or not torch.allclose(theirs, ours, rtol=1e-4, atol=1e-7):
            raise ModelError(
                f"teacher {source} was trained with another noise schedule ({_schedule_name(stored)}) than this "
                f"run's ({_schedule_name(schedule.config)}): set train.beta_end (the end of the student's "
                "schedule) to the teacher's"
            )
    return load_unet(source, **hub_kwargs).eval().requires_grad_(False)


def _schedule_name(config) -> str:
    if config.get("trained_betas") is not None:
        return f"{len(config['trained_betas'])} stored β values"
    beta = f"β {config.get('beta_start', 0.0001):g} → {config.get('beta_end', 0.02):g}"
    return f"{config.get('beta_schedule', 'linear')} {beta}, {config.get('num_train_timesteps', 1000)} steps"


def check_compatible(teacher: nn.Module, student: nn.Module) -> None:
    """Teacher and student must share the latent space and take the same condition (none, the same classes, or
    contexts of the same width)."""
    t, s = teacher.config, student.config
    kinds = {name: condition_input(cfg) for name, cfg in (("teacher", t), ("student", s))}
    if kinds["teacher"] != kinds["student"]:
        what = {
            None: "unconditional",
            "class_labels": "class-conditional",
            "encoder_hidden_states": "text-conditional",
        }
        raise ModelError(
            f"the teacher is {what[kinds['teacher']]} but the student is {what[kinds['student']]}: "
            "both must take the same condition"
        )
    for key in ("cross_attention_dim", "num_context_classes", "num_class_embeds"):
        if t.get(key) != s.get(key):
            raise ModelError(
                f"teacher and student differ in {key} ({t.get(key)} vs {s.get(key)}): one condition must fit both"
            )
    for key in ("in_channels", "out_channels", "sample_size"):
        if t.get(key) is not None and s.get(key) is not None and t[key] != s[key]:
            raise ModelError(
                f"teacher and student differ in {key} ({t[key]} vs {s[key]}): they must share one latent space"
            )
