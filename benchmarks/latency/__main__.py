"""`python -m benchmarks.latency`: the flags, the timing run and its result files (see
benchmarks/latency/)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from benchmarks import latency
from benchmarks.latency import few_step
from benchmarks.latency.parts import (
    HEAVY,
    MODELS,
    build,
    decoder_call,
    end_to_end,
    rss_child,
    solver_overhead,
    unet_call,
)
from benchmarks.latency.report import report
from benchmarks.machine import RESULTS, child_result, describe_machine, interleaved_medians, write_result
from slimdiff.sampling.solvers import SAMPLERS

# wall time, or the process's CPU time: with one thread, what a call costs on an idle core whatever else the
# shared machine runs (memory-bandwidth and cache contention still count)
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.latency", description=latency.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--work", type=Path, default=Path("outputs/latency"))
    parser.add_argument(
        "--heavy-max-batch", type=int, default=8, help="time LDM and the full decoder only up to this batch"
    )
    parser.add_argument("--clock", choices=CLOCK, default="wall", help="wall time, or the process's CPU time")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    few = parser.add_argument_group("the few-step path (issue 25): --few-step times only that, beside LDM")
    few.add_argument("--few-step", action="store_true")
    few.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4], help="UNet calls per image")
    few.add_argument("--sampler", default="ddim", choices=[*SAMPLERS, "lcm"])
    few.add_argument(
        "--ldm-rounds", type=int, default=0, help="rounds that also draw a whole LDM DDIM-200 image"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.rss_child:
        rss_child(args.rss_child, args.work)
        return
    if args.few_step:
        few_step_run(args)
        return
    clock = CLOCK[args.clock]
    result_name = "latency" if args.clock == "wall" else "latency_cpu"

    parts = build(args.work, MODELS, args.threads)
    timings: dict = {"unet": {}, "decoder": {}, "solver": {}, "end_to_end": {}, "rss": {}}
    with torch.no_grad():
        for batch in args.batches:
            heavy = batch <= args.heavy_max_batch  # LDM and the full decoder: minutes per call at batch 8
            keys = [k for k in parts if heavy or k[0] not in HEAVY]
            unets = {"|".join(k): unet_call(parts[k], batch) for k in keys if k[0] in MODELS}
            decoders = {"|".join(k): decoder_call(parts[k], batch) for k in keys if k[0] not in MODELS}
            rounds = args.rounds if batch == 1 else max(1, args.rounds - 1)
            print(f"batch {batch}: timing {len(unets)} UNets and {len(decoders)} decoders", flush=True)
            timings["unet"][batch] = interleaved_medians(unets, rounds, clock)
            timings["decoder"][batch] = interleaved_medians(decoders, rounds, clock)
            if not heavy:  # per image as at batch 1, times the batch (marked in the report)
                for part in ("unet", "decoder"):
                    for key, value in timings[part][args.batches[0]].items():
                        if key.split("|")[0] in HEAVY:
                            timings[part][batch][key] = value * batch
                timings.setdefault("from_batch_1", []).append(batch)
            timings["solver"][batch] = {
                s: solver_overhead(s, 10, batch, clock) for s in ("ddim", "dpm++", "unipc")
            }
            print(json.dumps({k: timings[k][batch] for k in ("unet", "decoder")}, indent=1), flush=True)
        checks = [
            (("SD-f4", "ort", "fp32"), ("slim", "ort", "fp32"), "dpm++", 10),
            (("SD-f4", "ort", "int8"), ("slim", "ort", "int8"), "unipc", 10),
            (("SD-f4", "torch", "fp32"), ("full VQ-f4", "torch", "fp32"), "dpm++", 20),
        ]
        for unet_key, decoder_key, sampler, steps in checks:
            name = f"{'|'.join(unet_key)} + {'|'.join(decoder_key)} {sampler}-{steps}"
            timings["end_to_end"][name] = end_to_end(parts, unet_key, decoder_key, sampler, steps, 1, clock)
            print(name, timings["end_to_end"][name], flush=True)
    del parts
    for config in (
        ()
        if args.clock == "cpu"
        else (
            "SD-f4|ort|fp32|slim|ort|fp32|10",
            "SD-f4|torch|fp32|full VQ-f4|torch|fp32|20",
            "LDM-f4|torch|fp32|full VQ-f4|torch|fp32|2",
        )
    ):
        args_of_child = ["benchmarks.latency", "--rss-child", config, "--work", str(args.work)]
        timings["rss"][config] = child_result([*args_of_child, "--threads", str(args.threads)])
        print(config, timings["rss"][config], flush=True)
    machine = describe_machine()
    timings["clock"] = args.clock
    (RESULTS / f"{result_name}.json").write_text(
        json.dumps({"machine": machine, "threads": args.threads, **timings}, indent=2, default=str)
    )
    print(write_result(result_name, report(timings, args.threads), machine))


def few_step_run(args) -> None:
    """The few-step rows beside LDM DDIM-200, their peak RSS, and latency_few_step.md / .json."""
    loads = [_load()]
    rows = few_step.configurations(args.sampler, args.steps)
    keys = [k for row in [*rows.values(), few_step.LDM] for k in row[:2]]
    parts = build(args.work, {m: MODELS[m] for m in ("LDM-f4", "SD-f4")}, args.threads, only=keys)
    times = few_step.time_rows(parts, rows, args.rounds, args.ldm_rounds)
    loads.append(_load())
    del parts
    rss = {name: few_step.rss_of(name, row, args.work, args.threads) for name, row in rows.items()}
    print(json.dumps(rss, indent=1), flush=True)
    loads.append(_load())
    machine = describe_machine()
    (RESULTS / "latency_few_step.json").write_text(
        json.dumps(
            {"machine": machine, "threads": args.threads, "loads": loads, "times": times, "rss": rss},
            indent=2,
        )
    )
    body = few_step.report(times, rss, args.threads, args.rounds, loads)
    print(write_result("latency_few_step", body, machine))


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


if __name__ == "__main__":
    main()
