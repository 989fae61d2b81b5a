"""benchmarks/machine.py's measuring children: the last JSON line comes back, with the peak RSS and the thread
count the child was given; a failing child comes back as its error, not as an exception."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))  # `benchmarks` lives beside src/, not in the package

from benchmarks.machine import child_result, status_kib  # noqa: E402

CHILD = """
import json, os
from benchmarks.machine import print_peak
print(json.dumps({"threads": os.environ.get("OMP_NUM_THREADS")}))
print("a line that is not JSON")
print_peak(1.5)
"""


def test_child_result_reads_the_child_s_last_json_line(tmp_path, monkeypatch):
    (tmp_path / "measuring_child.py").write_text(CHILD)
    (tmp_path / "failing_child.py").write_text("1 / 0\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    result = child_result(["measuring_child"], threads=3)
    assert result["seconds"] == 1.5 and 1 < result["rss_mib"] < 100_000
    failed = child_result(["failing_child"])
    assert set(failed) == {"error"} and "ZeroDivisionError" in failed["error"]


def test_the_child_is_given_the_thread_count(tmp_path, monkeypatch):
    (tmp_path / "threads_child.py").write_text(
        'import json, os\nprint(json.dumps({"threads": os.environ.get("OMP_NUM_THREADS")}))\n'
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert child_result(["threads_child"], threads=3) == {"threads": "3"}
    assert child_result(["threads_child"]) == {"threads": "7"}  # unchanged when not given


def test_status_kib_reads_this_process_s_sizes():
    assert 0 < status_kib("VmRSS") <= status_kib("VmHWM")
