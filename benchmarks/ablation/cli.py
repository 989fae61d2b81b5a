"""The ablation study's command line, `python -m benchmarks.ablation` (flags: `--help`), and its worker loop:
take the next run nobody holds, train and evaluate it, record it, rebuild and commit the results page."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import time
from pathlib import Path

import torch

from benchmarks import ablation
from benchmarks.ablation.claims import claim, exclusive, held_elsewhere, release, teacher_training
from benchmarks.ablation.plan import (
    DATA,
    RESULTS,
    WORK,
    Run,
    Settings,
    load_settings,
    pending,
    plan,
    record_path,
    write_json,
)
from benchmarks.ablation.report import rebuild_report
from benchmarks.ablation.runner import Study, TeacherBusy
from slimdiff.errors import TrainingStopped


def git_commit(paths: list[Path], message: str, attempts: int = 20) -> bool:
    """Commit only `paths` (added first); retried while another process holds the index lock."""
    names = [str(p) for p in paths]
    for _ in range(attempts):
        if Path(".git/index.lock").exists():
            time.sleep(3)
            continue
        added = subprocess.run(["git", "add", "--", *names], capture_output=True, text=True)
        if added.returncode == 0:
            done = subprocess.run(
                ["git", "commit", "-q", "-m", message, "--", *names], capture_output=True, text=True
            )
            if done.returncode == 0:
                return True
            if "nothing to commit" in done.stdout + done.stderr or "no changes added" in done.stdout:
                return False
        time.sleep(3)
    print(f"git commit failed: {message}", flush=True)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ablation", description=ablation.__doc__.splitlines()[0]
    )
    for f in dataclasses.fields(Settings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    parser.add_argument(
        "--resume", action="store_true", help="continue the study in benchmarks/results/ablation"
    )
    parser.add_argument("--list", action="store_true", help="show the plan and what is done, then stop")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many runs")
    parser.add_argument("--no-commit", action="store_true", help="do not git-commit the results")
    parser.add_argument("--data", choices=sorted(DATA), default=None, help="take only this data set's runs")
    parser.add_argument(
        "--teacher-threads",
        type=int,
        default=1,
        help="torch threads while this process prepares a teacher (students always use 1)",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild tables and plots, then stop")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="committed results (default: %(default)s)"
    )
    parser.add_argument(
        "--work", type=Path, default=WORK, help="run folders, not committed (default: %(default)s)"
    )
    args = parser.parse_args()

    settings = load_settings(args, args.results)
    runs = plan(settings)
    todo = pending(runs, args.results)
    if args.list:
        for r in runs:
            print(
                ("done  " if r not in todo else "todo  ")
                + f"{r.id:48s} {r.model:10s} {r.steps:5d} steps {r.lambdas} {r.positions} ω {r.omega}"
            )
        print(f"{len(runs) - len(todo)} of {len(runs)} runs done")
        return
    if args.report_only:
        with exclusive(args.work / "report.lock"):
            rebuild_report(settings, runs, args.results)
        return
    torch.set_num_threads(1)
    mine = [r for r in runs if args.data in (None, r.data)]
    claims = args.work / "claims"
    study = Study(settings, args.results, args.work, claims, args.teacher_threads)

    done = 0
    try:
        while args.max_runs is None or done < args.max_runs:
            run = next_run(mine, args.results, claims)
            if run is None:
                if all_held_elsewhere(mine, args.results, claims):
                    break
                time.sleep(30)  # what is left waits for a teacher another process is preparing
                continue
            try:
                record = study.do_run(run)
                write_json(record_path(run, args.results), record)
            except TeacherBusy:  # another process began preparing the teacher after next_run looked
                continue
            finally:
                release(claims, run.id)
            done += 1
            with exclusive(args.work / "report.lock"):  # one report writer and committer at a time
                rebuild_report(settings, runs, args.results)
                if not args.no_commit:
                    finished = len(runs) - len(pending(runs, args.results))
                    git_commit([args.results], f"ablation: {run.id} ({finished}/{len(runs)} runs)")
    except TrainingStopped as stop:  # SIGINT / SIGTERM: the run wrote a checkpoint; --resume continues it
        print(f"{stop}; continue with: python -m benchmarks.ablation --resume", flush=True)


def next_run(runs: list[Run], results: Path, claims: Path) -> Run | None:
    """The first pending run this process can take (now claimed): no live process holds it and no other
    process is preparing its data set's teacher (a spare core trains other students meanwhile). None: nothing
    to take now."""
    with exclusive(claims / ".lock"):
        for run in pending(runs, results):
            if not held_elsewhere(claims, teacher_training(run.data)) and claim(claims, run.id):
                return run
    return None


def all_held_elsewhere(runs: list[Run], results: Path, claims: Path) -> bool:
    """Every pending run is being done by another live process: nothing is left for this one."""
    with exclusive(claims / ".lock"):
        return all(held_elsewhere(claims, r.id) for r in pending(runs, results))
