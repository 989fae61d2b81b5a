"""`slimdiff demo`: the whole method on built-in data, on a CPU, in minutes.

tiny teacher (shipped, or trained here) → SD student distilled from it (and, for comparison, the same slim
model trained without a teacher) → that student step-distilled into one that samples in a few calls
(consistency distillation, `training/steps.py`) → samples from the same noise → SWD, spectrum error, colour,
prediction-error spectrum per timestep, params / MACs / steps/s, seconds per image → a report with pictures.

Every model samples with the same sampler and noise: DDIM-100 with η = 1 (ancestral). With η = 0 the students'
small ε errors, uncorrelated across colour channels, pile up along the deterministic path into saturated
colour; fresh noise at every step washes them out. At 50 ancestral steps the teacher's own samples are not yet
converged (SWD 92 against 54 at 100 steps and 51 for deterministic DDIM-50); at 100 they are, at twice the
sampling time (measured in benchmarks/results/student_fixes.md).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from slimdiff.config import DistillConfig
from slimdiff.demo.recipe import (
    DATA,
    SHIPPED_STUDENTS,
    SHIPPED_TEACHER,
    DemoSettings,
    fine_tuning,
    from_scratch,
    run_config,
    step_distillation,
    uses_shipped_students,
)
from slimdiff.demo.report import demo_report
from slimdiff.metrics.colour import chroma_rms
from slimdiff.metrics.eps_spectrum import plot_eps_spectrum
from slimdiff.metrics.evaluate import EvalOptions, evaluate, resolve
from slimdiff.metrics.spectrum import plot_spectra
from slimdiff.reporting.images import save_grid
from slimdiff.training.loop import train

__all__ = [
    "SHIPPED_STUDENTS",
    "SHIPPED_TEACHER",
    "DemoSettings",
    "run_demo",
    "student_checks",
    "uses_shipped_students",
]


def _teacher(settings: DemoSettings, console: Console) -> Path:
    if settings.teacher is not None:
        return Path(settings.teacher)
    if SHIPPED_TEACHER.is_dir():
        console.print(f"teacher: the shipped tiny teacher ({SHIPPED_TEACHER})")
        return Path(str(SHIPPED_TEACHER))
    run = settings.out / "teacher"
    if (run / "model").is_dir():  # trained by an earlier demo run
        console.print(f"teacher: {run / 'model'} (trained by an earlier demo run)")
        return run / "model"
    console.rule(f"training the tiny teacher ({settings.teacher_steps} steps)")
    shutil.rmtree(run, ignore_errors=True)  # an interrupted earlier attempt
    train(run_config("tiny-teacher", from_scratch(settings.teacher_steps, settings.batch_size), run))
    return run / "model"


def _students(settings: DemoSettings, section: DistillConfig, console: Console) -> dict[str, Path]:
    """{"student": the distilled SD student, "baseline": the same trained without a teacher (if asked)}."""
    s, out = settings, settings.out
    roles = ("student", "baseline") if s.baseline else ("student",)
    if uses_shipped_students(s):
        console.print(
            "students: the shipped ones, trained by `slimdiff demo --train-students` (README, Demo)"
        )
        return {role: Path(str(SHIPPED_STUDENTS[role])) for role in roles}
    console.rule(f"distilling the SD student from the teacher ({s.student_steps} steps)")
    train(run_config("tiny-sd", from_scratch(s.student_steps, s.batch_size), out / "student", section))
    if s.baseline:
        console.rule(f"training the same slim model without a teacher ({s.student_steps} steps)")
        train(run_config("tiny-sd", from_scratch(s.student_steps, s.batch_size), out / "baseline"))
    return {role: out / role / "model" for role in roles}


def student_checks(metrics: dict, factor: float = 2.0) -> dict:
    """Each student's SWD and high-frequency spectrum error as multiples of the teacher's (same noise); `ok`
    when both are within `factor`; and its speed-up per image over the teacher (batch 1, each its sampler)."""
    teacher = metrics["teacher"]
    checks = {}
    for name, m in metrics.items():
        if name == "teacher":
            continue
        swd_ratio = m["swd"]["mean"] / teacher["swd"]["mean"]
        high_ratio = m["spectrum_error"]["high"] / teacher["spectrum_error"]["high"]
        checks[name] = {
            "swd_ratio": swd_ratio,
            "spectrum_high_ratio": high_ratio,
            "ok": max(swd_ratio, high_ratio) <= factor,
            "speed_up": teacher["seconds_per_image"] / m["seconds_per_image"],
        }
    return checks


def run_demo(settings: DemoSettings, console: Console | None = None) -> Path:
    """Run the demo into `settings.out`; returns the path of the report (report.md, with report.html)."""
    console = console or Console()
    start = time.perf_counter()
    out = settings.out
    # a demo re-run starts its students afresh
    for stale in ("student", "baseline", "few-step", "eval", "report"):
        shutil.rmtree(out / stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps({k: str(v) for k, v in vars(settings).items()}, indent=2))

    teacher_path = _teacher(settings, console)
    section = DistillConfig(teacher=str(teacher_path), positions=settings.positions)
    s = settings
    students = _students(s, section, console)
    student = students["student"]
    # name → (model, sampler); every many-step row samples as the teacher does
    many = {"scheduler": s.sampler, "steps": s.sample_steps, "eta": s.eta}
    models = {"teacher": (teacher_path, many), "SD student (distilled)": (student, many)}
    if "baseline" in students:
        models["SD (no distillation)"] = (students["baseline"], many)
    if s.few_step_calls:
        n = s.few_step_calls
        console.rule(f"step distillation: the SD student in {n} calls ({s.few_step_training} steps)")
        steps = step_distillation(section, n, student)
        train(run_config("tiny-sd", fine_tuning(s.few_step_training, s.batch_size), out / "few-step", steps))
        few = {"scheduler": "lcm", "steps": n, "eta": None}
        models[f"SD student, {n} calls (step-distilled)"] = (out / "few-step" / "model", few)
        models[f"SD student, {n} calls (LCM sampler, not step-distilled)"] = (student, few)

    console.rule("sampling and measuring")
    report_dir = out / "report"
    # Every model goes through the same evaluation as `slimdiff eval`, from the same noise and real images.
    base = EvalOptions(
        target="",
        data=DATA,
        metrics=("swd", "spectrum", "eps-spectrum", "macs", "throughput", "latency"),
        n=s.samples,
        batch_size=64,
        seed=s.seed,
        timing_seconds=s.timing_seconds,
    )
    evaluations = {}
    for i, (name, (path, sampler)) in enumerate(models.items()):
        console.print(
            f"sampling and measuring {name}: {s.samples} images, {sampler['scheduler']} {sampler['steps']} steps"
        )
        options, pipeline = resolve(replace(base, target=str(path), **sampler))
        evaluations[name] = evaluate(options, out / "eval" / f"{i}", pipeline)
    real = next(iter(evaluations.values())).real
    sets = {"real": real, **{name: ev.fake for name, ev in evaluations.items()}}
    grids = {
        name: f"{i}-{'-'.join(re.findall('[a-z0-9]+', name.lower()))}.png" for i, name in enumerate(sets)
    }
    for name, images in sets.items():
        save_grid(images[:64], report_dir / grids[name], nrow=8, upscale=3)
    plot_spectra(sets, report_dir / "spectra.png", title="Mean radial power spectrum")
    plot_eps_spectrum(
        {name: ev.eps_spectrum for name, ev in evaluations.items()}, report_dir / "eps-spectrum.png"
    )

    metrics = {
        name: {**ev.report["results"], "chroma_rms": chroma_rms(ev.fake)} for name, ev in evaluations.items()
    }
    for name, check in student_checks(metrics).items():
        metrics[name]["vs_teacher"] = check
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    minutes = (time.perf_counter() - start) / 60
    samplers = {name: sampler for name, (_, sampler) in models.items()}
    report = demo_report(settings, teacher_path, section, metrics, evaluations, grids, samplers, minutes)
    path = report.write(report_dir)
    console.print(f"report: {path}  ({minutes:.1f} min)")
    return path
