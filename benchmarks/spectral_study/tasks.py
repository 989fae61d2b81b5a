"""The GPU study's units of work, one call each in a worker process (picklable top-level functions, their
results plain data): a teacher or student round, the validation student, λ's calibration, a final
evaluation."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.spectral_study import worker
from benchmarks.spectral_study.plan import ARMS, Run, Settings
from slimdiff.models.loading import load_unet
from slimdiff.sampling.pipeline import load_pipeline


def start_worker() -> None:
    """Each worker process: one CPU thread (the GPU does the work; 12 workers share 16 cores)."""
    torch.set_num_threads(1)


def _ema_unet(folder: Path) -> torch.nn.Module:
    return load_unet(folder / "model" / "unet").to(worker.device())


def teacher_round(s: Settings, work: Path, steps: int) -> dict:
    seconds = worker.train_round(worker.teacher_config(s, work, steps))
    return {"steps": steps, "seconds": seconds, "eps": worker.measure_eps(s, _ema_unet(work / "teacher"))}


def validation_round(s: Settings, work: Path) -> dict:
    """The Lite student of the validation seed, trained one round (plain ε): λ is calibrated on it."""
    folder = work / "validation-lite"
    cfg = worker.config(s, folder, ARMS["Lite"].model, s.validation_seed, s.round_steps)
    return {"steps": s.round_steps, "seconds": worker.train_round(cfg)}


def calibrate(s: Settings, work: Path) -> dict:
    """λ = λ_s = λ_f at which the distillation terms carry `share` of the gradient norm (ω "ours")."""
    torch.manual_seed(s.validation_seed)  # the fresh projectors' initialisation
    student, _ = worker.load_trained(work / "validation-lite")
    measured = worker.gradient_shares(s, student, load_unet(work / "teacher" / "model" / "unet"), "ours", 1.0)
    lam = s.share / (1 - s.share) * measured["grad_eps"] / measured["grad_distill_per_lambda"]
    return {"lambda": lam, "at_lambda_1": measured}


def student_round(s: Settings, run: Run, work: Path, steps: int, lam: float) -> dict:
    """Train `run` to `steps`; its EMA model's ε-error and, when distilled, the terms' gradient shares."""
    cfg = worker.run_config(s, run, work, steps, lam)
    seconds = worker.train_round(cfg)
    folder = Path(cfg.run.dir)
    out = {"steps": steps, "seconds": seconds, "eps": worker.measure_eps(s, _ema_unet(folder))}
    omega = ARMS[run.arm].omega
    if omega is not None:
        student, projectors = worker.load_trained(folder)
        teacher = load_unet(work / "teacher" / "model" / "unet")
        out["shares"] = worker.gradient_shares(s, student, teacher, omega, lam, projectors)
    return out


def final_evaluation(s: Settings, folder: Path) -> dict:
    """The full measures of a finished model: ε-error and the sample metrics, with 64 samples for a grid."""
    pipe = load_pipeline(folder / "model").to(worker.device())  # loaded once: its UNet is the EMA model
    eps = worker.measure_eps(s, pipe.unet)
    metrics, grid = worker.measure_samples(s, pipe)
    return {"eps": eps, "samples": metrics, "grid": grid}
