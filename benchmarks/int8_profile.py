"""Where the time of an int8 UNet step goes: onnxruntime's profiler over the sd-f4 UNet graph (random weights;
speed does not depend on them), fp32 against several int8 quantisation settings, per operator type.

For each setting: the median seconds of one step (batch 1, interleaved rounds), the speed-up over fp32, and
per operator type the share of the step's kernel time — which ops run in int8 (QLinearConv, QLinearMatMul,
ConvInteger, MatMulInteger), which stay fp32 (Conv, MatMul, GroupNorm, Softmax, …) and what the
Quantize/DequantizeLinear pairs between them cost. The quality side of each setting (on a trained model,
calibrated on real latents) is `python -m benchmarks.int8_quality`.

    python -m benchmarks.int8_profile [--threads 1] [--rounds 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import RESULTS, describe_machine, interleaved_medians, write_result
from slimdiff.deploy.onnx_decoder import session_options
from slimdiff.deploy.onnx_unet import export_onnx, graph_inputs
from slimdiff.deploy.quantize import SETTINGS, quantize_graph
from slimdiff.models.presets import get_preset


def cpu_flags() -> str:
    """The CPU's int8 dot-product extensions (what MLAS's u8s8 kernels can use)."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)


def profile(path: Path, feed: dict, threads: int, runs: int) -> dict[str, float]:
    """Mean kernel microseconds per step of each operator type (onnxruntime's profiler, after a warm-up)."""
    import onnxruntime as ort

    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    per_op: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / (runs + 1)
    return dict(per_op)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.int8_profile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="profiled runs per graph")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--work", type=Path, default=Path("outputs/int8_profile"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    unet = get_preset("sd-f4").build().eval()
    # the preset starts conv_out at zero (an all-zero output has no error to compare); a random one does
    torch.nn.init.normal_(unet.conv_out.weight, std=0.02)
    graphs = {"fp32": args.work / "sd-f4.onnx"}
    if not graphs["fp32"].exists():
        export_onnx(unet, graphs["fp32"])
    feeds = [{k: v.numpy() for k, v in graph_inputs(unet.config, 1, s).items()} for s in range(8)]
    records = {}
    for name in args.settings:
        graphs[name] = args.work / f"sd-f4.{name}.onnx"
        if not graphs[name].exists():
            records[name] = quantize_graph(graphs["fp32"], graphs[name], feeds, setting=name)
            print(name, records[name], flush=True)
    import onnxruntime as ort

    feed = feeds[0]
    sessions = {
        name: ort.InferenceSession(str(p), session_options(args.threads), providers=["CPUExecutionProvider"])
        for name, p in graphs.items()
    }
    seconds = interleaved_medians(
        {name: (lambda s=s: s.run(None, feed)) for name, s in sessions.items()}, args.rounds
    )
    reference = sessions["fp32"].run(None, feed)[0]
    errors = {
        name: float(np.abs(s.run(None, feed)[0] - reference).max() / np.abs(reference).max())
        for name, s in sessions.items()
    }
    del sessions
    ops = {name: profile(p, feed, args.threads, args.runs) for name, p in graphs.items()}
    print(json.dumps({"seconds": seconds, "ops": ops}, indent=1), flush=True)
    machine = describe_machine()
    (RESULTS / "int8_profile.json").write_text(
        json.dumps({"machine": machine, "threads": args.threads, "seconds": seconds, "ops": ops}, indent=2)
    )
    print(write_result("int8_profile", report(seconds, ops, errors, args.threads), machine))


def report(seconds: dict, ops: dict, errors: dict, threads: int) -> str:
    load = os.getloadavg()
    lines = [
        f"CPU: {platform.machine()}; int8 extensions: {cpu_flags()}. "
        f"onnxruntime {__import__('onnxruntime').__version__}, {threads} thread(s), batch 1, the sd-f4 UNet "
        f"(64×64×3 latents, random weights). Load average at the end: {load[0]:.2f} / {load[1]:.2f} "
        f"(the 2-core machine was shared with other jobs; the ranking, not the last digit, is the finding).\n",
        "## One UNet step per setting\n",
        "| setting | what | s / step | × vs fp32 | max |Δ| / max |fp32| (random weights) |",
        "|---|---|---|---|---|",
    ]
    for name, s in seconds.items():
        what = "fp32 graph" if name == "fp32" else SETTINGS[name]["what"]
        lines.append(f"| {name} | {what} | {s:.3f} | {seconds['fp32'] / s:.2f}× | {errors[name]:.3f} |")
    all_ops = sorted({op for per in ops.values() for op in per}, key=lambda op: -ops["fp32"].get(op, 0))
    all_ops.sort(key=lambda op: -max(per.get(op, 0) for per in ops.values()))
    lines += [
        "",
        "## Kernel milliseconds per step, by operator type (onnxruntime profiler)\n",
        "| op type | " + " | ".join(ops) + " |",
        "|---|" + "---|" * len(ops),
    ]
    for op in all_ops:
        cells = []
        for per in ops.values():
            total = sum(per.values())
            v = per.get(op)
            cells.append("—" if v is None else f"{v / 1e3:.1f} ({100 * v / total:.0f}%)")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"{sum(per.values()) / 1e3:.1f}" for per in ops.values())
    lines.append(f"| **total** | {totals} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
