"""Run configs from YAML: unknown keys, wrong types and `--set key=value` overrides, checked before anything
starts.

An unknown or misspelled key is an error naming the key and the closest valid one; values are type-checked
here and range-checked by their section (`config.sections`). A command that needs more settings subclasses
`Config` and adds one section; `load_config(path, cls=MyConfig)` then validates it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from pathlib import Path

import yaml

from slimdiff.config.sections import Config, check, plain, suggest
from slimdiff.errors import ConfigError


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
        check(isinstance(value, dict), f"{where} must be a mapping of settings, got {value!r}")
        return from_dict(hint, value, where + ".")
    if origin is tuple or hint is tuple:
        check(isinstance(value, (list, tuple)), f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        return tuple(
            _coerce(v, args[0] if args else typing.Any, f"{where}[{i}]") for i, v in enumerate(value)
        )
    if hint is dict or origin is dict:
        check(isinstance(value, dict), f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
    elif hint is int:
        check(
            isinstance(value, int) and not isinstance(value, bool),
            f"{where} must be an integer, got {value!r}",
        )
    elif hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        check(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            f"{where} must be a number, got {value!r}",
        )
        return float(value)
    elif hint is str:
        check(isinstance(value, str), f"{where} must be a string, got {value!r}")
    return value


def from_dict(cls: type, data: dict, where: str = ""):
    """An instance of the dataclass `cls` from a mapping; unknown keys and wrong types are `ConfigError`s."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key {where + str(key)!r}{suggest(str(key), names, where)}")
    values = {key: _coerce(value, hints[key], where + key) for key, value in data.items()}
    return cls(**values)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`data` with `key.sub=value` overrides applied (values parsed as YAML: 10, 1e-4, true, null,
    tiny-sd)."""
    data = plain(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        check(bool(sep) and bool(key), f"override {item!r} must look like key=value (e.g. train.steps=100)")
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            check(isinstance(node, dict), f"override {item!r}: {part} is not a section")
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
        check(path.is_file(), f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
        check(isinstance(data, dict), f"{path} must hold a mapping of settings at the top level")
    return from_dict(cls, apply_overrides(data, list(overrides)))
