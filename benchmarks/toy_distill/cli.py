"""`python -m benchmarks.toy_distill`: start, resume or report the study (flags: `--help`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields

import torch

from benchmarks import toy_distill
from benchmarks.toy_distill.report import rebuild
from benchmarks.toy_distill.runs import (
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
    records = []
    for run in runs:
        finished = record_path(run).is_file()
        if args.report_only and not finished:
            continue
        records.append(do_run(settings, run, args.device))
        if not finished:  # the page follows the study run by run
            rebuild(settings, records, len(runs))
    verdict = rebuild(settings, records, len(runs))
    print(f"[toy-distill] verdict: {verdict['verdict']} (n = {verdict['n']})", flush=True)
    return verdict
