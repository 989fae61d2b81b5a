"""Why the demo's students sampled coloured noise, and what fixes it (issue 12), measured with seeds.

    OMP_NUM_THREADS=1 python -m benchmarks.student_fixes [--steps 800] [--seeds 0 1] [--samples 256]

Trains the demo's plain student (tiny-sd, builtin:textures 32², batch 32, lr 8e-4, the demo's schedule) under
each variant of GroupNorm groups × initialisation, then measures on held-out crops and from the same noise:
- ε-error (MSE of ε̂ − ε) per timestep bucket (no sampling);
- the colour response: how much of a uniform colour offset added to x_t the model predicts as noise (ideal
  1.0: the data are grey, so any colour in x_t is noise);
- samples under DDIM-50 with η = 0 (deterministic) and η = 1 (ancestral): SWD×10³, spectrum error, chroma
  RMS (distance of each pixel from its own grey value; the real crops have 0).
The shipped teacher is measured the same way. Each finished run is a JSON file in --out, so a re-run skips it;
the table goes to benchmarks/results/student_fixes.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.machine import describe_machine, write_result
from slimdiff.config import Config, DataConfig, RunConfig, TrainConfig
from slimdiff.data.datasets import held_out_images
from slimdiff.diffusion import add_noise, training_scheduler
from slimdiff.metrics.colour import chroma_rms
from slimdiff.metrics.eps_spectrum import eps_error_spectrum
from slimdiff.metrics.spectrum import spectrum_error
from slimdiff.metrics.swd import swd
from slimdiff.models import presets
from slimdiff.sampling.generate import generate
from slimdiff.sampling.pipeline import load_pipeline

VARIANTS = {  # name: (GroupNorm groups of the 16-channel student, CompVis zero-init, gate LL logit at start)
    "before (8 groups, diffusers init)": (8, False, 2.0),
    "4 groups": (4, False, 2.0),
    "zero-init": (8, True, 2.0),
    "after (4 groups + zero-init)": (4, True, 2.0),
    # Gate biases ±4 instead of ±2: WG-Down starts at [0.52, 0.48; 0.48, 0.48] (≈ 2 × average pooling) instead
    # of the checkerboard [0.62, 0.38; 0.38, 0.38].
    "after + symmetric gates": (4, True, 4.0),
}
SAMPLERS = {"DDIM-50 η=0": (50, 0.0), "DDIM-50 η=1": (50, 1.0)}  # name: (steps, η), for every model
# For the sampler choice: the teacher and the fixed students only.
EXTRA_SAMPLERS = {"DDIM-50 η=0.5": (50, 0.5), "DDIM-100 η=1": (100, 1.0), "DDIM-200 η=1": (200, 1.0)}
CHOICE_VARIANTS = ("teacher", "after (4 groups + zero-init)", "after + symmetric gates")
RENAMED = {"DDIM η=0": "DDIM-50 η=0", "DDIM η=1": "DDIM-50 η=1"}  # records written by the first version
COLOUR_VERSION = 2  # version 1 divided by the images but not by the pixels (values 1024× too large)


@torch.no_grad()
def colour_response(unet, real: torch.Tensor, timesteps=(100, 300, 500, 700, 900), size: float = 0.1) -> dict:
    """Share of a uniform colour offset c (zero mean over channels) in x_t that ε̂ attributes to noise.

    The ideal ε-predictor on grey data sees any colour in x_t as noise: ε̂ moves by c / √(1 − ᾱ_t)."""
    ᾱ = training_scheduler().alphas_cumprod
    g = torch.Generator().manual_seed(0)
    x0 = real[:64]
    c = torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1) / 2**0.5 * size
    out = {}
    for t in timesteps:
        eps = torch.randn(x0.shape, generator=g)
        tt = torch.full((len(x0),), t)
        x_t = add_noise(x0, eps, ᾱ[tt])
        moved = unet(x_t + c, tt).sample - unet(x_t, tt).sample
        ideal = c / (1 - ᾱ[t]).sqrt()
        # projection of the move on the ideal one, per pixel and image: 1 when ε̂ moves exactly as it should
        out[str(t)] = ((moved * ideal).sum() / (ideal.square().sum() * moved[:, 0].numel())).item()
    out["mean"] = statistics.mean(out.values())
    return out


def measure(pipe, real: torch.Tensor, args, result: dict, samplers: dict) -> dict:
    """Fill in whatever `result` lacks: ε-error per bucket, colour response, and the given samplers."""
    unet = pipe.unet.eval()
    if "eps_mse" not in result:
        eps = eps_error_spectrum(unet, real, training_scheduler(), buckets=10, seed=args.seed_eval).summary()
        result["eps_mse_per_bucket"] = [b["low"] + b["high"] for b in eps["buckets"]]
        result["eps_mse"] = eps["low"] + eps["high"]
    if result.get("colour_version") != COLOUR_VERSION:
        result["colour_response"], result["colour_version"] = colour_response(unet, real), COLOUR_VERSION
    done = result.setdefault("samplers", {})
    for old, new in RENAMED.items():
        if old in done:
            done[new] = done.pop(old)
    pipe.set_progress_bar_config(disable=True)
    for name, (steps, eta) in samplers.items():
        if name in done:
            continue
        fake = generate(
            pipe, args.samples, args.seed_eval, 64, num_inference_steps=steps, sampler="ddim", eta=eta
        )
        done[name] = {
            "swd": swd(real, fake, seed=args.seed_eval)["mean"],
            "spectrum_error": spectrum_error(real, fake),
            "chroma_rms": chroma_rms(fake),
        }
    return result


def train_variant(groups: int, zero: bool, gate_logit: float, seed: int, steps: int, folder: Path) -> Path:
    from slimdiff.models import gating
    from slimdiff.training.loop import train

    original, original_logit = presets.PRESETS["tiny-sd"], gating._INITIAL_LL_LOGIT
    presets.PRESETS["tiny-sd"] = dataclasses.replace(original, zero_init=zero)
    gating._INITIAL_LL_LOGIT = gate_logit
    try:
        config = Config(
            model="tiny-sd",
            model_overrides={"norm_num_groups": groups},
            data=DataConfig(source="builtin:textures", size=32),
            train=TrainConfig(steps=steps, batch_size=32, warmup_steps=min(100, steps // 10), seed=seed),
            run=RunConfig(dir=str(folder), checkpoint_every=steps, keep_checkpoints=1, sample_every=0),
        )
        train(config, progress=False)
    finally:
        presets.PRESETS["tiny-sd"], gating._INITIAL_LL_LOGIT = original, original_logit
    return folder / "model"


def _fmt(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}g}"
    return f"{statistics.mean(values):.{digits}g} ± {statistics.stdev(values):.2g}"


def table(results: dict[str, list[dict]]) -> str:
    head = ["variant", "seeds", "ε-MSE (all t)", "ε-MSE t ≥ 600", "colour response"]
    for s in SAMPLERS:
        head += [f"{s}: SWD×10³", f"{s}: spectrum err high", f"{s}: chroma RMS"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in results.items():
        row = [name, str(len(runs))]
        row.append(_fmt([r["eps_mse"] for r in runs], 3))
        row.append(_fmt([statistics.mean(r["eps_mse_per_bucket"][6:]) for r in runs], 3))
        row.append(_fmt([r["colour_response"]["mean"] for r in runs], 2))
        for s in SAMPLERS:
            row.append(_fmt([r["samplers"][s]["swd"] for r in runs], 3))
            row.append(_fmt([r["samplers"][s]["spectrum_error"]["high"] for r in runs], 3))
            row.append(_fmt([r["samplers"][s]["chroma_rms"] for r in runs], 2))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def sampler_table(results: dict[str, list[dict]]) -> str:
    names = [*SAMPLERS, *EXTRA_SAMPLERS]
    lines = ["| model | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for variant, runs in results.items():
        cells = []
        for n in names:
            done = [r["samplers"][n] for r in runs if n in r["samplers"]]
            cells.append(
                " · ".join(
                    _fmt([d[k] if k != "high" else d["spectrum_error"]["high"] for d in done], 3)
                    for k in ("swd", "high", "chroma_rms")
                )
                if done
                else "—"
            )
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bucket_table(results: dict[str, list[dict]]) -> str:
    lines = ["| variant | " + " | ".join(f"t {100 * b}–{100 * b + 99}" for b in range(10)) + " |"]
    lines.append("|" + "---|" * 11)
    for name, runs in results.items():
        per = [statistics.mean(r["eps_mse_per_bucket"][b] for r in runs) for b in range(10)]
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in per) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seed-eval", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("outputs/student_fixes"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from slimdiff.demo import SHIPPED_TEACHER

    real = held_out_images("builtin:textures", 32, args.samples, seed=args.seed_eval)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [("teacher", None, None)] + [(v, s, VARIANTS[v]) for s in args.seeds for v in args.variants]
    for name, seed, variant in jobs:
        slug = "teacher" if seed is None else f"{name.split(' (')[0].replace(' ', '-')}-seed{seed}"
        record = args.out / f"{slug}.json"
        result = json.loads(record.read_text()) if record.exists() else {}
        samplers = {**SAMPLERS, **(EXTRA_SAMPLERS if name in CHOICE_VARIANTS else {})}
        have = {RENAMED.get(k, k) for k in result.get("samplers", {})}
        complete = result.get("colour_version") == COLOUR_VERSION and set(samplers) <= have
        if complete:
            continue
        start = time.perf_counter()
        if variant is None:
            model = Path(str(SHIPPED_TEACHER))
        else:
            folder = args.out / slug
            model = folder / "model"
            if not model.is_dir():
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
                train_variant(*variant, seed, args.steps, folder)
        result = measure(load_pipeline(model), real, args, result, samplers)
        result.update(variant=name, seed=seed)
        result["seconds"] = result.get("seconds", 0) + time.perf_counter() - start
        record.write_text(json.dumps(result, indent=2))
        print(f"{slug}: {time.perf_counter() - start:.0f} s", flush=True)

    results: dict[str, list[dict]] = {}
    for path in sorted(args.out.glob("*.json")):
        r = json.loads(path.read_text())
        r["samplers"] = {RENAMED.get(k, k): v for k, v in r["samplers"].items()}
        results.setdefault(r["variant"], []).append(r)  # every finished record, whatever this call ran
    order = ["teacher", *[v for v in VARIANTS if v in results]]
    results = {k: results[k] for k in order if k in results}
    body = (
        f"tiny-sd trained without a teacher for {args.steps} steps (the demo's plain student), one run per "
        f"seed (column 'seeds'); {args.samples} held-out texture crops and {args.samples} samples per model, the same "
        "noise for every model. Mean ± std over seeds.\n\n"
        + table(results)
        + "\n\nε-MSE per timestep bucket (mean over seeds):\n\n"
        + bucket_table(results)
        + "\n\nThe sampler choice (teacher and fixed students; SWD×10³ · spectrum error high · chroma RMS):\n\n"
        + sampler_table({k: v for k, v in results.items() if k in CHOICE_VARIANTS})
        + "\n"
    )
    print(write_result("student_fixes", body, describe_machine()))


if __name__ == "__main__":
    main()
