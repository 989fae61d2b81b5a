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
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from rich.console import Console

from slimdiff.config import DISTILL_POSITIONS, Config, DataConfig, DistillConfig, RunConfig, TrainConfig
from slimdiff.errors import ConfigError
from slimdiff.metrics.colour import chroma_rms
from slimdiff.metrics.eps_spectrum import plot_eps_spectrum
from slimdiff.metrics.evaluate import EvalOptions, evaluate, resolve
from slimdiff.metrics.spectrum import plot_spectra
from slimdiff.reporting.images import save_grid
from slimdiff.reporting.report import Report
from slimdiff.training.loop import train

DATA = "builtin:textures"
SIZE = 32
ASSETS = resources.files("slimdiff") / "assets"
# Shipped teacher: `slimdiff train configs/tiny.yaml` (3000 steps), its model/ folder copied here.
SHIPPED_TEACHER = ASSETS / "tiny-teacher"
# Shipped students: `slimdiff demo --train-students` with the default settings (800 steps each, from the shipped
# teacher), their model/ folders copied here with their run's config as training-config.yaml. Training them
# takes most of an hour on a 2-core CPU; the demo's live work is the step distillation and the measuring.
SHIPPED_STUDENTS = {"student": ASSETS / "tiny-sd-student", "baseline": ASSETS / "tiny-sd-baseline"}


@dataclass
class DemoSettings:
    out: Path = Path("outputs/demo")
    teacher: str | None = None  # None: the shipped teacher, or train one when none is shipped
    teacher_steps: int = 1500  # only when a teacher is trained here
    student_steps: int = 800
    # None: the shipped students where they are what this run would train (the shipped teacher and the
    # default student_steps, positions, batch_size), else trained here; True: always trained here
    train_students: bool | None = None
    # Distilled at the output only: with feat-up1 as well (the paper's default) the 800-step student's ε-error
    # rose 10% above the plain student's and its SWD to 2.2× the teacher's; at the output only it matched the
    # plain student (docs/demo/output-and-feat-up1/report.md). The ablation's position sweep measures this with seeds.
    positions: tuple[str, ...] = ("output",)
    batch_size: int = 32
    # also the same slim model trained without a teacher, for comparison (off by default: it costs the 15-min
    # budget two minutes; README, The demo, has its numbers)
    baseline: bool = False
    samples: int = 128
    sampler: str = "ddim"
    sample_steps: int = 100
    eta: float = 1.0  # DDIM's η for every model: 1 = ancestral (see the module docstring)
    seed: int = 0
    timing_seconds: float = 1.0  # per steps/s and seconds-per-image measurement
    # step distillation of the distilled student: configs/steps-tiny.yaml's settings, 150 steps rather than 400
    # so that the demo stays within 15 min on a 2-core CPU; 0 calls: skipped
    few_step_calls: int = 4
    few_step_training: int = 150

    def __post_init__(self):
        unknown = [p for p in self.positions if p not in DISTILL_POSITIONS]
        if unknown or not self.positions:
            raise ConfigError(
                f"--positions {unknown or '(none)'}: choose from {', '.join(DISTILL_POSITIONS)}"
            )


def run_config(model: str, train: TrainConfig, folder: Path, distill: DistillConfig | None = None) -> Config:
    return Config(
        model=model,
        data=DataConfig(source=DATA, size=SIZE),
        train=train,
        run=RunConfig(dir=str(folder), checkpoint_every=train.steps, keep_checkpoints=1, sample_every=0),
        distill=distill,
    )


def from_scratch(steps: int, batch: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch, warmup_steps=min(100, steps // 10), seed=seed)


def fine_tuning(steps: int, batch: int, seed: int = 0) -> TrainConfig:
    """Step distillation starts from a trained student: lr 1e-4, a short warm-up, a fast EMA."""
    warmup = min(20, steps // 10)
    return TrainConfig(
        steps=steps, batch_size=batch, base_lr=1e-4 / batch, warmup_steps=warmup, ema_decay=0.99, seed=seed
    )


def step_distillation(
    section: DistillConfig, calls: int, student: Path, lambda_freq: float = 0.0
) -> DistillConfig:
    """`section` turned into the demo's step distillation of `student` to `calls` calls: the output only,
    λ_s = 1 (the consistency loss) and `lambda_freq` (0: the plain variant)."""
    return replace(
        section,
        positions=("output",),
        lambda_spatial=1.0,
        lambda_freq=lambda_freq,
        steps=calls,
        student=str(student),
    )


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


def uses_shipped_students(settings: DemoSettings) -> bool:
    """Whether the shipped students are exactly what `settings` would train (see DemoSettings)."""
    if settings.train_students or settings.teacher is not None:
        return False
    recipe = DemoSettings()
    same = all(
        getattr(settings, k) == getattr(recipe, k) for k in ("student_steps", "positions", "batch_size")
    )
    return same and all(folder.is_dir() for folder in SHIPPED_STUDENTS.values())


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
    for stale in (
        "student",
        "baseline",
        "few-step",
        "eval",
        "report",
    ):  # a demo re-run starts its students afresh
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
    report = _report(settings, teacher_path, section, metrics, evaluations, grids, samplers, minutes)
    path = report.write(report_dir)
    console.print(f"report: {path}  ({minutes:.1f} min)")
    return path


def _sampler_name(sampler: dict) -> str:
    eta = "" if sampler["eta"] is None else f", η = {sampler['eta']:g}"
    return f"{sampler['scheduler']} {sampler['steps']}{eta}"


def _report(settings, teacher_path, section, metrics, evaluations, grids, samplers, minutes) -> Report:
    s = settings
    report = Report("slimdiff demo: spectrum-aware distillation on built-in textures")
    report.paragraph(
        f"Data: {DATA} ({SIZE}×{SIZE} crops of the scikit-image textures, grey: R = G = B). Teacher: "
        f"{teacher_path}. Student: tiny-sd (wavelet-gated), distilled for {s.student_steps} steps with "
        f"λ_s = λ_f = {section.lambda_spatial:g}, α = {section.alpha:g} at {', '.join(section.positions)}"
        + (
            " (shipped with slimdiff, trained by `slimdiff demo --train-students`). "
            if uses_shipped_students(s)
            else " (trained by this run). "
        )
        + f"Samples: {s.samples} per model from the same initial noise, with the sampler in the table ({s.sampler} "
        f"{s.sample_steps} steps, η = {s.eta:g}, for every many-step model). "
        + (
            f"Few-step student: the distilled student, step-distilled (consistency distillation against the "
            f"teacher, λ_s = 1, λ_f = 0) for {s.few_step_training} steps to sample in {s.few_step_calls} calls "
            f"with its own LCM scheduler; beside it, the same LCM sampler on the student before step "
            f"distillation (what the step distillation adds). "
            if s.few_step_calls
            else ""
        )
        + f"Run time {minutes:.1f} min."
    )
    report.heading("Samples")
    for name, file in grids.items():
        report.picture(file, f"{name} (first 64)")
    report.heading("Numbers")
    header = [
        "model",
        "sampler",
        "params",
        "MACs/step",
        "steps/s (batch 64)",
        "s/image (batch 1)",
        "speed-up",
    ]
    header += ["SWD×10³ ↓", "spectrum err low ↓"]
    header += ["spectrum err high ↓", "colour (chroma RMS) ↓", "ε-error low ↓", "ε-error high ↓"]
    rows = []
    for name in evaluations:
        m = metrics[name]
        rows.append(
            [
                name,
                _sampler_name(samplers[name]),
                f"{m['params'] / 1e6:.2f}M",
                f"{m['macs'] / 1e9:.3f}G",
                f"{m['unet_steps_per_s']:.1f}",
                f"{m['seconds_per_image']:.3g}",
                f"{m['vs_teacher']['speed_up']:.1f}×" if "vs_teacher" in m else "1×",
                m["swd"]["mean"],
                m["spectrum_error"]["low"],
                m["spectrum_error"]["high"],
                m["chroma_rms"],
                m["eps_spectrum"]["low"],
                m["eps_spectrum"]["high"],
            ]
        )
    report.table(header, rows)
    verdicts = [
        f"{name}: SWD {c['swd_ratio']:.2f}× and high-frequency spectrum error {c['spectrum_high_ratio']:.2f}× the "
        f"teacher's ({'within' if c['ok'] else 'NOT within'} 2×), {c['speed_up']:.1f}× faster per image"
        for name, c in ((n, m["vs_teacher"]) for n, m in metrics.items() if "vs_teacher" in m)
    ]
    report.paragraph("Against the teacher's samples from the same noise — " + "; ".join(verdicts) + ".")
    report.paragraph(
        "SWD: sliced Wasserstein distance to the real crops over Laplacian-pyramid patches (mean over levels). "
        "Spectrum error: mean |log10 P_model − log10 P_real| of the radial power spectrum below / above half "
        "Nyquist. Colour: RMS distance of each pixel from its grey value (the real crops: 0). s/image: one image "
        "at batch 1 through the pipeline with the row's sampler, median of ≥ 3 runs on this machine; speed-up: "
        "the teacher's s/image over the row's. ε-error: power of "
        f"ε̂ − ε on {s.samples} held-out real crops below / above half Nyquist, averaged over 10 timestep "
        "buckets (no sampling; low variance); per bucket below. One seed per model and small sample sizes: read "
        "differences of a few percent as noise (the seeded comparison is docs/ablation.md)."
    )
    report.heading("ε-error per timestep")
    buckets = {name: ev.eps_spectrum for name, ev in evaluations.items()}
    first = next(iter(buckets.values()))
    edges = list(zip(first.bucket_edges[:-1], first.bucket_edges[1:], strict=True))
    head = ["timesteps", *[f"{name}: total (high)" for name in buckets]]
    table = []
    for b, (lo, hi) in enumerate(edges):
        cells = [f"{r.low[b] + r.high[b]:.4f} ({r.high[b]:.4f})" for r in buckets.values()]
        table.append([f"{lo}–{hi - 1}", *cells])
    report.table(head, table)
    report.paragraph(
        "Mean squared error of ε̂ per timestep bucket (total = low + high band; high band in brackets), on the "
        "same held-out x_t for every model. The average over buckets in the table above hides where the "
        "students lose: compare the rows at large t, where the sample's layout is decided."
    )
    report.heading("Spectra")
    report.picture("spectra.png", "mean radial power spectrum of real and generated images")
    report.picture("eps-spectrum.png", "prediction-error power per timestep and frequency")
    return report
