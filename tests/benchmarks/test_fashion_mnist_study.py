"""The Fashion-MNIST reference table's SD − Lite comparison: paired by seed, against a hand computation."""

import statistics

import pytest
from scipy.stats import t

from benchmarks.fashion_mnist import Settings, table


def _record(arm: str, seed: int, fd: float, cas: float | None = None) -> dict:
    results = {"fd_fmnist": fd} | ({} if cas is None else {"cas": cas})
    return {"name": f"{arm}-s{seed}", "model": arm, "teacher": None, "seed": seed, "results": results}


def test_sd_minus_lite_is_paired_by_seed_with_a_t_interval():
    lite, sd = [40.0, 35.0, 38.0], [37.0, 34.0, 33.0]
    records = [_record("lite", s, v) for s, v in enumerate(lite)] + [
        _record("sd", s, v) for s, v in enumerate(sd)
    ]
    records += [_record("sd-class", 0, 30.0, 0.5)]  # one seed, no partner: no class row
    records = [{**r, "train_cpu_s": 1, "eval_cpu_s": 1} for r in records]
    body, _ = table(Settings(), records, 14)
    diffs = [b - a for a, b in zip(lite, sd, strict=True)]
    mean, half = statistics.mean(diffs), t.ppf(0.975, 2) * statistics.stdev(diffs) / 3**0.5
    row = next(line for line in body.splitlines() if line.startswith("| sd − lite, FD"))
    cells = row.split("|")
    assert cells[2].strip() == "3" and float(cells[3]) == pytest.approx(mean, abs=1e-3)
    low, high = (float(x) for x in cells[4].strip(" []").split(","))
    assert low == pytest.approx(mean - half, abs=1e-3) and high == pytest.approx(mean + half, abs=1e-3)
    assert "sd-class − lite-class" not in body
