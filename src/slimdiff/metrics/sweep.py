"""A guidance sweep: one evaluation per classifier-free guidance scale w (each in `out/guidance-W/`, the same
noise, labels and real images every time) and one table with a row per w."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from slimdiff.errors import ConfigError
from slimdiff.metrics.evaluate import NEEDS_SAMPLES, EvalOptions, evaluate
from slimdiff.metrics.protocols import get_protocol
from slimdiff.metrics.summary import SCORE_COLUMNS, score_cell


def parse_scales(text: str) -> list[float]:
    """ "3" or "1,2,3" → [1.0, 2.0, 3.0]; each in [0, 100], no repeats."""
    try:
        scales = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--guidance {text!r}: give a number or comma-separated numbers, e.g. 1,2,3"
        ) from None
    if not scales or any(not 0.0 <= w <= 100.0 for w in scales):
        raise ConfigError(f"--guidance {text!r}: every scale must be between 0 and 100")
    if len(set(scales)) != len(scales):
        raise ConfigError(f"--guidance {text!r} repeats a scale")
    return scales


def folder_name(scale: float) -> str:
    return f"guidance-{scale:g}"


def evaluate_sweep(
    options: EvalOptions,
    out: Path,
    pipeline,
    scales: list[float],
    *,
    track: Callable[[str, int], Callable[[int], None]],
) -> dict:
    """Evaluate resolved `options` once per scale; the metrics that do not sample (MACs, throughput,
    ε-spectrum) run with the first scale only. Writes out/metrics.json ({"sweep": [...]}) and out/summary.md;
    returns the sweep report."""
    rows = []
    for index, scale in enumerate(scales):
        metrics = options.metrics if index == 0 else tuple(m for m in options.metrics if m in NEEDS_SAMPLES)
        if not metrics:
            break
        report = evaluate(
            replace(options, guidance=scale, metrics=metrics, departures=_departures(options, scale)),
            out / folder_name(scale),
            pipeline,
            track=track,
        ).report
        rows.append({"guidance": scale, "folder": folder_name(scale), **report})
    sweep = {"sweep": rows, "target": options.target, "data": options.data}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(sweep, indent=2) + "\n")
    (out / "summary.md").write_text(sweep_summary(options, rows))
    return sweep


def _departures(options: EvalOptions, scale: float) -> tuple[str, ...]:
    """The options' departures from their protocol, with this scale's guidance in place of the first's."""
    published = get_protocol(options.protocol)
    kept = tuple(d for d in options.departures if not d.startswith("guidance "))
    if scale == published.guidance:
        return kept
    return (f"guidance {scale:g} (protocol {published.name}: {published.guidance})", *kept)


def sweep_summary(options: EvalOptions, rows: list[dict]) -> str:
    lines = [
        f"# Guidance sweep of `{options.target}`",
        "",
        f"- data: `{options.data}`; {options.n} images per scale against {options.n_real} real, {options.size}²",
        f"- sampling: {options.scheduler}, {options.steps} steps, η {options.eta}; the same noise and "
        "conditions for every scale",
        "",
        "| w | " + " | ".join(SCORE_COLUMNS.values()) + " | per-class SWD×10³ worst (class) |",
        "|---|" + "---|" * (len(SCORE_COLUMNS) + 1),
    ]
    for row in rows:
        per_class = {name: e["swd"]["mean"] for name, e in row["per_class"].items() if "swd" in e}
        worst = max(per_class, key=per_class.get) if per_class else None
        cells = [f"{row['guidance']:g}"]
        cells += [score_cell(column, row["results"].get(column)) for column in SCORE_COLUMNS]
        cells.append(f"{per_class[worst]:.4g} ({worst})" if worst else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each scale's own report (per-class table, plots): "
        + ", ".join(f"[{row['folder']}]({row['folder']}/summary.md)" for row in rows),
    ]
    lines += [""] + [f"![w = {row['guidance']:g}]({row['folder']}/samples.png)" for row in rows]
    return "\n".join(lines) + "\n"
