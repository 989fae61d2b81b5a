"""`slimdiff profile PRESET…|MODEL|all`: params and MACs next to the paper's, and steps/s here."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from slimdiff.cli.app import app, console, fail, user_errors
from slimdiff.metrics.complexity import count_macs_by_kind, steps_per_second
from slimdiff.models.presets import PRESETS, Preset
from slimdiff.models.size import count_params
from slimdiff.reporting.progress import progress_bar


def _delta(ours: float, paper: float | None) -> str:
    return "" if paper is None else f"{100 * (ours - paper) / paper:+.1f}%"


def _fmt(value: float | None, unit: float, suffix: str) -> str:
    return "—" if value is None else f"{value / unit:.2f}{suffix}"


def _preset_for_model(path: Path) -> Preset:
    from slimdiff.models.loading import load_unet

    return Preset.of_model(str(path), load_unet(path))


def _macs(model, preset: Preset) -> dict:
    # The paper counts convolutions and linear layers; attention matmuls are reported beside them.
    kinds = count_macs_by_kind(model, preset.example_inputs(1))
    return {"macs": kinds["conv_linear"], "attention_macs": kinds["attention"]}


def profile_row(preset: Preset, batch: int, seconds: float) -> dict:
    model = preset.build()
    inputs = preset.example_inputs(batch)
    return {
        "preset": preset.name,
        "params": count_params(model),
        "params_paper": preset.params_paper,
        **_macs(model, preset),
        "macs_paper": preset.macs_paper,
        "steps_per_s": steps_per_second(model, inputs, min_seconds=seconds) if seconds > 0 else None,
    }


@app.command()
def profile(
    targets: list[str] = typer.Argument(..., help="preset names, local model folders, or 'all'"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON list of rows instead of a table"),
    batch: int = typer.Option(1, min=1, max=256, help="batch size for the steps/s measurement"),
    seconds: float = typer.Option(1.0, min=0.0, max=60.0, help="time per steps/s measurement; 0 skips it"),
) -> None:
    """Parameters and MACs of one UNet step (ours vs the paper's) and UNet steps/s on this machine."""
    names = list(PRESETS) if targets == ["all"] else targets
    presets = []
    for name in names:
        if name in PRESETS:
            presets.append(PRESETS[name])
        elif Path(name).is_dir():
            with user_errors():
                presets.append(_preset_for_model(Path(name)))
        else:
            fail(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}, all, or a model folder")
    rows = [
        profile_row(p, batch, seconds)
        for p in progress_bar("profiling", iterable=presets, disable=True if as_json else None)
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        title=f"MACs of one UNet step (conv + linear, as the paper counts; attention apart), steps/s at batch {batch}"
    )
    for column in ("preset", "params", "paper", "Δ", "MACs", "paper", "Δ", "+attention", "steps/s"):
        table.add_column(column, justify="left" if column == "preset" else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            Text(r["preset"]),
            _fmt(r["params"], 1e6, "M"),
            _fmt(r["params_paper"], 1e6, "M"),
            _delta(r["params"], r["params_paper"]),
            _fmt(r["macs"], 1e9, "G"),
            _fmt(r["macs_paper"], 1e9, "G"),
            _delta(r["macs"], r["macs_paper"]),
            _fmt(r["attention_macs"], 1e9, "G"),
            "—" if r["steps_per_s"] is None else f"{r['steps_per_s']:.2f}",
        )
    console.print(table)
