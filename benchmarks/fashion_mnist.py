"""Reference numbers on Fashion-MNIST (issue 24): the tiny teacher, Lite and SD students at 32×32 in pixel
space, unconditional and class-conditional, scored by FD-FMNIST (+ CAS and intended-class accuracy for the
class models) with one fixed sampler setting.

Runs, in this order (so that stopping early leaves complete seeds): the two teachers (configs/fashion-mnist
{,-class}.yaml), then for each seed Lite (tiny-lite[-class], plain ε) and SD (tiny-sd[-class], distilled from
its teacher with the distill defaults: outputs + feat-up1, λ_s = λ_f = 0.1, α = −1). Every run is trained with
`slimdiff.training.loop.train` from those configs (+ overrides), then evaluated with `slimdiff.metrics
.evaluate` against the real test split; one JSON per run in benchmarks/results/fashion_mnist/, the table in
benchmarks/results/fashion_mnist.{md,json}. Resumable: finished runs are kept, a run stopped mid-training
resumes from its last checkpoint (under outputs/bench-fashion-mnist/); the settings of the first start are
kept in benchmarks/results/fashion_mnist/study.json. A student distilled from a teacher whose model folder is
gone (a resume in a fresh checkout) retrains that teacher first, from the same config and seed.

    nice env OMP_NUM_THREADS=1 python -m benchmarks.fashion_mnist --resume
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks.ablation.stats import paired_difference
from benchmarks.machine import RESULTS, describe_machine, write_result
from slimdiff.config import DistillConfig, load_config
from slimdiff.metrics.evaluate import EvalOptions, evaluate, resolve
from slimdiff.training.checkpoint import list_checkpoints
from slimdiff.training.loop import train

CONFIGS = Path(__file__).parents[1] / "configs"
WORK = Path("outputs/bench-fashion-mnist")
RUN_RESULTS = RESULTS / "fashion_mnist"
DATA_TEST = "builtin:fashion-mnist:test"


@dataclass
class Settings:
    teacher_steps: int = 400
    student_steps: int = 150
    batch: int = 16
    seeds: int = 3
    samples: int = 500  # generated images per evaluation
    real: int = 10_000  # real test images (the whole split)
    sampler: str = "dpm++"
    sample_steps: int = 10
    eval_seed: int = 0


@dataclass
class Run:
    name: str
    model: str
    conditional: bool
    seed: int = 0
    teacher: str | None = None  # name of the run it is distilled from


def plan(s: Settings) -> list[Run]:
    runs = [Run("teacher", "tiny-teacher", False), Run("teacher-class", "tiny-teacher-class", True)]
    for seed in range(s.seeds):
        for cond, suffix in ((False, ""), (True, "-class")):
            runs.append(Run(f"lite{suffix}-s{seed}", f"tiny-lite{suffix}", cond, seed))
            runs.append(Run(f"sd{suffix}-s{seed}", f"tiny-sd{suffix}", cond, seed, f"teacher{suffix}"))
    return runs


def run_config(s: Settings, run: Run):
    steps = s.teacher_steps if run.name.startswith("teacher") else s.student_steps
    overrides = [
        f"model={run.model}",
        f"train.steps={steps}",
        f"train.batch_size={s.batch}",
        f"train.seed={run.seed}",
        f"data.seed={run.seed}",
        f"run.dir={WORK / run.name}",
        "run.sample_every=0",
        f"run.checkpoint_every={max(50, steps // 4)}",
    ]
    config = load_config(
        CONFIGS / ("fashion-mnist-class.yaml" if run.conditional else "fashion-mnist.yaml"), overrides
    )
    if run.teacher:
        config.distill = DistillConfig(teacher=str(WORK / run.teacher / "model"))
    return config


def train_run(s: Settings, run: Run) -> float:
    """Train (or resume) the run; returns the CPU seconds this process spent on it."""
    folder = WORK / run.name
    if (folder / "model" / "model_index.json").is_file():
        return 0.0
    if folder.exists() and not list_checkpoints(folder / "checkpoints"):
        shutil.rmtree(folder)  # an interrupted start: begin afresh
    start = time.process_time()
    train(run_config(s, run), resume="latest" if folder.exists() else None)
    return time.process_time() - start


def evaluate_run(s: Settings, run: Run) -> dict:
    metrics = ("fd-fmnist", "cas") if run.conditional else ("fd-fmnist",)
    options = EvalOptions(
        target=str(WORK / run.name / "model"),
        data=DATA_TEST,
        metrics=metrics,
        n=s.samples,
        n_real=s.real,
        scheduler=s.sampler,
        steps=s.sample_steps,
        batch_size=100,
        seed=s.eval_seed,
    )
    resolved, pipeline = resolve(options)
    start = time.process_time()
    report = evaluate(resolved, WORK / run.name / "eval", pipeline).report
    return {
        "results": report["results"],
        "skipped": report["skipped"],
        "eval_cpu_s": time.process_time() - start,
    }


def do_run(s: Settings, run: Run) -> dict:
    path = RUN_RESULTS / f"{run.name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    print(f"[fashion-mnist] {run.name}: training", flush=True)
    if run.teacher:  # present after a resume in the same checkout; retrained (same config, seed) otherwise
        train_run(s, next(r for r in plan(s) if r.name == run.teacher))
    train_cpu = train_run(s, run)
    print(f"[fashion-mnist] {run.name}: evaluating", flush=True)
    record = {**asdict(run), "train_cpu_s": round(train_cpu), **evaluate_run(s, run)}
    record["eval_cpu_s"] = round(record["eval_cpu_s"])
    if "fd_fmnist" not in record["results"]:  # not recorded as done: --resume evaluates it again
        raise SystemExit(f"{run.name}: FD-FMNIST was not computed: {record['skipped']}")
    record["machine"] = describe_machine()
    RUN_RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


COLUMNS = {"fd_fmnist": ("FD-FMNIST ↓", "{:.2f}"), "cas": ("CAS ↑", "{:.3f}")}
COLUMNS["intended_class_accuracy"] = ("intended-class acc. ↑", "{:.3f}")


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def table(s: Settings, records: list[dict], planned: int) -> tuple[str, dict]:
    arms: dict[str, list[dict]] = {}
    for r in records:
        arms.setdefault(re.sub(r"-s\d+$", "", r["name"]), []).append(r)
    cpu = sum(r["train_cpu_s"] + r["eval_cpu_s"] for r in records)
    lines = [
        f"{len(records)} of {planned} planned runs finished; CPU time of the finished runs {cpu / 60:.0f} min "
        "(1 thread per run, training and evaluation, as each run's JSON records it).",
        "",
        f"Settings: {json.dumps(asdict(s))}. Sampling: {s.sampler}, {s.sample_steps} steps, {s.samples} images "
        f"(seed {s.eval_seed}) against all {s.real} real test images; mean ± std over seeds.",
        "",
        "| arm | model | seeds | steps | " + " | ".join(h for h, _ in COLUMNS.values()) + " |",
        "|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    summary = {}
    for arm, rs in arms.items():
        cells = [
            _cell([r["results"][k] for r in rs if k in r["results"]], fmt) for k, (_, fmt) in COLUMNS.items()
        ]
        steps = s.teacher_steps if arm.startswith("teacher") else s.student_steps
        how = f"{rs[0]['model']}" + (f" ← {rs[0]['teacher']}" if rs[0]["teacher"] else "")
        lines.append(f"| {arm} | {how} | {len(rs)} | {steps} | " + " | ".join(cells) + " |")
        summary[arm] = {k: [r["results"].get(k) for r in rs] for k in COLUMNS}
    lines += ["", *comparisons(arms)]
    return "\n".join(lines), summary


def comparisons(arms: dict[str, list[dict]]) -> list[str]:
    """SD − Lite paired by seed (unconditional and class-conditional), with 95 % t-intervals."""
    lines = ["SD − Lite, paired by seed (95 % t-interval; negative FD / positive CAS favour SD):", ""]
    lines += ["| comparison | seeds | mean | 95 % interval |", "|---|---|---|---|"]
    for suffix in ("", "-class"):
        for key, (name, _) in COLUMNS.items():
            values = {
                arm: {
                    r["seed"]: r["results"][key]
                    for r in arms.get(f"{arm}{suffix}", [])
                    if key in r["results"]
                }
                for arm in ("sd", "lite")
            }
            d = paired_difference(values["sd"], values["lite"])
            if d["n"]:
                lines.append(
                    f"| sd{suffix} − lite{suffix}, {name} | {d['n']} | {d['mean']:.3f} | "
                    f"[{d['low']:.3f}, {d['high']:.3f}] |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resume", action="store_true", help="continue the study with its saved settings")
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from the finished runs")
    for field, value in asdict(Settings()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    torch.set_num_threads(1)
    saved = RUN_RESULTS / "study.json"  # committed with the results, so a resume anywhere keeps the settings
    if (args.resume or args.report_only) and saved.is_file():
        settings = Settings(**json.loads(saved.read_text()))
    elif args.resume or args.report_only:
        raise SystemExit(f"nothing to resume: {saved} does not exist (start without --resume)")
    else:
        settings = Settings(**{k: getattr(args, k) for k in asdict(Settings())})
        for folder in (RUN_RESULTS, WORK):  # a fresh start: nothing of an earlier study is reused
            if folder.exists():
                shutil.rmtree(folder)
        RUN_RESULTS.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(asdict(settings), indent=2) + "\n")
    runs, records = plan(settings), []
    for run in runs:
        done = RUN_RESULTS / f"{run.name}.json"
        if args.report_only and not done.is_file():
            continue
        records.append(do_run(settings, run))
        body, summary = table(settings, records, len(runs))
        write_result("fashion_mnist", body)
        data = {"settings": asdict(settings), "arms": summary, "runs": records, "machine": describe_machine()}
        (RESULTS / "fashion_mnist.json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
