"""Sampler quality against wall time on a trained teacher and slim student, trajectory stitching, and
onnxruntime vs PyTorch UNet steps/s — side by side in one run.

    python -m benchmarks.samplers --teacher PATH --student PATH [--n 16] [--batch 8] [--data builtin:textures]

Every setting starts from the same initial noise. Quality columns:
- MSE to the teacher's 1000-step reference from the same noise. The reference is DDIM with η = 0 — the
  deterministic 1000-step limit that DDIM, DPM-Solver++ and UniPC all approximate; the 1000-step ancestral
  DDPM row shows how far a stochastic 1000-step sampler lands from it (its own noise, not solver error).
- MSE to the model's own 1000-step reference: the solver's discretisation error alone.
- Spectrum error (mean |Δ log10 power| in the low / high half of the radial spectrum) and SWD ×10³ of the
  Laplacian-pyramid patches, both against `--n` images of the training data.
Wall time: the noise is split into chunks and every chunk runs through every setting in a rotating order,
so load from other processes hits all settings alike; times are given relative to teacher DDIM-50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks.machine import RESULTS, describe_machine, write_result
from slimdiff.sampling.pipeline import SlimDiffusionPipeline, load_pipeline

BASELINE = "teacher DDIM-50"


@dataclass(frozen=True)
class Setting:
    model: str  # teacher, student, or stitch (student for the first `fraction` of the steps, then teacher)
    sampler: str
    steps: int
    fraction: float | None = None

    @property
    def label(self) -> str:
        name = {"ddim": "DDIM", "ddpm": "DDPM", "dpm++": "DPM++", "unipc": "UniPC"}[self.sampler]
        stitch = f" (student {self.fraction:.0%})" if self.fraction is not None else ""
        return f"{self.model} {name}-{self.steps}{stitch}"


def settings(ddpm_reference: bool) -> list[Setting]:
    solvers = [
        ("ddim", 20),
        ("ddim", 50),
        ("ddim", 200),
        ("dpm++", 10),
        ("dpm++", 20),
        ("unipc", 10),
        ("unipc", 20),
    ]
    rows = [Setting(model, "ddim", 1000) for model in ("teacher", "student")]
    if ddpm_reference:
        rows.append(Setting("teacher", "ddpm", 1000))
    rows += [Setting(model, s, n) for model in ("teacher", "student") for s, n in solvers]
    rows += [Setting("stitch", "ddim", 50, f) for f in (0.25, 0.5, 0.75)]
    return rows


def draw(
    setting: Setting, pipes: dict[str, SlimDiffusionPipeline], noise: torch.Tensor, seed: int
) -> torch.Tensor:
    """Images in [-1, 1] of one setting from `noise`."""
    stitch = None
    pipe = pipes["student" if setting.model == "stitch" else setting.model]
    if setting.model == "stitch":
        stitch = (pipes["teacher"].unet, setting.fraction)
    images = pipe(
        batch_size=len(noise),
        num_inference_steps=setting.steps,
        sampler=setting.sampler,
        generator=torch.Generator().manual_seed(seed),
        latents=noise,
        stitch=stitch,
        output_type="pt",
    ).images
    return images * 2 - 1


def sample_all(rows: list[Setting], pipes, noise: torch.Tensor, batch: int) -> tuple[dict, dict]:
    images, seconds = defaultdict(list), defaultdict(float)
    chunks = noise.split(batch)
    for c, chunk in enumerate(chunks):
        order = rows[c % len(rows) :] + rows[: c % len(rows)]
        for setting in order:
            start = time.perf_counter()
            images[setting.label].append(draw(setting, pipes, chunk, seed=c))
            seconds[setting.label] += time.perf_counter() - start
            print(f"  chunk {c + 1}/{len(chunks)}: {setting.label}", file=sys.stderr, flush=True)
    return {k: torch.cat(v) for k, v in images.items()}, dict(seconds)


def quality(rows, images, seconds, real, n) -> list[dict]:
    from slimdiff.metrics.spectrum import spectrum_error
    from slimdiff.metrics.swd import swd

    teacher_ref = images["teacher DDIM-1000"]
    own_ref = {"teacher": teacher_ref, "student": images["student DDIM-1000"]}
    base = seconds[BASELINE]
    table = []
    for s in rows:
        x = images[s.label]
        spectrum = spectrum_error(real, x)
        table.append(
            {
                **asdict(s),
                "label": s.label,
                "seconds_per_image": seconds[s.label] / n,
                "time_vs_baseline": seconds[s.label] / base,
                "mse_teacher_ref": float((x - teacher_ref).square().mean()),
                "mse_own_ref": float((x - own_ref[s.model]).square().mean()) if s.model in own_ref else None,
                "spectrum_low": spectrum["low"],
                "spectrum_high": spectrum["high"],
                "swd": swd(real, x)["mean"],
            }
        )
    return table


def onnx_speed(pipes, batches: list[int], rounds: int, threads: int, window: float) -> list[dict]:
    """UNet steps/s of PyTorch and of the exported graph on onnxruntime, interleaved round by round."""
    from slimdiff.deploy.onnx_unet import OnnxUNet, UNetStep, export_onnx, graph_inputs, relative_error

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, pipe in pipes.items():
            unet = pipe.unet.eval()
            try:
                path = export_onnx(unet, Path(tmp) / f"{name}.onnx")
            except Exception as error:  # reported in the results rather than losing the sampler table
                rows.append({"model": name, "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"})
                continue
            session = OnnxUNet(path, unet.config, threads=threads)
            error = relative_error(unet, session)
            step = UNetStep(unet).eval()
            for batch in batches:
                inputs = list(graph_inputs(unet.config, batch).values())
                runners = {"pytorch": step, "onnxruntime": session}
                rates = defaultdict(list)
                with torch.no_grad():
                    for r in range(rounds):
                        for engine in sorted(runners, reverse=r % 2 == 1):
                            runners[engine](*inputs)
                            count, start = 0, time.perf_counter()
                            while time.perf_counter() - start < window:
                                runners[engine](*inputs)
                                count += 1
                            rates[engine].append(count / (time.perf_counter() - start))
                torch_rate, ort_rate = (
                    statistics.median(rates["pytorch"]),
                    statistics.median(rates["onnxruntime"]),
                )
                rows.append(
                    {
                        "model": name,
                        "batch": batch,
                        "pytorch_steps_per_s": torch_rate,
                        "onnxruntime_steps_per_s": ort_rate,
                        "ratio": ort_rate / torch_rate,
                        "relative_error": error,
                    }
                )
                print(
                    f"  onnx {name} batch {batch}: {ort_rate / torch_rate:.2f}×", file=sys.stderr, flush=True
                )
    return rows


def markdown(table, speed, args, notes: str) -> str:
    lines = [
        notes,
        "",
        f"{args.n} images per setting from the same initial noise, {args.batch} per chunk; torch threads: "
        f"{args.threads}. Time is relative to {BASELINE}.",
        "",
        "| setting | UNet evals | time vs baseline | s / image | MSE vs teacher 1000 | MSE vs own 1000 "
        "| spectrum err low | spectrum err high | SWD ×10³ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        own = "—" if r["mse_own_ref"] is None else f"{r['mse_own_ref']:.5f}"
        lines.append(
            f"| {r['label']} | {r['steps']} | {r['time_vs_baseline']:.2f} | {r['seconds_per_image']:.3f} "
            f"| {r['mse_teacher_ref']:.5f} | {own} | {r['spectrum_low']:.3f} | {r['spectrum_high']:.3f} "
            f"| {r['swd']:.1f} |"
        )
    lines += [
        "",
        f"## onnxruntime vs PyTorch, one UNet step (CPU, {args.threads} thread(s) each)",
        "",
        "| model | batch | PyTorch steps/s | onnxruntime steps/s | onnxruntime / PyTorch | max rel. error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in speed:
        if "error" in r:
            lines.append(f"| {r['model']} | — | ONNX export failed: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['pytorch_steps_per_s']:.2f} | {r['onnxruntime_steps_per_s']:.2f} "
            f"| {r['ratio']:.2f}× | {r['relative_error']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="teacher pipeline / run / UNet folder")
    parser.add_argument("--student", required=True, help="slim student pipeline / run / UNet folder")
    parser.add_argument("--n", type=int, default=16, help="images per setting")
    parser.add_argument("--batch", type=int, default=8, help="images per chunk")
    parser.add_argument(
        "--data", default="builtin:textures", help="training data, for spectrum error and SWD"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--no-ddpm-reference", action="store_true", help="skip the 1000-step DDPM row")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the steps/s timing")
    parser.add_argument("--window", type=float, default=1.0, help="seconds per steps/s measurement")
    parser.add_argument("--notes", default="", help="a line about the models, written above the table")
    args = parser.parse_args()

    from slimdiff.data.datasets import load_images

    torch.set_num_threads(args.threads)
    pipes = {"teacher": load_pipeline(args.teacher), "student": load_pipeline(args.student)}
    for pipe in pipes.values():
        pipe.unet.eval()
        pipe.set_progress_bar_config(disable=True)
    cfg = pipes["student"].unet.config
    noise = torch.randn(
        args.n, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=torch.Generator().manual_seed(0)
    )
    rows = settings(not args.no_ddpm_reference)
    images, seconds = sample_all(rows, pipes, noise, args.batch)
    real = load_images(args.data, next(iter(images.values())).shape[-1], args.n)
    table = quality(rows, images, seconds, real, args.n)
    speed = onnx_speed(pipes, [1, 8], args.rounds, args.threads, args.window)

    notes = f"Teacher: `{args.teacher}`. Student: `{args.student}`. {args.notes}".strip()
    body = markdown(table, speed, args, notes)
    print(body)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "samplers.json").write_text(
        json.dumps(
            {"args": vars(args), "machine": describe_machine(), "quality": table, "onnx": speed}, indent=2
        )
    )
    write_result("samplers", body)


if __name__ == "__main__":
    main()
