"""Run configs from YAML: unknown keys, wrong types and `--set key=value` overrides, checked before anything
starts.

An unknown or misspelled key is an error naming the key and the closest valid one; values are type-checked
here and range-checked by their section (`config.sections`). YAML is read by `parse_yaml`, which refuses what
a hostile file could use before anything is expanded: aliases of lists or mappings (a few hundred bytes of
nested aliases expand to gigabytes) and duplicate keys (YAML would silently keep the last). A command that needs more settings subclasses
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

MAX_CONFIG_BYTES = 1 << 20  # a config is a page of settings


class _StrictLoader(yaml.SafeLoader):
    """safe_load's loader that refuses aliases of collections and duplicate keys."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and not isinstance(target, yaml.ScalarNode):
                raise ConfigError(
                    f"line {event.start_mark.line + 1}: the alias *{event.anchor} stands for a list or mapping; "
                    "slimdiff configs allow aliases of plain values only (write the settings out)"
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: the key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str):
    """The value a YAML text holds, read with `_StrictLoader`; `where` names it in the one-line errors."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 — a SafeLoader subclass
    except ConfigError as error:
        raise ConfigError(f"{where}, {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{where} is not valid YAML: {str(error).splitlines()[0]}") from None


def read_config_file(path: Path) -> dict:
    """The settings mapping of a YAML config file, with one line for each way the file can be unusable."""
    check(path.exists(), f"config file {path} does not exist")
    check(not path.is_dir(), f"config file {path} is a folder; pass a YAML file (e.g. configs/tiny.yaml)")
    size = path.stat().st_size
    check(size <= MAX_CONFIG_BYTES, f"config file {path} is {size} bytes; a config is at most 1 MiB")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from None
    data = parse_yaml(text, str(path))
    check(data is not None, f"config file {path} is empty; write its settings (see configs/tiny.yaml)")
    check(isinstance(data, dict), f"{path} must hold a mapping of settings at the top level")
    return data


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


def dotted_keys(tree: dict, keep_lists: bool = True, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}, the names `--set` takes; an empty dict stays a value. Lists are values
    too, or left out with `keep_lists=False` (an evaluation's per-bucket tables)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(dotted_keys(value, keep_lists, f"{prefix}{key}."))
        elif keep_lists or not isinstance(value, list):
            flat[f"{prefix}{key}"] = value
    return flat


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
            node[leaf] = parse_yaml(raw, f"override {item!r}")
        except ConfigError as error:
            raise ConfigError(f"{error}; quote the value") from None
    return data


def load_config(path: str | Path | None, overrides: list[str] = (), cls: type[Config] = Config) -> Config:
    """The validated config from a YAML file (None: the defaults) with `overrides` applied."""
    data = read_config_file(Path(path)) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides)))
