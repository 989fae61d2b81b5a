"""`slimdiff analyze wiener|toy|blur …`: the paper's frequency analyses, each writing a plot and a table.

Every run writes config.json first, then <name>.json (all numbers), <name>.md (the table) and <name>.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from slimdiff.cli.app import app, console, say, user_errors

analyze_app = typer.Typer(help="The paper's frequency analyses: wiener, toy, blur.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")

OUT_HELP = "output folder"
PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def _start(out: Path, config: dict) -> None:
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
    from slimdiff.sampling.schedule import training_scheduler

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
    seed: int = typer.Option(0, "--seed", min=0),
    threads: int = typer.Option(
        1, "--threads", min=1, max=256, help="torch threads (tiny matmuls: 1 is fastest)"
    ),
) -> None:
    """The toy experiment: cos(α·2πx) signals, an MLP 41 → M → 40 per width M, per-α reconstruction."""
    from slimdiff.analysis.toy import ALPHAS, ToyConfig, plot_toy, toy_experiment

    _start(
        out,
        {
            "analysis": "toy",
            "hidden": hidden,
            "iterations": iterations,
            "batch": batch,
            "samples": samples,
            "sampling_steps": sampling_steps,
            "seed": seed,
            "threads": threads,
        },
    )
    results, previous_threads = {}, torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with Progress(*PROGRESS_COLUMNS, console=console, transient=True) as progress:
            for width in hidden:
                cfg = ToyConfig(width, iterations, batch, 1e-3, samples, sampling_steps, seed)
                task = progress.add_task(f"M={width}", total=iterations)
                results[f"M={width}"] = toy_experiment(
                    cfg, lambda it, _loss, task=task: progress.update(task, completed=it)
                )
    finally:
        torch.set_num_threads(previous_threads)
    plot_toy(results, out / "toy.png")
    table = [
        f"Toy experiment: {iterations} iterations, batch {batch}, {samples} samples, {sampling_steps} DDPM steps",
        "",
        "| α | " + " | ".join(f"{name}: share · dominant = α · MSE · power kept" for name in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for i, alpha in enumerate(ALPHAS):
        cells = []
        for result in results.values():
            r = result["rows"][i]
            cells.append(
                f"{r['share']:.2f} · {_fmt(r['dominant_is_alpha'], 2)} · {_fmt(r['mse'])} · {_fmt(r['power_kept'])}"
            )
        table.append(f"| {alpha} | " + " | ".join(cells) + " |")
    table.append("")
    table.append(
        "final training loss: " + ", ".join(f"{k} {v['losses'][-1]:.4f}" for k, v in results.items())
    )
    _finish(out, "toy", results, table)


@analyze_app.command("blur")
def blur(
    data: str = typer.Argument(..., help="images: folder, HF dataset, builtin:photos|textures"),
    out: Path = typer.Option(Path("analysis/blur"), "--out", help=OUT_HELP),
    n: int = typer.Option(
        512, "-n", min=4, max=100_000, help="images (split into reference and blurred halves)"
    ),
    size: int = typer.Option(32, "--size", min=8, max=1024, help="image side"),
    inception_weights: Path | None = typer.Option(
        None, "--inception-weights", help="local Inception weights file"
    ),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """A metric between real and Gaussian-blurred real images over σ² (kernel 9): SWD always, FID when the
    Inception weights are available (the paper's supplementary Figure 1)."""
    from slimdiff.analysis.blur import KERNEL, SIGMA2, blur_sensitivity, plot_blur
    from slimdiff.metrics import fid
    from slimdiff.metrics.swd import swd

    config = {
        "analysis": "blur",
        "data": data,
        "n": n,
        "size": size,
        "kernel": KERNEL,
        "sigma2": SIGMA2,
        "seed": seed,
    }
    _start(out, config)
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
    with Progress(*PROGRESS_COLUMNS, console=console, transient=True) as progress:
        task = progress.add_task("blur levels", total=len(SIGMA2))
        rows = blur_sensitivity(images, metrics, SIGMA2, progress=lambda: progress.advance(task))
    plot_blur(rows, out / "blur.png")
    names = [k for k in rows[0] if k != "sigma2"]
    table = [
        f"Blur sensitivity on `{data}` ({n // 2} reference vs {n // 2} blurred images, {size}², kernel {KERNEL})",
        "",
        "| σ² | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    table += [f"| {r['sigma2']} | " + " | ".join(f"{r[k]:.4g}" for k in names) + " |" for r in rows]
    if skipped:
        table += ["", skipped]
    _finish(out, "blur", {"rows": rows, "skipped": skipped}, table)
