"""What every benchmark shares: interleaved timing; result files with the command, machine and date."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def describe_machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}"
    )


def write_result(name: str, body: str, machine: str | None = None) -> Path:
    """Write benchmarks/results/<name>.md with the exact command, the machine and the date."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    # `python -m benchmarks.x` runs x (a module) or x/__main__.py (a package): name x either way
    spec = sys.modules["__main__"].__spec__
    module = spec.name.removesuffix(".__main__") if spec else "benchmarks." + Path(sys.argv[0]).stem
    command = " ".join(["python -m " + module, *sys.argv[1:]])
    header = (
        f"# {name}\n\n"
        f"- command: `{command}`\n"
        f"- machine: {machine or describe_machine()}\n"
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
    )
    path = RESULTS / f"{name}.md"
    path.write_text(header + body.rstrip() + "\n")
    return path


def interleaved_medians(
    variants: dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Median seconds per call of each variant, after one warm-up call each, timed in interleaved rounds so
    that load from other processes hits every variant alike. `clock`: wall time, or `time.process_time` for
    the process's CPU time."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def status_kib(field: str) -> int:
    """A size field of /proc/self/status (VmRSS, VmHWM, …) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def print_peak(seconds: float) -> None:
    """In a measuring child: its peak RSS (MiB) and `seconds`, as the JSON line `child_result` reads."""
    print(json.dumps({"rss_mib": status_kib("VmHWM") / 1024, "seconds": seconds}))


def child_result(module_args: list[str], threads: int | None = None) -> dict:
    """Run `python -m module_args…` in a fresh process and return the last JSON line it printed, or its error."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    child = subprocess.run(
        [sys.executable, "-m", *module_args], capture_output=True, text=True, check=False, env=env
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": child.stderr[-300:]}
