"""`slimdiff analyze wiener|toy|blur …`: the paper's frequency analyses, each writing a plot and a table.

Every run writes config.json first, then <name>.json (all numbers), <name>.md (the table) and <name>.png.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import typer

from slimdiff.analysis.blur import SIGMA2
from slimdiff.cli.app import app, say, user_errors
from slimdiff.errors import ConfigError, check_output_folder
from slimdiff.reporting.progress import progress_bar, progress_bars

analyze_app = typer.Typer(help="The paper's frequency analyses: wiener, toy, blur.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")

OUT_HELP = "output folder"


def _start(out: Path, config: dict) -> None:
    with user_errors():
        check_output_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _finish(out: Path, name: str, result: dict, table: list[str]) -> None:
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(table) + "\n")
    say("\n".join(table))
    say(f"wrote {out / name}.png, .md and .json")


def _load(data: str, size: int, n: int, seed: int) -> torch.Tensor:
    from slimdiff.data.datasets import load_images

    with user_errors():
        return load_images(data, size, n, seed=seed)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


@analyze_app.command("wiener")
def wiener(
    data: str = typer.Argument(..., help="images: folder, HF dataset, builtin:photos|textures"),
    out: Path = typer.Option(Path("analysis/wiener"), "--out", help=OUT_HELP),
    n: int = typer.Option(512, "-n", min=2, max=100_000, help="images to use"),
    size: int = typer.Option(64, "--size", min=8, max=1024, help="image side"),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Optimal linear denoiser H_t(f) = 1/(ᾱ|X0(f)|² + 1 − ᾱ) of the data, its pass-band over ᾱ, and a
    least-squares filter fitted on noisy images against it (the paper's Figure 3)."""
    from slimdiff.analysis.wiener import TIMESTEPS, plot_wiener, wiener_analysis
    from slimdiff.diffusion import training_scheduler

    _start(
        out, {"analysis": "wiener", "data": data, "n": n, "size": size, "seed": seed, "timesteps": TIMESTEPS}
    )
    images = _load(data, size, n, seed)
    alpha_bar = training_scheduler().alphas_cumprod
    result = wiener_analysis(images, {t: alpha_bar[t].item() for t in TIMESTEPS}, seed=seed)
    plot_wiener(result, out / "wiener.png")
    table = [
        f"Wiener view of `{data}` ({n} images, {size}²): pass-band 1 − (1−ᾱ)H_t(f); LS fit vs closed form",
        "",
        "| t | ᾱ | radius where pass-band < ½ | LS fit: mean gap | max gap |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        table.append(
            f"| {row['t']} | {row['alpha_bar']:.4f} | {_fmt(row['half_power_radius'])} | "
            f"{row['fit_mean_gap']:.4f} | {row['fit_max_gap']:.4f} |"
        )
    _finish(out, "wiener", result, table)


@analyze_app.command("toy")
def toy(
    out: Path = typer.Option(Path("analysis/toy"), "--out", help=OUT_HELP),
    hidden: list[int] = typer.Option([64, 1024], "--hidden", min=1, max=65_536, help="MLP widths M (repeat)"),
    iterations: int = typer.Option(10_000, "--iterations", min=1, max=1_000_000),
    batch: int = typer.Option(1000, "--batch", min=1, max=100_000),
    samples: int = typer.Option(1000, "--samples", min=1, max=1_000_000),
    sampling_steps: int = typer.Option(1000, "--sampling-steps", min=1, max=1000),
    tail: float = typer.Option(
        2.0, "--tail", min=0.0, max=10.0, help="long tail: pattern k drawn ∝ rank^(−tail); 0 = uniform"
    ),
    rare: str = typer.Option("high", "--rare", help="which frequencies are rare: high or low"),
    seed: int = typer.Option(0, "--seed", min=0),
    threads: int = typer.Option(
        1, "--threads", min=1, max=256, help="torch threads (tiny matmuls: 1 is fastest)"
    ),
) -> None:
    """The toy experiment: long-tailed cos(α·2πx) signals, an MLP 41 → M → 40 per width M; per-α samples and
    score error against the true score of the mixture."""
    from slimdiff.analysis.toy.denoiser import ToyConfig
    from slimdiff.analysis.toy.experiment import toy_experiment
    from slimdiff.analysis.toy.report import plot_toy, toy_table
    from slimdiff.metrics.complexity import torch_threads

    configs = []
    with user_errors():
        for width in hidden:
            try:
                configs.append(
                    ToyConfig(width, iterations, batch, 1e-3, samples, sampling_steps, seed, tail, rare)
                )
            except ValueError as error:
                raise ConfigError(str(error)) from None
    _start(
        out,
        {
            "analysis": "toy",
            **{k: v for k, v in asdict(configs[0]).items() if k != "hidden"},
            "hidden": hidden,
            "threads": threads,
        },
    )
    results = {}
    with torch_threads(threads):
        for cfg in configs:
            with progress_bar(f"M={cfg.hidden}", iterations) as bar:  # told the iteration every log step
                results[f"M={cfg.hidden}"] = toy_experiment(
                    cfg, lambda it, _loss, bar=bar: bar.update(it - bar.n)
                )
    plot_toy(results, out / "toy.png")
    table = [
        f"Toy experiment: tail {tail} (rare: {rare} frequencies), {iterations} iterations, batch {batch}, "
        f"{samples} samples, {sampling_steps} DDPM steps",
        "",
        *toy_table(results),
        "",
        "final training loss: " + ", ".join(f"{k} {v['losses'][-1]:.4f}" for k, v in results.items()),
    ]
    _finish(out, "toy", results, table)


@analyze_app.command("blur")
def blur(
    data: str = typer.Argument(..., help="images: folder, HF dataset, builtin:photos|textures"),
    out: Path = typer.Option(Path("analysis/blur"), "--out", help=OUT_HELP),
    n: int = typer.Option(512, "-n", min=4, max=100_000, help="images"),
    size: int = typer.Option(32, "--size", min=8, max=1024, help="image side"),
    sigma2: list[float] = typer.Option(
        list(SIGMA2), "--sigma2", min=0.0, max=100.0, help="blur variances σ² (repeat)"
    ),
    pairing: str = typer.Option(
        "same",
        "--pairing",
        help="same: the images vs themselves blurred (the paper's); halves: one half vs the other",
    ),
    inception_weights: Path | None = typer.Option(
        None, "--inception-weights", help="local Inception weights file"
    ),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """A metric between real images and Gaussian-blurred real images over σ² (kernel 9): SWD always, FID when
    the Inception weights are available (the paper's supplementary Figure 1), with the two-halves floor."""
    from slimdiff.analysis.blur import KERNEL, PAIRINGS, blur_sensitivity, plot_blur
    from slimdiff.metrics import fid
    from slimdiff.metrics.swd import swd

    with user_errors():
        if pairing not in PAIRINGS:
            raise ConfigError(f"unknown --pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")
    config = {"analysis": "blur", "data": data, "n": n, "size": size, "kernel": KERNEL, "sigma2": sigma2}
    _start(out, {**config, "pairing": pairing, "seed": seed})
    images = _load(data, size, n, seed)
    metrics = {"SWD": lambda a, b: swd(a, b, seed=seed)}
    skipped = None
    try:
        extractor = fid.inception_extractor(inception_weights)
        metrics["FID"] = lambda a, b: fid.fid_from_features(
            fid.extract_features(a, extractor), fid.extract_features(b, extractor)
        )
    except fid.FIDUnavailable as error:
        skipped = f"FID not computed: {error}"
        say(skipped, style="yellow")
    with progress_bars() as track:
        advance = track("blur levels", len(sigma2) + 1)
        rows = blur_sensitivity(images, metrics, tuple(sigma2), progress=advance, pairing=pairing)
        floor = blur_sensitivity(images, metrics, (0.0,), progress=advance, pairing="halves")[0]
    plot_blur(rows, out / "blur.png", floor=floor)
    names = [k for k in rows[0] if k != "sigma2"]
    compared = (
        f"{n} images vs the same images blurred" if pairing == "same" else f"{n // 2} vs {n // 2} blurred"
    )
    table = [
        f"Blur sensitivity on `{data}` ({compared}, {size}², kernel {KERNEL})",
        "",
        "| σ² | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    table += [f"| {r['sigma2']} | " + " | ".join(f"{r[k]:.4g}" for k in names) + " |" for r in rows]
    table.append("| floor: two halves, σ² = 0 | " + " | ".join(f"{floor[k]:.4g}" for k in names) + " |")
    if skipped:
        table += ["", skipped]
    _finish(out, "blur", {"rows": rows, "floor": floor, "pairing": pairing, "skipped": skipped}, table)
