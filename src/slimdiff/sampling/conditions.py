"""What a user asks a conditional model for, turned into pipeline inputs: a class given by number or by
name (the `class_names` in a pipeline's model_index.json, or the `class_names.json` of a run or an older
folder), and prompts read from a file (the pipeline's own tokenizer and text encoder read them)."""

from __future__ import annotations

import json
from pathlib import Path

from slimdiff.data.conditions import metadata_rows
from slimdiff.errors import ConfigError


def _model_folders(model: str | Path) -> list[Path]:
    path = Path(model)
    return [path, path / "model", path.parent]  # a pipeline folder, a run folder, or a pipeline's unet/


def class_names(model: str | Path) -> list[str] | None:
    """The class names saved with a model (model_index.json's `class_names`, or class_names.json), or None."""
    for folder in _model_folders(model):
        index = folder / "model_index.json"
        if index.is_file() and json.loads(index.read_text()).get("class_names"):
            return json.loads(index.read_text())["class_names"]
        if (folder / "class_names.json").is_file():
            return json.loads((folder / "class_names.json").read_text())
    return None


def resolve_label(model: str | Path, label: str) -> int:
    """`label` as a class index: a number, or a class name from the model's class_names.json."""
    if label.isdigit():
        return int(label)
    names = class_names(model)
    if names is None:
        raise ConfigError(
            f"--label {label!r} is a name but {model} has no class names saved; give the class number"
        )
    if label not in names:
        raise ConfigError(f"--label {label!r} is not a class of {model}; classes: {', '.join(names)}")
    return names.index(label)


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a file: one per line (.txt; blank lines skipped), or the `text` field of each line of a
    .jsonl / column of a .csv (the Hugging Face image-folder metadata convention)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompt file {path} does not exist")
    if path.suffix in (".jsonl", ".csv"):
        try:
            rows = metadata_rows(path)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not JSON lines: {error}") from None
        prompts = [row.get("text") if isinstance(row, dict) else None for row in rows]
    else:
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts or any(not isinstance(p, str) for p in prompts):
        raise ConfigError(f"{path} holds no prompts, or a row without a `text` value")
    return prompts
