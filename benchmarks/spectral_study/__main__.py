"""The GPU study's coordinator: Figure 6 first (alone on the GPU), then the teacher (rounds until its plateau
or its time share) beside the validation student and the classifier, λ's calibration, the students in
lock-step rounds while the budget lasts, and the final evaluation. Everything lands in OUT/spectral_study.json
as it comes (plus log.txt, samples.png and the retrained classifier), so a run stopped at its time limit
still returns what it did."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

import torch

from benchmarks.machine import describe_machine
from benchmarks.spectral_study import tasks
from benchmarks.spectral_study.gpu_speed import figure6
from benchmarks.spectral_study.plan import SMOKE, Settings, plan
from slimdiff.reporting.images import save_grid


class Inline:
    """An executor that runs each call at once in this process (workers = 0: the CPU smoke run)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:  # noqa: BLE001 — handed to the caller like a pool would
            future.set_exception(error)
        return future

    def shutdown(self, **_) -> None:
        pass


class Study:
    def __init__(self, s: Settings, out: Path, work: Path, budget_s: float, workers: int):
        self.s, self.out, self.work = s, out, work
        self.start, self.deadline = time.monotonic(), time.monotonic() + budget_s
        out.mkdir(parents=True, exist_ok=True)
        self.record = {
            "settings": asdict(s),
            "machine": describe_machine(),
            "command": " ".join(["python -m benchmarks.spectral_study", *sys.argv[1:]]),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "budget_s": budget_s,
            "workers": workers,
            "teacher": {"rounds": []},
            "runs": {},
            "errors": [],
        }
        self.workers, self.pool = workers, Inline()

    def start_pool(self) -> None:
        """The worker processes, started only after Figure 6 so that their start-up does not disturb it."""
        if self.workers:
            context = get_context("spawn")
            self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=tasks.start_worker)

    def log(self, message: str) -> None:
        line = f"{time.monotonic() - self.start:7.1f}s {message}"
        print(line, flush=True)
        with open(self.out / "log.txt", "a") as f:
            f.write(line + "\n")

    def save(self) -> None:
        self.record["elapsed_s"] = time.monotonic() - self.start
        tmp = self.out / "spectral_study.json.tmp"
        tmp.write_text(json.dumps(self.record, indent=1, default=str) + "\n")
        os.replace(tmp, self.out / "spectral_study.json")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def result(self, future: Future, what: str):
        try:
            return future.result()
        except Exception:  # noqa: BLE001 — one failed unit is recorded, the study goes on
            self.record["errors"].append({"what": what, "traceback": traceback.format_exc()[-3000:]})
            self.log(f"FAILED {what}: {traceback.format_exc().splitlines()[-1]}")
            self.save()
            return None

    def teacher(self, budget_s: float) -> bool:
        """Teacher rounds until its held-out ε-MSE gains < 3 % from s/2 to s, or `budget_s` is spent."""
        s, rounds, until = self.s, self.record["teacher"]["rounds"], time.monotonic() + budget_s
        while True:
            steps = (len(rounds) + 1) * s.teacher_round
            done = self.result(self.pool.submit(tasks.teacher_round, s, self.work, steps), f"teacher {steps}")
            if done is None:
                return False
            rounds.append(done)
            self.log(f"teacher {steps} steps ({done['seconds']:.0f} s): ε-MSE {done['eps']['all']:.5f}")
            self.save()
            half = [r for r in rounds if r["steps"] <= steps // 2]
            if half and (half[-1]["eps"]["all"] - done["eps"]["all"]) / half[-1]["eps"]["all"] < 0.03:
                self.record["teacher"]["stopped"] = "plateau"
                return True
            if time.monotonic() + done["seconds"] > until:
                self.record["teacher"]["stopped"] = "time share spent"
                return True

    def students(self, lam: float) -> int:
        """Lock-step rounds of every run while another round and the final evaluation fit; returns S."""
        s, runs, steps, last_round = self.s, plan(self.s), 0, 0.0
        active = {run.id: run for run in runs}
        while (
            active
            and steps < s.max_student_steps
            and (not steps or last_round < self.left() - s.eval_reserve_s)
        ):
            steps += s.round_steps
            begin = time.monotonic()
            futures = {
                rid: self.pool.submit(tasks.student_round, s, run, self.work, steps, lam)
                for rid, run in active.items()
            }
            wait(futures.values())
            for rid, future in futures.items():
                done = self.result(future, f"{rid} {steps}")
                if done is None:
                    del active[rid]
                    continue
                entry = self.record["runs"].setdefault(
                    rid, {"arm": active[rid].arm, "seed": active[rid].seed, "rounds": []}
                )
                entry["rounds"].append(done)
            last_round = time.monotonic() - begin
            self.log(f"students: round to {steps} steps done in {last_round:.0f} s, {self.left():.0f} s left")
            self.save()
        self.record["student_steps"] = steps
        return steps

    def final(self) -> None:
        folders = {"teacher": self.work / "teacher"} | {
            rid: self.work / "runs" / rid for rid in self.record["runs"]
        }
        futures = {
            name: self.pool.submit(tasks.final_evaluation, self.s, folder) for name, folder in folders.items()
        }
        grids = []
        for name, future in futures.items():
            done = self.result(future, f"final {name}")
            if done is None:
                continue
            grid = done.pop("grid")
            if name == "teacher" or name.endswith("-s0"):
                grids.append(grid[:16])
            target = self.record["teacher"] if name == "teacher" else self.record["runs"][name]
            target["final"] = done
            self.log(f"final {name}: {done['samples']}, high {done['eps']['high']:.5f}")
            self.save()
        if grids:  # one row of 16 per model: the teacher, then seed 0 of each arm in plan order
            save_grid(torch.cat(grids), self.out / "samples.png", nrow=16, upscale=2)


def _classifier(epochs: int, device: str) -> subprocess.Popen | None:
    if epochs <= 0:
        return None
    command = [
        sys.executable,
        "-m",
        "benchmarks.fmnist_classifier",
        "--epochs",
        str(epochs),
        "--device",
        device,
    ]
    return subprocess.Popen(command)


def _setting(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    if name not in Settings.__dataclass_fields__:
        raise SystemExit(
            f"--set {text}: {name!r} is not a setting ({', '.join(Settings.__dataclass_fields__)})"
        )
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value  # a plain string, e.g. data=builtin:textures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="results folder (spectral_study.json, log, grid)"
    )
    parser.add_argument("--work", type=Path, default=Path("outputs/spectral-study"), help="run folders")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall time for everything")
    parser.add_argument("--workers", type=int, default=12, help="worker processes (0: in this process)")
    parser.add_argument("--classifier-epochs", type=int, default=0, help="retrain the FD network first")
    parser.add_argument("--smoke", action="store_true", help="the seconds-long CPU version (tests)")
    parser.add_argument("--no-figure6", action="store_true", help="skip the Figure 6 timings")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a Settings field (JSON value), e.g. round_steps=1000 or seeds='{\"+WG\": 0}'",
    )
    args = parser.parse_args(argv)
    s = replace(Settings(**SMOKE) if args.smoke else Settings(), **dict(_setting(a) for a in args.set))
    gpu = torch.cuda.is_available()
    study = Study(s, args.out, args.work, args.budget_s, args.workers)
    study.log(f"{describe_machine()}; {len(plan(s))} runs, budget {args.budget_s:.0f} s")
    if gpu and not args.no_figure6:
        study.record["figure6"] = figure6(torch.device("cuda"), log=study.log)
        study.save()
    study.start_pool()
    classifier = _classifier(args.classifier_epochs, "cuda" if gpu else "cpu")
    validation = study.pool.submit(tasks.validation_round, s, args.work)
    ok = study.teacher(s.teacher_share * study.left())
    if classifier is not None:
        study.record["classifier_exit"] = classifier.wait()
    if ok and study.result(validation, "validation student") is not None:
        calibration = study.result(study.pool.submit(tasks.calibrate, s, args.work), "λ calibration")
        if calibration is not None:
            study.record["calibration"] = calibration
            study.log(f"λ = {calibration['lambda']:.4g} (share at λ = 1: {calibration['at_lambda_1']})")
            study.save()
            study.students(calibration["lambda"])
            study.final()
    study.pool.shutdown(wait=False, cancel_futures=True)
    study.record["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    study.save()
    study.log("done")


if __name__ == "__main__":
    main()
