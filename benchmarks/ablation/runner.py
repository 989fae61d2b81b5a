"""Training and evaluation of one run of the ablation study (`benchmarks/ablation/`).

Evaluation of a run, all from fixed seeds so every run sees the same inputs:
- ε-error spectrum on `eps_images` held-out crops × 10 timestep buckets, against the true ε and against the
  teacher's ε̂ on the same x_t (the teacher's predictions are computed once per data set and replayed);
- `samples` images (DDIM with the study's steps and η, the same initial noise for every model) against as
  many held-out crops: SWD per Laplacian level, low/high spectrum error, radial power spectrum, chroma RMS.
"""

from __future__ import annotations

import datetime
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.ablation.claims import claim, exclusive, release, teacher_training
from benchmarks.ablation.plan import DATA, Run, Settings, write_json
from benchmarks.machine import describe_machine
from slimdiff.config import Config, DataConfig, DistillConfig, RunConfig, TrainConfig
from slimdiff.data.datasets import held_out_images
from slimdiff.diffusion import training_scheduler
from slimdiff.metrics.colour import chroma_rms
from slimdiff.metrics.complexity import torch_threads
from slimdiff.metrics.eps_spectrum import EpsSpectrum, eps_error_spectrum
from slimdiff.metrics.spectrum import radial_power_spectrum, spectrum_error
from slimdiff.metrics.swd import swd
from slimdiff.models.presets import tiny_norm_groups
from slimdiff.models.size import count_params
from slimdiff.reporting.images import save_grid
from slimdiff.sampling.generate import generate
from slimdiff.sampling.pipeline import load_pipeline

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


def study_config(s: Settings, model: str, data: str, steps: int, seed: int, folder: Path, **extra) -> Config:
    """What every training of the study shares (teacher and students): data, batch, schedule, checkpoints."""
    return Config(
        model=model,
        data=DataConfig(source=DATA[data], size=32),
        train=TrainConfig(steps=steps, batch_size=s.batch, warmup_steps=100, seed=seed),
        run=RunConfig(dir=str(folder), checkpoint_every=CHECKPOINT_EVERY, keep_checkpoints=1, sample_every=0),
        **extra,
    )


def teacher_dir(s: Settings, data: str, work: Path) -> Path:
    """The study's teacher for `data`, trained here on first use (resumable like every run)."""
    folder = work / f"teacher-{data}"
    if not (folder / "model").is_dir():
        base = s.teacher_base
        _log(f"training the {data} teacher (tiny-teacher at base {base}, {s.teacher_steps} steps)")
        widths = {
            "block_out_channels": [base, 2 * base, 2 * base],
            "attention_head_dim": base,
            "norm_num_groups": tiny_norm_groups(base),
        }
        _train(study_config(s, "tiny-teacher", data, s.teacher_steps, 0, folder, model_overrides=widths))
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
    return study_config(s, run.model, run.data, run.steps, run.seed, work / "runs" / run.id, distill=distill)


def clean_partial(folder: Path) -> None:
    """A run folder without checkpoints is an interrupted start: remove it so the run starts afresh."""
    if (
        folder.exists()
        and not any((folder / "checkpoints").glob("step-*"))
        and not (folder / "model").is_dir()
    ):
        shutil.rmtree(folder)


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
    """What every evaluation of one data set shares: held-out images, the teacher and its recorded predictions.
    Built by `Study.context` under the teacher's claim, which also prepares `teacher_record` before any student
    is evaluated."""

    def __init__(self, s: Settings, data: str, results: Path, work: Path):
        self.s, self.data, self.results, self.work = s, data, results, work
        self.eps_images = held_out_images(DATA[data], 32, s.eps_images, seed=s.eval_seed)
        self.real = held_out_images(DATA[data], 32, s.samples, seed=s.eval_seed + 1000)
        self.teacher = teacher_dir(s, data, work)
        self.teacher_calls: list | None = None
        # Every run of the study trains on the default schedule (no train.beta_end override).
        self.schedule = training_scheduler()

    def eps(self, unet, teacher=None) -> EpsSpectrum:
        return eps_error_spectrum(
            unet, self.eps_images, self.schedule, buckets=BUCKETS, seed=self.s.eval_seed, teacher=teacher
        )

    def teacher_record(self) -> dict:
        """The teacher's metrics (written once to runs/<data>-teacher.json) and its recorded ε̂ (cached)."""
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
        _add_own_eps(record, eps, pipe.unet)
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
        return {
            "metrics": {
                "swd": swd(self.real, fake, seed=s.eval_seed),
                "spectrum": spectrum_error(self.real, fake),
                "chroma_rms": chroma_rms(fake),
            },
            "radii": radii.tolist(),
            "samples_power": power.tolist(),
        }

    def evaluate(self, model: Path, run: Run) -> dict:
        if self.teacher_calls is None:
            raise RuntimeError(
                "the teacher's record is prepared before a student is evaluated (Study.context)"
            )
        pipe = load_pipeline(model)
        unet = pipe.unet.eval()
        eps_teacher = self.eps(unet, teacher=_Replay(self.teacher_calls))
        out = self._samples(pipe, run.id, grid=run.seed == 0)
        _add_own_eps(out, self.eps(unet), unet)
        out["metrics"]["eps_teacher"] = eps_teacher.summary()
        out["eps_teacher_radial"] = eps_teacher.power.mean(dim=0).tolist()
        return out


def _add_own_eps(record: dict, eps: EpsSpectrum, unet: torch.nn.Module) -> None:
    """Into `record`: the model's own ε-error against the true ε (summary and radial profile), and its size."""
    record["metrics"]["eps"] = eps.summary()
    record["eps_radial"] = eps.power.mean(dim=0).tolist()
    record["params"] = count_params(unet)


class TeacherBusy(Exception):
    """Another process is preparing this data set's teacher: take another run."""


class Study:
    """Runs of one study: its settings, where results (committed) and work folders (not committed) live."""

    def __init__(self, settings: Settings, results: Path, work: Path, claims: Path, teacher_threads: int = 1):
        self.s, self.results, self.work, self.claims = settings, results, work, claims
        self.teacher_threads = teacher_threads
        self.contexts: dict[str, Context] = {}

    def context(self, data: str) -> Context:
        """The data set's context. Its teacher is trained and evaluated by one process (on `teacher_threads`)
        while the others take runs of other data sets or wait; TeacherBusy if another process is doing it."""
        if data not in self.contexts:
            name = teacher_training(data)
            with exclusive(self.claims / ".lock"):
                if not claim(self.claims, name):
                    raise TeacherBusy(data)
            try:
                with torch_threads(self.teacher_threads):
                    context = Context(self.s, data, self.results, self.work)
                    context.teacher_record()
            finally:
                release(self.claims, name)
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
