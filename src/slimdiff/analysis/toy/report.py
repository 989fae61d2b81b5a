"""The toy's report: four panels (data π vs generated shares, the score slice, the score error, the samples'
MSE) and a Markdown table, one column group per width."""

from __future__ import annotations

from pathlib import Path

import torch

from slimdiff.reporting.plots import figure, save


def plot_toy(results: dict[str, dict], path: str | Path) -> Path:
    """Four panels: data π vs generated shares per α; the score slice (true vs each width, density shaded);
    the score error per α; the samples' MSE to their clean signal per α."""
    fig, (ax_pi, ax_slice, ax_score, ax_mse) = figure(width=15.0, height=3.4, ncols=4)
    first = next(iter(results.values()))
    alphas = [r["alpha"] for r in first["rows"]]
    positions = torch.arange(len(alphas)).float()
    width = 0.8 / (len(results) + 1)
    ax_pi.bar(positions, [r["pi"] for r in first["rows"]], width, label="data π", color="0.6")
    for i, (name, result) in enumerate(results.items(), start=1):
        ax_pi.bar(positions + i * width, [r["share"] for r in result["rows"]], width, label=f"{name} samples")
        ax_score.plot(alphas, [r["score_error"] for r in result["rows"]], marker="o", label=name)
        mse = [r["mse"] if r["mse"] is not None else float("nan") for r in result["rows"]]
        ax_mse.plot(alphas, mse, marker="o", label=name)
        ax_slice.plot(result["slice"]["lambda"], result["slice"]["estimated"], label=f"{name} estimate")
    cut = first["slice"]
    ax_slice.plot(cut["lambda"], cut["true"], color="black", linewidth=2, label="true score")
    density = ax_slice.twinx()
    density.fill_between(cut["lambda"], cut["log_density"], min(cut["log_density"]), color="0.85", zorder=0)
    density.set_ylabel("log q(x_t)", fontsize=8)
    ax_slice.set_zorder(density.get_zorder() + 1)
    ax_slice.patch.set_visible(False)
    ax_pi.set_xticks(positions + width * len(results) / 2, [str(a) for a in alphas])
    ax_pi.set_xlabel("signal frequency α")
    ax_pi.set_ylabel("share")
    ax_pi.set_yscale("log")
    ax_slice.set_xlabel(f"λ: α={cut['from_alpha']} (0) → α={cut['to_alpha']} (1), t = {cut['t']}")
    ax_slice.set_ylabel("score along the slice")
    ax_score.set_xlabel("signal frequency α")
    ax_score.set_ylabel("score error E‖ε̂ − ε*‖²/40")
    ax_mse.set_xlabel("signal frequency α")
    ax_mse.set_ylabel("samples' MSE to the clean signal")
    for ax in (ax_score, ax_mse):
        ax.set_yscale("log")
    for ax in (ax_pi, ax_slice, ax_score, ax_mse):
        ax.legend(fontsize=7)
    return save(fig, path)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def toy_table(results: dict[str, dict]) -> list[str]:
    """Markdown rows: per α the data's π, and per width share · dominant = α · MSE · power kept · score error
    (all timesteps / late)."""
    names = list(results)
    head = "share · dominant = α · MSE · power kept · score err (late)"
    lines = [
        "| α | π | " + " | ".join(f"{n}: {head}" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    first = results[names[0]]["rows"]
    for i, row in enumerate(first):
        cells = []
        for name in names:
            r = results[name]["rows"][i]
            cells.append(
                f"{r['share']:.3f} · {_fmt(r['dominant_is_alpha'], 2)} · {_fmt(r['mse'])} · "
                f"{_fmt(r['power_kept'])} · {_fmt(r['score_error'])} ({_fmt(r['score_error_late'])})"
            )
        lines.append(f"| {row['alpha']} | {row['pi']:.3f} | " + " | ".join(cells) + " |")
    return lines
