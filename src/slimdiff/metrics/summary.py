"""summary.md of an evaluation: its settings, one row per number, the extra tables and the plots."""

from __future__ import annotations

from slimdiff.config import dotted_keys

# the sample scores shown as table columns (metrics.json key → header), in this order
SCORE_COLUMNS = {"fid": "FID", "kid": "KID", "swd": "SWD×10³", "spectrum_error": "spectrum err low · high"}


def score_cell(column: str, value) -> str:
    """A score of metrics.json as one table cell; "–" when it was not computed."""
    if value is None:
        return "–"
    if column == "kid":
        return f"{value['mean']:.4g} ± {value['std']:.2g}"
    if column == "swd":
        return f"{value['mean']:.4g}"
    if column == "spectrum_error":
        return f"{value['low']:.3g} · {value['high']:.3g}"
    return f"{value:.4g}"


def summary(options, results: dict, skipped: dict, plots: dict, tables: dict, unreadable: list[str]) -> str:
    lines = [f"# Evaluation of `{options.target}`", "", f"- data: `{options.data}`"]
    lines += [
        f"- protocol: {options.protocol}"
        + (f" (departures: {'; '.join(options.departures)})" if options.departures else "")
    ]
    if options.kind == "model":
        lines += [
            f"- sampling: {options.scheduler}, {options.steps} steps, η {options.eta}, guidance {options.guidance}"
        ]
    lines += [f"- images: {options.n} evaluated, {options.n_real} real, {options.size}²"]
    lines += [f"- note: {note}" for note in options.notes]
    if unreadable:
        lines.append(f"- unreadable files skipped: {len(unreadable)}")
    lines += ["", "| metric | value |", "|---|---|"]
    for key, value in dotted_keys(results, keep_lists=False).items():
        lines.append(f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |")
    for title, rows in tables.items():
        lines += ["", f"{title}:", "", *rows]
    if skipped:
        lines += ["", "Not computed:", ""] + [f"- **{name}**: {why}" for name, why in skipped.items()]
    lines += [""] + [f"![{name}]({file})" for name, file in plots.items()]
    return "\n".join(lines) + "\n"
