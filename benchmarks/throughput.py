"""UNet steps per second of SD vs Lite-LDM vs LDM (f4, 64×64×3 latents), side by side in one run.

    python -m benchmarks.throughput [--batches 1 8] [--rounds 5] [--window 1.0] [--threads N]

Targets (issue 2): SD/LDM ≥ 14× (the paper's MACs ratio is 14.3×) and SD/Lite ≥ 1.1×. The three models
and a large fp32 `torch.mm` (this machine's matmul peak) are timed in interleaved rounds, in a rotating
order, and medians are reported, so that load from other processes hits every model alike. A profile of
one step per model then splits the time into convolutions, attention, GroupNorm, the wavelet gates and
the rest, which is where a shortfall against the MACs ratio comes from.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.machine import RESULTS, describe_machine, write_result
from slimdiff.metrics.complexity import classic_attention, steps_per_second
from slimdiff.models.gating import WGDown, WGUp
from slimdiff.models.presets import get_preset

MODELS = ("sd-f4", "lite-ldm-f4", "ldm-f4")
ATTENTION_OPS = ("aten.bmm", "aten.baddbmm")

# Profiler op names → the parts of a UNet step they belong to.
CATEGORIES = {
    "convolution": ("convolution", "conv2d", "mkldnn_convolution", "_slow_conv2d"),
    "attention": ("scaled_dot_product", "bmm", "softmax"),
    "linear": ("aten::mm", "aten::addmm", "aten::linear"),
    "group_norm": ("group_norm",),
}


def work_split(name: str, batch: int) -> tuple[int, int]:
    """(conv + linear MACs, attention-matmul MACs) of one step, counted on the meta device (no memory,
    no time); there SDPA decomposes into batched matmuls, so the attention products are visible."""
    preset = get_preset(name)
    with torch.device("meta"):
        model, inputs = preset.build(), preset.example_inputs(batch)
    with torch.no_grad(), classic_attention(model), FlopCounterMode(display=False) as counter:
        model(**inputs)
    flops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    attention = sum(flops.get(op, 0) for op in ATTENTION_OPS) // 2
    return sum(flops.values()) // 2 - attention, attention


def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    """fp32 GFLOP/s of an n×n×n `torch.mm`, the best of `repeats`: this machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _category(op: str) -> str:
    for category, needles in CATEGORIES.items():
        if any(needle in op for needle in needles):
            return category
    return "other"


def _open_gate_range(module: torch.nn.Module, _inputs) -> None:
    module.profiler_range = record_function("WG")
    module.profiler_range.__enter__()


def _close_gate_range(module: torch.nn.Module, _inputs, _output) -> None:
    module.profiler_range.__exit__(None, None, None)


def time_split(model: torch.nn.Module, inputs: dict[str, torch.Tensor], steps: int = 2) -> dict[str, float]:
    """Share of one step's self CPU time per category, with the wavelet gates (WG-Down/Up) on their own."""
    gates = [m for m in model.modules() if isinstance(m, WGDown | WGUp)]
    handles = [
        handle
        for g in gates
        for handle in (
            g.register_forward_pre_hook(_open_gate_range),
            g.register_forward_hook(_close_gate_range),
        )
    ]
    try:
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                model(**inputs)
    finally:
        for h in handles:
            h.remove()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares: dict[str, float] = defaultdict(float)
    for e in events:
        if e.key != "WG":
            shares[_category(e.key)] += e.self_cpu_time_total / total
    # The gates' ops are also in the categories above; report their inclusive share separately.
    shares["wavelet gates (incl.)"] = sum(e.cpu_time_total for e in events if e.key == "WG") / total
    return dict(shares)


def measure(batch: int, rounds: int, window: float) -> dict:
    models = {name: get_preset(name).build().eval() for name in MODELS}
    inputs = {name: get_preset(name).example_inputs(batch) for name in MODELS}
    for name in MODELS:  # warm-up: first calls allocate and pick kernels
        steps_per_second(models[name], inputs[name], min_seconds=0.0, warmup=1)
    speed: dict[str, list[float]] = {name: [] for name in MODELS}
    peak: list[float] = []
    for r in range(rounds):
        order = MODELS[r % len(MODELS) :] + MODELS[: r % len(MODELS)]
        for name in order:
            speed[name].append(steps_per_second(models[name], inputs[name], min_seconds=window, warmup=0))
        peak.append(matmul_gflops())
        print(
            f"  batch {batch} round {r + 1}/{rounds}: " + ", ".join(f"{n} {speed[n][-1]:.2f}" for n in MODELS)
        )
    work = {name: work_split(name, batch) for name in MODELS}
    sd_gflops = [2 * sum(work["sd-f4"]) * s / 1e9 for s in speed["sd-f4"]]
    return {
        "batch": batch,
        "steps_per_s": {n: statistics.median(v) for n, v in speed.items()},
        "steps_per_s_all": speed,
        "sd_over_ldm": statistics.median(s / t for s, t in zip(speed["sd-f4"], speed["ldm-f4"], strict=True)),
        "sd_over_lite": statistics.median(
            s / t for s, t in zip(speed["sd-f4"], speed["lite-ldm-f4"], strict=True)
        ),
        "macs_conv_linear": {n: w[0] for n, w in work.items()},
        "macs_attention": {n: w[1] for n, w in work.items()},
        "matmul_peak_gflops": statistics.median(peak),
        "sd_gflops": statistics.median(sd_gflops),
        "sd_fraction_of_peak": statistics.median(g / p for g, p in zip(sd_gflops, peak, strict=True)),
        "time_split": {n: time_split(models[n], inputs[n]) for n in MODELS},
    }


def report(results: list[dict]) -> str:
    lines = [
        "| batch | SD steps/s | Lite steps/s | LDM steps/s | SD/LDM (target ≥ 14×) | SD/Lite (target ≥ 1.1×) "
        "| matmul peak GFLOP/s | SD GFLOP/s | SD / peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["steps_per_s"]
        lines.append(
            f"| {r['batch']} | {s['sd-f4']:.2f} | {s['lite-ldm-f4']:.2f} | {s['ldm-f4']:.3f} "
            f"| {r['sd_over_ldm']:.1f}× | {r['sd_over_lite']:.2f}× | {r['matmul_peak_gflops']:.0f} "
            f"| {r['sd_gflops']:.0f} | {100 * r['sd_fraction_of_peak']:.0f}% |"
        )
    first = results[0]
    conv, attn = first["macs_conv_linear"], first["macs_attention"]
    lines += [
        "",
        "Work per step at batch 1 (GMACs): conv + linear (the paper's convention) / attention matmuls / total "
        "(SD GFLOP/s counts the total, 1 MAC = 2 FLOPs):",
        "",
        "| model | conv + linear | attention | total | LDM / model, conv + linear | LDM / model, total |",
        "|---|---|---|---|---|---|",
    ]
    for n in MODELS:
        lines.append(
            f"| {n} | {conv[n] / 1e9:.2f} | {attn[n] / 1e9:.2f} | {(conv[n] + attn[n]) / 1e9:.2f} "
            f"| {conv['ldm-f4'] / conv[n]:.1f}× | {(conv['ldm-f4'] + attn['ldm-f4']) / (conv[n] + attn[n]):.1f}× |"
        )
    for r in results:
        categories = sorted({c for split in r["time_split"].values() for c in split})
        lines += [
            "",
            f"Share of self CPU time per step, batch {r['batch']} (torch.profiler; gates inclusive of their ops):",
            "",
            "| model | " + " | ".join(categories) + " |",
            "|---|" + "---|" * len(categories),
        ]
        for n in MODELS:
            split = r["time_split"][n]
            lines.append(f"| {n} | " + " | ".join(f"{100 * split.get(c, 0):.0f}%" for c in categories) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=1.0, help="seconds per model per round (≥ 1 step)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--name", default="throughput", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    results = [measure(b, args.rounds, args.window) for b in args.batches]
    load_after = os.getloadavg()
    body = report(results)
    body += (
        f"\n\nLoad average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
        f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} (other processes share the cores; "
        "ratios come from the same rounds, so they are steadier than absolute steps/s).\n"
    )
    print(body)
    path = write_result(args.name, body)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"machine": describe_machine(), "results": results}, indent=2)
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
