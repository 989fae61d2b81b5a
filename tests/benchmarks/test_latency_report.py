"""The few-step latency page (benchmarks/latency/few_step.py): it says whether other work shared the machine
from the load it measured, and reads each row against the goals."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))  # `benchmarks` lives beside src/, not in the package

from benchmarks.latency import few_step  # noqa: E402

ROW = "SD-f4|ort|fp32|slim|ddim|1"
TIMES = {ROW: [0.5, 0.6, 0.4], few_step.LDM_COMPOSED: [700.0, 710.0, 720.0]}


def test_the_page_says_idle_or_loaded_from_the_measured_load():
    idle = few_step.report(TIMES, {ROW: {"rss_mib": 700.0}}, 2, 3, [[0.88, 1.5, 1.9], [1.94, 1.6, 1.8]])
    assert "otherwise idle" in idle and "inflated" not in idle and "0.88 / 1.50 / 1.90; 1.94" in idle
    busy = few_step.report(TIMES, {ROW: {"rss_mib": 700.0}}, 2, 3, [[0.88, 1.5, 1.9], [9.34, 9.0, 8.0]])
    assert "was loaded" in busy and "inflated by contention" in busy
    row = next(line for line in idle.splitlines() if line.startswith("| SD-f4"))
    assert "| 0.500 |" in row and "| 1420× | yes | yes | 700 | yes |" in row  # median 0.5 s against 710 s
