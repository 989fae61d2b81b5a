"""The study's runs: the settings, the plan (seed by seed: teacher, plain, KD(ω≡1), KD(ω)), one run trained
and measured, its JSON record, and the teacher weights a resumed seed's students need."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from benchmarks import machine
from benchmarks.machine import describe_machine
from benchmarks.toy_distill.verdict import KD_OMEGA, KD_UNIFORM, PLAIN, TEACHER
from slimdiff.analysis.toy.denoiser import ToyConfig, mlp, train_toy
from slimdiff.analysis.toy.distill import ToyDistill
from slimdiff.analysis.toy.score import score_error
from slimdiff.analysis.toy.signals import ALPHAS, mixture_weights

WORK = Path("outputs/bench-toy-distill")  # teacher weights, kept only for a resume
RARE_ALPHAS, COMMON_ALPHAS = (12, 16), (1, 2)
FILE_NAMES = {TEACHER: "teacher", PLAIN: "plain", KD_UNIFORM: "kd-uniform", KD_OMEGA: "kd-spectral"}
OMEGA = {KD_UNIFORM: "uniform", KD_OMEGA: "spectral"}


@dataclass(frozen=True)
class Settings:
    seeds: int = 20
    iterations: int = 10_000
    teacher_hidden: int = 1024
    student_hidden: int = 64
    batch: int = 1000
    lambda_s: float = 0.1
    lambda_f: float = 0.1
    delta: float = 1e-3
    eval_seed: int = 10**6
    eval_samples: int = 100  # x_t per pattern and timestep


@dataclass(frozen=True)
class Run:
    seed: int
    arm: str

    @property
    def name(self) -> str:
        return f"s{self.seed:02d}-{FILE_NAMES[self.arm]}"


def plan(s: Settings) -> list[Run]:
    """Seed by seed, so that a study stopped early leaves complete seeds."""
    return [Run(seed, arm) for seed in range(s.seeds) for arm in FILE_NAMES]


def run_results() -> Path:
    """Where the per-run records and study.json live (read at call time: tests point RESULTS elsewhere)."""
    return machine.RESULTS / "toy_distill"


def record_path(run: Run) -> Path:
    return run_results() / f"{run.name}.json"


def _config(s: Settings, run: Run) -> ToyConfig:
    hidden = s.teacher_hidden if run.arm == TEACHER else s.student_hidden
    return ToyConfig(hidden=hidden, iterations=s.iterations, batch=s.batch, seed=run.seed)


def _teacher(s: Settings, seed: int, device: str, work: Path) -> torch.nn.Module:
    """Seed `seed`'s teacher from its saved weights, or trained again (same config and seed) when they are
    gone (a resume in a fresh checkout)."""
    path = work / f"teacher-s{seed:02d}.safetensors"
    if not path.is_file():
        train(s, Run(seed, TEACHER), device, work)
    model = mlp(s.teacher_hidden)
    model.load_state_dict(load_file(path))
    return model.to(device)


def train(s: Settings, run: Run, device: str = "cpu", work: Path | None = None):
    """Train one run; a teacher's weights are saved for its seed's students."""
    work = work or WORK
    distill = None
    if run.arm in OMEGA:
        teacher = _teacher(s, run.seed, device, work)
        distill = ToyDistill(teacher, s.lambda_s, s.lambda_f, OMEGA[run.arm], s.delta)
    result = train_toy(_config(s, run), distill=distill, device=device)
    if run.arm == TEACHER:
        work.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
        save_file(state, work / f"teacher-s{run.seed:02d}.safetensors")
    return result


def measure(s: Settings, model: torch.nn.Module) -> dict:
    """score_error per pattern with the fixed evaluation seed, and the two endpoints."""
    weights = mixture_weights()
    rows = score_error(model.cpu(), weights, samples=s.eval_samples, seed=s.eval_seed)
    per_alpha = {a: row["score_error"] for a, row in zip(ALPHAS, rows, strict=True)}
    return {
        "per_pattern": [
            {"alpha": a, "pi": pi, **row} for a, pi, row in zip(ALPHAS, weights.tolist(), rows, strict=True)
        ],
        "rare": statistics.mean(per_alpha[a] for a in RARE_ALPHAS),
        "common": statistics.mean(per_alpha[a] for a in COMMON_ALPHAS),
    }


def do_run(s: Settings, run: Run, device: str = "cpu", work: Path | None = None) -> dict:
    """The run's record: read back when finished before, else trained, measured and written."""
    path = record_path(run)
    if path.is_file():
        return json.loads(path.read_text())
    print(f"[toy-distill] {run.name}: training", flush=True)
    cpu, wall = time.process_time(), time.perf_counter()
    result = train(s, run, device, work)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    record = {
        "seed": run.seed,
        "arm": run.arm,
        "hidden": _config(s, run).hidden,
        "device": device,
        "train_cpu_s": round(cpu, 1),
        "train_wall_s": round(wall, 1),
        **measure(s, result.model),
        "losses": result.losses,
        "log": result.log,
        "machine": describe_machine(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)  # a record is there whole or not at all
    print(
        f"[toy-distill] {run.name}: rare {record['rare']:.4g}, common {record['common']:.4g}, {cpu:.0f} CPU-s"
    )
    return record


def load_settings() -> Settings:
    return Settings(**json.loads((run_results() / "study.json").read_text()))


def save_settings(s: Settings) -> None:
    run_results().mkdir(parents=True, exist_ok=True)
    (run_results() / "study.json").write_text(json.dumps(asdict(s), indent=2) + "\n")
