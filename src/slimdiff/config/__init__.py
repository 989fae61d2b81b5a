"""Run configuration: YAML → validated dataclasses. `sections` holds the dataclasses and every rule about a
setting; `loading` reads YAML and `--set` overrides into them."""

from slimdiff.config.loading import apply_overrides, dotted_keys, from_dict, load_config
from slimdiff.config.sections import (
    CONSISTENCY_GRID,
    DISTILL_POSITIONS,
    LR_SCHEDULES,
    OMEGA_FORMS,
    AutoencoderConfig,
    ConditioningConfig,
    Config,
    DataConfig,
    DistillConfig,
    RunConfig,
    TrainConfig,
)
from slimdiff.errors import ConfigError

__all__ = [
    "CONSISTENCY_GRID",
    "DISTILL_POSITIONS",
    "LR_SCHEDULES",
    "OMEGA_FORMS",
    "AutoencoderConfig",
    "Config",
    "ConditioningConfig",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "RunConfig",
    "TrainConfig",
    "dotted_keys",
    "apply_overrides",
    "from_dict",
    "load_config",
]
