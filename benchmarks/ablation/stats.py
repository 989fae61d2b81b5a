"""Statistics and tables of the ablation study (`benchmarks/ablation/`), from its per-run JSON files.

Every metric is lower-is-better. Per arm: mean ± standard deviation over seeds. Against the Lite baseline:
the paired difference arm − Lite per seed (same seed = same data order, noise and evaluation x_t), its mean
and 95% t-interval, and the share of the Lite → teacher gap it closes, mean(Lite − arm) / (mean Lite −
teacher), with the interval scaled the same way (the paper's SD closes 55% of the FID gap on FFHQ).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping

# key in a run's "metrics" (dotted) → column label. All lower-is-better.
METRICS = {
    "eps.low": "ε-err low",
    "eps.high": "ε-err high",
    "eps_teacher.low": "ε−teacher low",
    "eps_teacher.high": "ε−teacher high",
    "swd.32x32": "SWD 32² level",
    "swd.16x16": "SWD 16² level",
    "swd.mean": "SWD mean",
    "spectrum.low": "spectrum err low",
    "spectrum.high": "spectrum err high",
}
BASELINE = "Lite"
# The paper's Table 5 (FFHQ FID, lower is better) for the same arms; its teacher (LDM) scores 5.0.
PAPER_FID = {
    "Lite": 17.3,
    "+spatial": 16.6,
    "+freq": 15.3,
    "+WG": 14.7,
    "spatial+freq": 12.4,
    "WG+spatial": 12.3,
    "WG+freq": 11.4,
    "SD": 10.5,
}
PAPER_TEACHER_FID = 5.0


def lookup(tree: Mapping, dotted: str) -> float | None:
    """The value at a dotted path; integer parts index lists ("eps.buckets.3.high")."""
    node = tree
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return None
    return float(node)


def bucket_metrics(runs: list[Mapping], key: str = "eps_teacher", band: str = "high") -> dict[str, str]:
    """One metric per timestep bucket of `key` (dotted path → "t a–b"), for the tables above."""
    for run in runs:
        if key in run["metrics"]:
            buckets = run["metrics"][key]["buckets"]
            return {
                f"{key}.buckets.{i}.{band}": f"t {b['t_from']}–{b['t_to'] - 1}" for i, b in enumerate(buckets)
            }
    return {}


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile for `df` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for one value)."""
    if not values:
        return math.nan, math.nan
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean of `values` (low = high = nan for fewer than two)."""
    mean, std = mean_std(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(len(values) - 1, level) * std / math.sqrt(len(values))
    return mean, mean - half, mean + half


def t_test_p(values: list[float]) -> float:
    """Two-sided p of the one-sample t-test of mean 0 (nan for fewer than two values or no spread)."""
    from scipy.stats import t

    mean, std = mean_std(values)
    if len(values) < 2 or not std > 0:
        return math.nan
    return float(2 * t.sf(abs(mean) / (std / math.sqrt(len(values))), len(values) - 1))


def holm_levels(pvalues: list[float], level: float = 0.95) -> list[float]:
    """Holm's step-down over k comparisons as confidence levels, one per p in the given order: the i-th
    smallest p (i = 0, 1, …) is tested at 1 − α/(k − i) while all before it were rejected; from the first
    that is not, the rest keep that level (their p is larger, so their intervals hold 0 too). An interval at
    its level excludes 0 exactly when Holm rejects that comparison. nan p's are never rejected."""
    alpha, k = 1 - level, len(pvalues)
    order = sorted(range(k), key=lambda i: (math.isnan(pvalues[i]), pvalues[i]))
    levels, current, rejecting = [level] * k, level, True
    for rank, i in enumerate(order):
        if rejecting:
            current = 1 - alpha / (k - rank)
            rejecting = pvalues[i] < alpha / (k - rank)
        levels[i] = current
    return levels


def paired_difference(arm: Mapping[int, float], base: Mapping[int, float]) -> dict:
    """arm − base over the seeds both have: n, mean, 95% interval, and the per-seed differences."""
    seeds = sorted(set(arm) & set(base))
    diffs = [arm[s] - base[s] for s in seeds]
    mean, low, high = interval(diffs)
    return {
        "n": len(diffs),
        "mean": mean,
        "low": low,
        "high": high,
        "per_seed": dict(zip(seeds, diffs, strict=True)),
    }


def gap_closed(arm: Mapping[int, float], base: Mapping[int, float], teacher: float | None) -> dict:
    """Share of the base → teacher gap that the arm closes, mean(base − arm) / (mean base − teacher) over the
    seeds both have, with the paired interval scaled alike. nan when the base is not worse than the teacher."""
    d = paired_difference(arm, base)
    seeds = sorted(set(arm) & set(base))
    gap = statistics.mean(base[s] for s in seeds) - teacher if seeds and teacher is not None else math.nan
    if not gap > 0:
        return {"n": d["n"], "mean": math.nan, "low": math.nan, "high": math.nan, "gap": gap}
    return {
        "n": d["n"],
        "mean": -d["mean"] / gap,
        "low": -d["high"] / gap,
        "high": -d["low"] / gap,
        "gap": gap,
    }


def by_seed(runs: Iterable[Mapping], arm: str, metric: str) -> dict[int, float]:
    """seed → `metric` of `arm`'s runs (runs without the metric are left out)."""
    out = {}
    for run in runs:
        value = lookup(run["metrics"], metric)
        if run["arm"] == arm and value is not None:
            out[int(run["seed"])] = value
    return out


def _g(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.{digits}g}"


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:+.0f}%"


def arm_table(
    runs: list[Mapping], arms: list[str], teacher: Mapping | None, metrics: Mapping[str, str] = METRICS
) -> list[str]:
    """Mean ± std per arm (and the teacher's value)."""
    head = ["arm", "seeds", *metrics.values()]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if teacher is not None:
        values = [_g(lookup(teacher["metrics"], m)) for m in metrics]
        rows.append("| teacher | 1 | " + " | ".join(values) + " |")
    for arm in arms:
        cells, n = [], 0
        for m in metrics:
            values = list(by_seed(runs, arm, m).values())
            n = max(n, len(values))
            mean, std = mean_std(values)
            cells.append(_g(mean) if math.isnan(std) else f"{_g(mean)} ± {_g(std, 2)}")
        if n:
            rows.append(f"| {arm} | {n} | " + " | ".join(cells) + " |")
    return rows


def _teacher_value(teacher: Mapping | None, metric: str) -> float | None:
    """The teacher's end of the gap on `metric`. Its distance to itself is 0, so the gap of an ε−teacher metric
    is the baseline's value."""
    if metric.startswith("eps_teacher"):
        return 0.0
    return lookup(teacher["metrics"], metric) if teacher else None


def paired_table(
    runs: list[Mapping],
    arms: list[str],
    teacher: Mapping | None,
    base: str = BASELINE,
    metrics: Mapping[str, str] = METRICS,
) -> list[str]:
    """Per arm and metric: mean paired Δ to the base [95% interval] and the share of the gap closed; ✓ marks an
    interval entirely below 0 (better than the base beyond the seed spread), ✗ entirely above 0."""
    head = ["arm vs " + base, *metrics.values()]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms:
        if arm == base:
            continue
        cells, n = [], 0
        for m in metrics:
            a, b = by_seed(runs, arm, m), by_seed(runs, base, m)
            d = paired_difference(a, b)
            n = max(n, d["n"])
            if not d["n"]:
                cells.append("—")
                continue
            mark = "✓" if d["high"] < 0 else "✗" if d["low"] > 0 else ""
            closed = gap_closed(a, b, _teacher_value(teacher, m))
            cells.append(
                f"{_g(d['mean'], 2)} [{_g(d['low'], 2)}, {_g(d['high'], 2)}] {mark} ({_pct(closed['mean'])})"
            )
        if n:
            rows.append(f"| {arm} (n={n}) | " + " | ".join(cells) + " |")
    return rows


def paper_table(runs: list[Mapping], teacher: Mapping | None, metrics: Mapping[str, str]) -> list[str]:
    """The paper's arms in its order: its FID and share of the Lite → teacher gap closed beside ours (the share
    of Lite's gap each arm closes on `metrics`, paired over seeds, [95% interval])."""
    head = ["arm", "paper FID", "paper: gap closed", *(f"ours: {label}" for label in metrics.values())]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, fid in sorted(PAPER_FID.items(), key=lambda item: -item[1]):
        paper = (PAPER_FID[BASELINE] - fid) / (PAPER_FID[BASELINE] - PAPER_TEACHER_FID)
        cells = []
        for m in metrics:
            closed = gap_closed(by_seed(runs, arm, m), by_seed(runs, BASELINE, m), _teacher_value(teacher, m))
            n = closed["n"]
            if arm == BASELINE or not n:
                cells.append("baseline" if n else "—")
            else:
                cells.append(
                    f"{_pct(closed['mean'])} [{_pct(closed['low'])}, {_pct(closed['high'])}] (n={n})"
                )
        rows.append(f"| {arm} | {fid:g} | {_pct(paper)} | " + " | ".join(cells) + " |")
    return rows


def bucket_table(runs: list[Mapping], arms: list[str], key: str = "eps_teacher") -> list[str]:
    """Mean over seeds of the high-band error per timestep bucket, per arm."""
    edges = None
    lines = []
    for arm in arms:
        chosen = [r for r in runs if r["arm"] == arm and key in r["metrics"]]
        if not chosen:
            continue
        buckets = [r["metrics"][key]["buckets"] for r in chosen]
        edges = edges or [(b["t_from"], b["t_to"]) for b in buckets[0]]
        means = [statistics.mean(run[i]["high"] for run in buckets) for i in range(len(edges))]
        lines.append(f"| {arm} | " + " | ".join(f"{v:.3g}" for v in means) + " |")
    if edges is None:
        return []
    head = "| arm | " + " | ".join(f"t {a}–{b - 1}" for a, b in edges) + " |"
    return [head, "|" + "---|" * (len(edges) + 1), *lines]
