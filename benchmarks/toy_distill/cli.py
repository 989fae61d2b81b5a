"""`python -m benchmarks.toy_distill`: start, resume or report the study (flags: `--help`).

Several processes may work on one study (start it once, then `--resume` in a second shell to use a second
core): each takes a whole seed at a time under a claim (`benchmarks.ablation.claims`) and skips the seeds
another live process holds; the page is rebuilt from every finished record on disk."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields
from pathlib import Path

import torch

from benchmarks import toy_distill
from benchmarks.ablation.claims import claim, exclusive, release
from benchmarks.toy_distill import runs as toy_runs
from benchmarks.toy_distill.report import rebuild
from benchmarks.toy_distill.runs import (
    Run,
    Settings,
    do_run,
    load_settings,
    plan,
    record_path,
    run_results,
    save_settings,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.toy_distill",
        description=toy_distill.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--resume", action="store_true", help="continue the study with its saved settings")
    parser.add_argument("--report-only", action="store_true", help="rewrite the page from the finished runs")
    parser.add_argument(
        "--device", default="cpu", help="where to train (cpu, cuda); the data stream is the same"
    )
    for f in fields(Settings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Run (or report) the study; returns the verdict of the finished runs."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(1)  # the study shares its machine: one core
    saved = run_results() / "study.json"
    if args.resume or args.report_only:
        if not saved.is_file():
            raise SystemExit(f"nothing to resume: {saved} does not exist (start without --resume)")
        settings = load_settings()
    elif saved.is_file():
        raise SystemExit(f"{saved} exists: continue with --resume, or remove {run_results()} to start afresh")
    else:
        settings = Settings(**{k: getattr(args, k) for k in asdict(Settings())})
        save_settings(settings)
    runs = plan(settings)
    claims = toy_runs.WORK / "claims"
    if not args.report_only:
        for seed in range(settings.seeds):
            seed_runs = [run for run in runs if run.seed == seed]
            if all(record_path(run).is_file() for run in seed_runs):
                continue
            held = f"seed-{seed:02d}"
            if not claim(claims, held):
                print(f"[toy-distill] seed {seed}: another process has it, skipped", flush=True)
                continue
            try:
                for run in seed_runs:
                    finished = record_path(run).is_file()
                    do_run(settings, run, args.device)
                    if not finished:  # the page follows the study run by run
                        _rebuild(settings, runs, claims)
            finally:
                release(claims, held)
    verdict = _rebuild(settings, runs, claims)
    print(f"[toy-distill] verdict: {verdict['verdict']} (n = {verdict['n']})", flush=True)
    return verdict


def _rebuild(settings: Settings, runs: list[Run], claims: Path) -> dict:
    """The page from every finished record on disk (other processes' too), one writer at a time."""
    with exclusive(claims / ".page.lock"):
        records = [json.loads(record_path(run).read_text()) for run in runs if record_path(run).is_file()]
        return rebuild(settings, records, len(runs))
