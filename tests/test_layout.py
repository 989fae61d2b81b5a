"""The package's shape (docs/architecture.md): imports run one way through the layers, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "slimdiff"
# Lower layers never import higher ones; see docs/architecture.md for why sampling comes before training.
LAYERS = [
    # the forward process and its noise schedule: pure functions that the config, training and sampling share
    {"errors", "wavelets", "diffusion", "reporting"},
    {"data"},
    {"models"},
    {"config"},
    {"sampling"},
    # the package root re-exports the models and the pipeline, and registers them with diffusers on import
    {"__init__"},
    {"training"},
    {"metrics"},
    # export folders, ONNX / int8 graphs, slim decoders and `slimdiff sample`'s folder: built on sampling, trained
    # with training's frequency loss, measured with metrics (docs/architecture.md)
    {"deploy"},
    {"analysis"},
    {"demo"},
    {"serve"},  # slimdiff serve's page and server
    {"cli"},
    {"__main__"},
]
MAX_LINES = 300


def _unit(module: str) -> str:
    """slimdiff.training.loop → training; slimdiff.config → config."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _runtime_imports(path: Path) -> set[str]:
    """slimdiff modules imported by `path`, leaving out `if TYPE_CHECKING:` blocks (annotations only)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slimdiff"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("slimdiff")}
    return found


def _name(path: Path) -> str:
    return ".".join(("slimdiff", *path.relative_to(PACKAGE).with_suffix("").parts))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    own = _unit(_name(path))
    for imported in _runtime_imports(path):
        other = _unit(imported)
        assert other == own or _layer(other) < _layer(own), (
            f"{_name(path)} (layer {_layer(own)}: {own}) imports {imported} (layer {_layer(other)}: {other})"
        )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_readable_in_one_sitting(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_every_package_folder_is_a_known_layer():
    units = {_unit(_name(p)) for p in _modules()}
    assert units <= set().union(*LAYERS), units - set().union(*LAYERS)


def test_the_checker_sees_a_backward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import slimdiff.cli\nfrom slimdiff.training.loop import train\n"
    )
    assert _runtime_imports(bad) == {"slimdiff.training.loop"}
    assert _layer(_unit("slimdiff.training.loop")) > _layer(_unit("slimdiff.data.datasets"))
