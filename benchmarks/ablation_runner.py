"""Training and evaluation of one run of the ablation study (`benchmarks/ablation.py`), and the report.

Evaluation of a run, all from fixed seeds so every run sees the same inputs:
- ε-error spectrum on `eps_images` held-out crops × 10 timestep buckets, against the true ε and against the
  teacher's ε̂ on the same x_t (the teacher's predictions are computed once per data set and replayed);
- `samples` images (DDIM with the study's steps and η, the same initial noise for every model) against as
  many held-out crops: SWD per Laplacian level, low/high spectrum error, radial power spectrum, chroma RMS.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks import ablation_report as report
from benchmarks.ablation import (
    ARMS,
    DATA,
    Run,
    Settings,
    clean_partial,
    holding,
    teacher_training,
    write_json,
)
from benchmarks.machine import describe_machine
from slimdiff.config import Config, DataConfig, DistillConfig, RunConfig, TrainConfig
from slimdiff.data.datasets import held_out_images
from slimdiff.metrics.eps_spectrum import eps_error_spectrum
from slimdiff.metrics.spectrum import radial_power_spectrum, spectrum_error
from slimdiff.metrics.swd import swd
from slimdiff.models.presets import tiny_norm_groups
from slimdiff.reporting.images import save_grid
from slimdiff.sampling.generate import generate
from slimdiff.sampling.pipeline import load_pipeline
from slimdiff.sampling.schedule import training_scheduler

CHECKPOINT_EVERY = 250
BUCKETS = 10


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def _train(config: Config) -> None:
    """Train `config`, continuing from its last checkpoint if an earlier process was stopped."""
    from slimdiff.training.checkpoint import list_checkpoints
    from slimdiff.training.loop import train

    folder = Path(config.run.dir)
    if (folder / "model").is_dir():
        return
    clean_partial(folder)
    resume = "latest" if list_checkpoints(folder / "checkpoints") else None
    train(config, resume=resume, progress=False)


def teacher_dir(s: Settings, data: str, work: Path) -> Path:
    """The study's teacher for `data`, trained here on first use (resumable like every run)."""
    folder = work / f"teacher-{data}"
    if not (folder / "model").is_dir():
        base = s.teacher_base
        _log(f"training the {data} teacher (tiny-teacher at base {base}, {s.teacher_steps} steps)")
        _train(
            Config(
                model="tiny-teacher",
                model_overrides={
                    "block_out_channels": [base, 2 * base, 2 * base],
                    "attention_head_dim": base,
                    "norm_num_groups": tiny_norm_groups(base),
                },
                data=DataConfig(source=DATA[data], size=32),
                train=TrainConfig(steps=s.teacher_steps, batch_size=s.batch, warmup_steps=100, seed=0),
                run=RunConfig(
                    dir=str(folder), checkpoint_every=CHECKPOINT_EVERY, keep_checkpoints=1, sample_every=0
                ),
            )
        )
    return folder / "model"


def run_config(s: Settings, run: Run, teacher: Path, work: Path) -> Config:
    distill = None
    if run.lambdas is not None:
        distill = DistillConfig(
            teacher=str(teacher),
            positions=run.positions,
            lambda_spatial=run.lambdas[0],
            lambda_freq=run.lambdas[1],
            omega=run.omega,
        )
    return Config(
        model=run.model,
        data=DataConfig(source=DATA[run.data], size=32),
        train=TrainConfig(steps=run.steps, batch_size=s.batch, warmup_steps=100, seed=run.seed),
        run=RunConfig(
            dir=str(work / "runs" / run.id),
            checkpoint_every=CHECKPOINT_EVERY,
            keep_checkpoints=1,
            sample_every=0,
        ),
        distill=distill,
    )


class _Recorder:
    """Wraps the teacher during its own ε-spectrum and keeps (t, ε̂) of every call, in order."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, x_t, t):
        out = self.model(x_t, t).sample
        self.calls.append((t.clone(), out.clone()))
        return out


class _Replay:
    """Plays the recorded teacher predictions back, checking that the x_t are the same ones (same t)."""

    def __init__(self, calls):
        self.calls, self.index = calls, 0

    def __call__(self, x_t, t):
        recorded_t, out = self.calls[self.index]
        if not torch.equal(recorded_t, t) or out.shape != x_t.shape:
            raise RuntimeError("the evaluation inputs differ from the ones the teacher cache was made with")
        self.index += 1
        return out


class Context:
    """What every evaluation of one data set shares: held-out images, the teacher and its cached predictions."""

    def __init__(self, s: Settings, data: str, results: Path, work: Path, claims: Path):
        self.s, self.data, self.results, self.work, self.claims = s, data, results, work, claims
        self.eps_images = held_out_images(DATA[data], 32, s.eps_images, seed=s.eval_seed)
        self.real = held_out_images(DATA[data], 32, s.samples, seed=s.eval_seed + 1000)
        self.teacher = teacher_dir(s, data, work)
        self.teacher_calls = None

    def eps(self, unet, teacher=None):
        return eps_error_spectrum(
            unet,
            self.eps_images,
            training_scheduler(),
            buckets=BUCKETS,
            seed=self.s.eval_seed,
            teacher=teacher,
        )

    def teacher_record(self) -> dict:
        """The teacher's metrics and its recorded ε̂, computed by one process while the others wait."""
        with holding(self.claims, f"teacher-{self.data}"):
            return self._teacher_record()

    def _teacher_record(self) -> dict:
        path = self.results / "runs" / f"{self.data}-teacher.json"
        cache = self.work / f"teacher-{self.data}-eps.pt"
        if path.is_file() and cache.is_file():
            self.teacher_calls = torch.load(cache)
            return json.loads(path.read_text())
        pipe = load_pipeline(self.teacher)
        recorder = _Recorder(pipe.unet.eval())
        eps = self.eps(recorder)
        self.teacher_calls = recorder.calls
        torch.save(recorder.calls, cache)
        record = {
            "arm": "teacher",
            "seed": None,
            "group": self.data,
            **self._samples(pipe, f"teacher-{self.data}"),
        }
        record["metrics"]["eps"] = eps.summary()
        record["eps_radial"] = eps.power.mean(dim=0).tolist()
        record["params"] = sum(p.numel() for p in pipe.unet.parameters())
        radii, power = radial_power_spectrum(self.real)
        record["real"] = {"radii": radii.tolist(), "power": power.tolist()}
        write_json(path, record)
        return record

    def _samples(self, pipe, name: str, grid: bool = True) -> dict:
        s = self.s
        pipe.set_progress_bar_config(disable=True)
        fake = generate(
            pipe, s.samples, s.eval_seed, 64, num_inference_steps=s.sample_steps, sampler=s.sampler, eta=s.eta
        )
        if grid:  # committed: seed 0 of each arm and the teachers
            save_grid(fake[:64], self.results / "grids" / f"{name}.png", nrow=8, upscale=2)
        radii, power = radial_power_spectrum(fake)
        chroma = (fake - fake.mean(dim=1, keepdim=True)).square().mean().sqrt().item()
        return {
            "metrics": {
                "swd": swd(self.real, fake, seed=s.eval_seed),
                "spectrum": spectrum_error(self.real, fake),
                "chroma_rms": chroma,
            },
            "radii": radii.tolist(),
            "samples_power": power.tolist(),
        }

    def evaluate(self, model: Path, run: Run) -> dict:
        if self.teacher_calls is None:
            self.teacher_record()
        pipe = load_pipeline(model)
        unet = pipe.unet.eval()
        eps = self.eps(unet)
        eps_teacher = self.eps(unet, teacher=_Replay(self.teacher_calls))
        out = self._samples(pipe, run.id, grid=run.seed == 0)
        out["metrics"]["eps"] = eps.summary()
        out["metrics"]["eps_teacher"] = eps_teacher.summary()
        out["eps_radial"] = eps.power.mean(dim=0).tolist()
        out["eps_teacher_radial"] = eps_teacher.power.mean(dim=0).tolist()
        out["params"] = sum(p.numel() for p in unet.parameters())
        return out


class Study:
    """Runs of one study: its settings, where results (committed) and work folders (not committed) live."""

    def __init__(self, settings: Settings, results: Path, work: Path, claims: Path, teacher_threads: int = 1):
        self.s, self.results, self.work, self.claims = settings, results, work, claims
        self.teacher_threads = teacher_threads
        self.contexts: dict[str, Context] = {}

    def context(self, data: str) -> Context:
        """The data set's context; its teacher is trained and evaluated by one process (on `teacher_threads`)
        while the others take runs of other data sets or wait."""
        if data not in self.contexts:
            with holding(self.claims, teacher_training(data)), torch_threads(self.teacher_threads):
                context = Context(self.s, data, self.results, self.work, self.claims)
                context.teacher_record()
                self.contexts[data] = context
        return self.contexts[data]

    def do_run(self, run: Run) -> dict:
        """Train (or continue) and evaluate one run; returns its record."""
        context = self.context(run.data)
        config = run_config(self.s, run, context.teacher, self.work)
        kind = "distilled" if run.lambdas else "no teacher"
        _log(f"{run.id}: training {run.model} for {run.steps} steps ({kind})")
        start = time.perf_counter()
        _train(config)
        trained = time.perf_counter() - start
        _log(f"{run.id}: trained ({trained / 60:.1f} min in this process); evaluating")
        record = {
            "id": run.id,
            "arm": run.arm,
            "seed": run.seed,
            "group": run.group,
            "run": {**asdict(run), "lambdas": list(run.lambdas) if run.lambdas else None},
            "train_seconds_this_process": trained,
            **context.evaluate(Path(config.run.dir) / "model", run),
            "eval_seconds": time.perf_counter() - start - trained,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": describe_machine(),
        }
        m = record["metrics"]
        _log(f"{run.id}: done; ε−teacher high {m['eps_teacher']['high']:.4g}, SWD {m['swd']['mean']:.1f}")
        return record


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _load(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]


def rebuild_report(s: Settings, runs: list[Run], results: Path) -> Path:
    """README.md of the results folder: tables per group, plots; from whatever runs have finished."""
    records = _load(results)
    teachers = {r["group"]: r for r in records if r["arm"] == "teacher"}
    students = [r for r in records if r["arm"] != "teacher"]
    done = {r["id"] for r in students}
    lines = [
        "# Ablation study (issue 12): Lite → SD at CPU scale, with seeds",
        "",
        "- command: `OMP_NUM_THREADS=1 python -m benchmarks.ablation --resume` (settings in `study.json`)",
        f"- machine: {describe_machine()}",
        f"- updated: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{len(done)} of {len(runs)} planned runs finished",
        f"- settings: {json.dumps(asdict(s))}",
        "",
        "Metrics are lower-is-better. Paired table: mean of (arm − Lite) over seeds [95% t-interval]; ✓ the "
        "interval lies below 0 (better than Lite beyond the seed spread), ✗ above 0; (share of the Lite → "
        "teacher gap closed; the paper's SD closes 55% of the FID gap).",
        "",
    ]
    arms = [a for a in ARMS]
    for group in ("textures", "photos"):
        chosen = [r for r in students if r["group"] == group]
        if not chosen:
            continue
        teacher = teachers.get(group)
        lines += [f"## {group} ({s.steps} steps per student)", ""]
        lines += report.arm_table(chosen, arms, teacher) + [""]
        lines += report.paired_table(chosen, arms, teacher) + [""]
        lines += ["The paper's ordering beside ours (share of the Lite → teacher gap each arm closes):", ""]
        paper_metrics = {k: report.METRICS[k] for k in ("swd.mean", "eps_teacher.low", "eps_teacher.high")}
        lines += report.paper_table(chosen, teacher, paper_metrics) + [""]
        lines += ["High-band ε-error against the teacher per timestep bucket (mean over seeds):", ""]
        lines += report.bucket_table(chosen, arms) + [""]
        buckets = report.bucket_metrics(chosen)
        lines += [
            "The same, paired difference to Lite per bucket [95% t-interval] (share of Lite's value):",
            "",
        ]
        lines += report.paired_table(chosen, arms, teacher, metrics=buckets) + [""]
        real = teacher.get("real") if teacher else None
        plots = report.plot_study(chosen, arms, teacher, real, results / group)
        lines += [f"![{p.stem}]({group}/{p.name})" for p in plots] + [""]
        lines += [
            "Sample grids (seed 0): "
            + ", ".join(
                f"[{a}](grids/{group}-{r['id'].removeprefix(group + '-')}.png)"
                for a in arms
                for r in chosen
                if r["arm"] == a and r["seed"] == 0
            )
            + f", [teacher](grids/teacher-{group}.png)",
            "",
        ]
    sweep = [r for r in students if r["group"] == "sweep"]
    if sweep:
        names = list(dict.fromkeys(r.arm for r in runs if r.group == "sweep"))  # the plan's order
        lines += [f"## Sweeps ({s.sweep_steps} steps, tiny-sd, textures; base = WG without teacher)", ""]
        lines += report.arm_table(sweep, names, teachers.get("textures")) + [""]
        lines += report.paired_table(sweep, names, teachers.get("textures"), base="WG, no teacher") + [""]
    path = results / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
