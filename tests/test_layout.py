"""The package's shape (docs/architecture.md): imports run one way through the layers, no two modules import
each other (in slimdiff or in benchmarks, at module level or inside functions), modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "slimdiff"
BENCHMARKS = ROOT / "benchmarks"
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


def _import_nodes(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in `path`, at module level or inside functions, leaving out `if TYPE_CHECKING:`
    blocks (annotations only: never run)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skipped
    ]


def _runtime_imports(path: Path) -> set[str]:
    """slimdiff modules imported by `path`, leaving out `if TYPE_CHECKING:` blocks (annotations only)."""
    found = set()
    for node in _import_nodes(path):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slimdiff"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("slimdiff")}
    return found


def _module_names(tree: Path, top: Path) -> dict[str, Path]:
    """Dotted name → file of every module under `tree`, named from `top` (a package is its __init__.py)."""
    names = {}
    for path in sorted(tree.rglob("*.py")):
        parts = path.relative_to(top).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _import_graph(tree: Path, top: Path) -> dict[str, set[str]]:
    """Module → the modules of the same tree it imports. `from a.b import c` counts as importing a.b.c when
    that is a module, else a.b; a parent package that Python runs first on the way is not counted."""
    modules = _module_names(tree, top)
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in _import_nodes(path):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
                continue
            base = node.module or ""
            if node.level:  # relative: from the importing module's package, one level up per extra dot
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None (depth-first search, modules in name order)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" when fully explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported) :] + [imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


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


@pytest.mark.parametrize("tree", [PACKAGE, BENCHMARKS], ids=["slimdiff", "benchmarks"])
def test_no_import_cycles(tree):
    cycle = _find_cycle(_import_graph(tree, tree.parent))
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "__init__.py").write_text('"""Runs nothing."""\n')
    (study / "plan.py").write_text("from study.runner import run\n")
    (study / "runner.py").write_text("def run():\n    from study import plan\n")
    (study / "report.py").write_text("from .plan import run\nimport study.runner\n")
    graph = _import_graph(study, tmp_path)
    assert graph == {
        "study": set(),
        "study.plan": {"study.runner"},
        "study.runner": {"study.plan"},
        "study.report": {"study.plan", "study.runner"},
    }
    assert _find_cycle(graph) == ["study.plan", "study.runner", "study.plan"]
    (study / "runner.py").write_text("def run():\n    import study\n")  # the package, not plan: no cycle
    assert _find_cycle(_import_graph(study, tmp_path)) is None
