"""What an image is conditioned on: class labels and captions, found the way the ecosystem lays them out.

- Class labels from an image folder `root/<class name>/…` (the class list is the sorted folder names), from a
  Hugging Face dataset's label column, or from a built-in labelled set.
- Captions from a folder's `metadata.jsonl` / `metadata.csv` (`file_name` + `text`, the Hugging Face
  image-folder convention) or from a dataset's caption column.

Every problem is a one-line DataError before training starts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from slimdiff.errors import DataError

KINDS = ("none", "class", "text")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")


def folder_classes(root: Path, paths: list[Path]) -> tuple[list[int], list[str]]:
    """(label per path, sorted class names) from the first folder level below `root`."""
    outside = [p for p in paths if len(p.relative_to(root).parts) < 2]
    if outside:
        raise DataError(
            f"{outside[0]} lies outside a class folder; class labels need root/<class name>/… ({len(outside)} such file(s))"
        )
    names = sorted({p.relative_to(root).parts[0] for p in paths})
    if len(names) < 2:
        raise DataError(f"{root} holds one class folder ({names[0]}); class conditioning needs at least two")
    index = {name: i for i, name in enumerate(names)}
    return [index[p.relative_to(root).parts[0]] for p in paths], names


def metadata_rows(path: Path) -> list:
    """The rows of a .jsonl (one JSON value per line) or .csv (dicts by header) metadata file."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _read_metadata(root: Path) -> dict[str, str]:
    for name in METADATA_FILES:
        path = root / name
        if not path.is_file():
            continue
        rows = metadata_rows(path)
        if rows and not {"file_name", "text"} <= set(rows[0]):
            raise DataError(f"{path} needs the columns file_name and text, got {', '.join(rows[0])}")
        return {str(row["file_name"]): str(row["text"]) for row in rows}
    raise DataError(f"{root} has no {' or '.join(METADATA_FILES)} with the captions (file_name, text)")


def folder_captions(root: Path, paths: list[Path]) -> list[str]:
    """The caption of each path from the folder's metadata file (paths relative to `root`)."""
    captions = _read_metadata(root)
    keys = [p.relative_to(root).as_posix() for p in paths]
    missing = [k for k in keys if k not in captions]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) in {root} have no caption in its metadata, e.g. {missing[0]}"
        )
    return [captions[k] for k in keys]


def column_conditions(table, source: str, kind: str, column: str | None) -> tuple[list, list[str] | None]:
    """(condition per row, class names or None) from a Hugging Face dataset's label or caption column."""
    setting = "data.label_column" if kind == "class" else "data.caption_column"
    if column is None:
        raise DataError(f"{kind} conditioning on dataset {source!r} needs {setting}")
    if column not in table.column_names:
        raise DataError(
            f"dataset {source!r} has no column {column!r} ({setting}); columns: {', '.join(table.column_names)}"
        )
    values = list(table[column])
    if kind == "text":
        return [str(v) for v in values], None
    feature = table.features[column]
    names = list(getattr(feature, "names", None) or [str(v) for v in sorted(set(values))])
    if not getattr(feature, "names", None):
        index = {v: i for i, v in enumerate(sorted(set(values)))}
        values = [index[v] for v in values]
    if len(names) < 2:
        raise DataError(
            f"dataset {source!r} has one class in {column!r}; class conditioning needs at least two"
        )
    return [int(v) for v in values], names
