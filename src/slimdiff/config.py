"""Run configuration: YAML → dataclasses, validated before anything starts.

An unknown or misspelled key is an error naming the key and the closest valid one; values are type- and
range-checked. A `distill:` section turns a run into distillation (`training.objectives.build_objective`), so
a distillation config can never train plain ε by accident. A command that needs more settings subclasses
`Config` and adds one section; `load_config(path, cls=MyConfig)` then validates it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from slimdiff.errors import ConfigError

# Where distillation reads features (README, "Distillation"): ε, after the last / second last up-sampler, the last down.
DISTILL_POSITIONS = ("output", "feat-up1", "feat-up2", "feat-down4")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class DataConfig:
    source: str = "builtin:textures"  # folder, HF dataset name / dir, builtin:photos, builtin:textures
    size: int = 32  # image side in pixels
    image_column: str = "image"  # HF datasets only
    label_column: str | None = None  # HF datasets: class labels, for conditioning.kind class
    caption_column: str | None = None  # HF datasets: captions, for conditioning.kind text
    strict: bool = False  # a bad image file stops the run instead of being skipped
    length: int | None = None  # cap on images (folder / HF) or number of crops (builtin)
    seed: int = 0  # built-in crops
    num_workers: int = 0  # DataLoader worker processes

    def __post_init__(self):
        _check(8 <= self.size <= 4096, f"data.size must lie in [8, 4096], got {self.size}")
        _check(self.length is None or self.length >= 1, f"data.length must be positive, got {self.length}")
        _check(0 <= self.num_workers <= 64, f"data.num_workers must lie in [0, 64], got {self.num_workers}")


@dataclass
class AutoencoderConfig:
    kind: str = "identity"  # identity (pixel space), vq (VQModel, f4), kl (AutoencoderKL, f8)
    source: str | None = None  # local folder or hub id
    scaling_factor: float | None = None  # None: the model's own for kl, 1.0 for vq
    cache: bool = False  # encode the data set once and keep the latents on disk
    cache_dir: str | None = None  # default: <run.dir>/../.latent-cache

    def __post_init__(self):
        from slimdiff.models.autoencoders import KINDS

        _check(self.kind in KINDS, f"autoencoder.kind {self.kind!r} is not one of {', '.join(KINDS)}")
        _check(
            (self.source is None) == (self.kind == "identity"),
            "autoencoder.source is needed for kind vq / kl and not allowed for identity",
        )
        _check(
            self.scaling_factor is None or self.scaling_factor > 0,
            f"autoencoder.scaling_factor must be positive, got {self.scaling_factor}",
        )


@dataclass
class TrainConfig:
    steps: int = 3000  # optimiser steps
    batch_size: int = 32  # per process and micro-step
    grad_accum: int = 1  # micro-steps per optimiser step
    base_lr: float = 2.5e-5  # lr = base_lr × total batch (batch_size × grad_accum × processes)
    warmup_steps: int = 100  # linear warm-up, then linear decay to 0 at `steps`
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max gradient norm; 0 turns clipping off
    ema_decay: float = 0.999  # reached after an EMA warm-up (decay 1 − (1 + step)^(−2/3))
    mixed_precision: str = "no"  # no, fp16, bf16
    beta_end: float = 0.0195  # end of the √β-linear noise schedule from β_start 0.0015 (LDM Church: 0.0155)
    seed: int = 0

    def __post_init__(self):
        _check(self.steps >= 1, f"train.steps must be at least 1, got {self.steps}")
        _check(
            1 <= self.batch_size <= 65536, f"train.batch_size must lie in [1, 65536], got {self.batch_size}"
        )
        _check(self.grad_accum >= 1, f"train.grad_accum must be at least 1, got {self.grad_accum}")
        _check(0 < self.base_lr < 1, f"train.base_lr must lie in (0, 1), got {self.base_lr}")
        _check(self.warmup_steps >= 0, f"train.warmup_steps must be ≥ 0, got {self.warmup_steps}")
        _check(self.weight_decay >= 0, f"train.weight_decay must be ≥ 0, got {self.weight_decay}")
        _check(
            len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
            f"train.adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}",
        )
        _check(self.grad_clip >= 0, f"train.grad_clip must be ≥ 0, got {self.grad_clip}")
        _check(0 <= self.ema_decay < 1, f"train.ema_decay must lie in [0, 1), got {self.ema_decay}")
        _check(
            self.mixed_precision in ("no", "fp16", "bf16"),
            f"train.mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}",
        )
        _check(0.0015 < self.beta_end < 1, f"train.beta_end must lie in (0.0015, 1), got {self.beta_end}")


@dataclass
class RunConfig:
    dir: str = "runs/tiny"  # run folder: config.yaml, checkpoints/, samples/, logs/, model/
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 3  # the last K checkpoints are kept
    sample_every: int = 500  # steps between sample grids; 0 turns them off
    sample_count: int = 16  # images per grid
    sample_steps: int = 50  # DDIM steps per sample
    log_every: int = 10  # steps between tensorboard scalars

    def __post_init__(self):
        _check(self.checkpoint_every >= 1, f"run.checkpoint_every must be ≥ 1, got {self.checkpoint_every}")
        _check(self.keep_checkpoints >= 1, f"run.keep_checkpoints must be ≥ 1, got {self.keep_checkpoints}")
        _check(self.sample_every >= 0, f"run.sample_every must be ≥ 0, got {self.sample_every}")
        _check(
            1 <= self.sample_count <= 1024, f"run.sample_count must lie in [1, 1024], got {self.sample_count}"
        )
        _check(
            1 <= self.sample_steps <= 1000, f"run.sample_steps must lie in [1, 1000], got {self.sample_steps}"
        )
        _check(self.log_every >= 1, f"run.log_every must be ≥ 1, got {self.log_every}")


@dataclass
class ConditioningConfig:
    """What the UNet is conditioned on; a class model learns a null class and a text model the empty prompt
    (classifier-free guidance)."""

    kind: str | None = None  # none, class, text; None: what the preset takes
    cond_dropout: float = 0.1  # share of samples trained on the null class / empty prompt
    text_encoder: str = (
        "openai/clip-vit-large-patch14"  # CLIP text model + tokenizer (hub id or folder), frozen
    )

    def __post_init__(self):
        kinds = ("none", "class", "text")
        _check(
            self.kind is None or self.kind in kinds,
            f"conditioning.kind must be one of {', '.join(kinds)}, got {self.kind!r}",
        )
        _check(
            0 <= self.cond_dropout < 1,
            f"conditioning.cond_dropout must lie in [0, 1), got {self.cond_dropout}",
        )


@dataclass
class DistillConfig:
    """L = L_ε + λ_s·L_spatial + λ_f·L_freq against a frozen teacher (README, "Distillation")."""

    teacher: str | None = None  # slimdiff run/model folder, local diffusers folder or hub id
    positions: tuple[str, ...] = ("output", "feat-up1")  # from DISTILL_POSITIONS
    lambda_spatial: float = 0.1  # λ_s; 0 switches the spatial term off
    lambda_freq: float = 0.1  # λ_f; 0 switches the frequency term off
    alpha: float = -1.0  # α: exponent of the clean spectrum in ω (< 0 lifts high frequencies)
    delta: float = 1e-3  # δ: keeps ω finite where the spectrum vanishes
    omega: str = "ours"  # ω: ours (normalised, channel mean, + δ) or paper (|F(resize(x0))|^α literally)

    def __post_init__(self):
        _check(self.omega in ("ours", "paper"), f"distill.omega must be ours or paper, got {self.omega!r}")
        unknown = [p for p in self.positions if p not in DISTILL_POSITIONS]
        _check(
            not unknown and bool(self.positions),
            f"distill.positions {list(self.positions)} must be taken from {', '.join(DISTILL_POSITIONS)}",
        )
        for name in ("lambda_spatial", "lambda_freq"):
            _check(getattr(self, name) >= 0, f"distill.{name} must be ≥ 0, got {getattr(self, name)}")
        _check(self.delta > 0, f"distill.delta must be positive, got {self.delta}")


@dataclass
class Config:
    model: str = "tiny-teacher"  # a preset name (slimdiff profile all lists them)
    model_overrides: dict = field(default_factory=dict)  # preset config fields to change
    data: DataConfig = field(default_factory=DataConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    distill: DistillConfig | None = None  # present: distil from distill.teacher instead of plain ε

    def __post_init__(self):
        from slimdiff.models.presets import PRESETS

        _check(self.model in PRESETS, f"model {self.model!r} is not a preset{_suggest(self.model, PRESETS)}")

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plain(value):
    """Tuples → lists so the YAML stays plain and loads back to the same values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _suggest(key: str, valid, prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {prefix + close[0]!r}?" if close else f"; valid: {', '.join(valid)}"


def _coerce(value, hint, where: str):
    """`value` checked against the type `hint` (int, float, str, bool, X | None, tuple, dict, dataclass)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _coerce(value, inner, where)
    if dataclasses.is_dataclass(hint):
        _check(isinstance(value, dict), f"{where} must be a mapping of settings, got {value!r}")
        return from_dict(hint, value, where + ".")
    if origin is tuple or hint is tuple:
        _check(isinstance(value, (list, tuple)), f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        return tuple(
            _coerce(v, args[0] if args else typing.Any, f"{where}[{i}]") for i, v in enumerate(value)
        )
    if hint is dict or origin is dict:
        _check(isinstance(value, dict), f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        _check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
    elif hint is int:
        _check(
            isinstance(value, int) and not isinstance(value, bool),
            f"{where} must be an integer, got {value!r}",
        )
    elif hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            f"{where} must be a number, got {value!r}",
        )
        return float(value)
    elif hint is str:
        _check(isinstance(value, str), f"{where} must be a string, got {value!r}")
    return value


def from_dict(cls: type, data: dict, where: str = ""):
    """An instance of the dataclass `cls` from a mapping; unknown keys and wrong types are `ConfigError`s."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {where + str(key)!r}{_suggest(str(key), names, where)}")
    values = {key: _coerce(value, hints[key], where + key) for key, value in data.items()}
    return cls(**values)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`data` with `key.sub=value` overrides applied (values parsed as YAML: 10, 1e-4, true, null, tiny-sd)."""
    data = _plain(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        _check(bool(sep) and bool(key), f"override {item!r} must look like key=value (e.g. train.steps=100)")
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            _check(isinstance(node, dict), f"override {item!r}: {part} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            first = str(error).splitlines()[0]
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({first}); quote it") from None
    return data


def load_config(path: str | Path | None, overrides: list[str] = (), cls: type[Config] = Config) -> Config:
    """The validated config from a YAML file (None: the defaults) with `overrides` applied."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        _check(path.is_file(), f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
        _check(isinstance(data, dict), f"{path} must hold a mapping of settings at the top level")
    return from_dict(cls, apply_overrides(data, list(overrides)))
