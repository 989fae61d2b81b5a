"""The ablation study's results page, benchmarks/results/ablation/README.md: tables per data set, plots, links
to the sample grids — rebuilt from the committed per-run JSONs after every run (`--report-only` on demand)."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict
from pathlib import Path

from benchmarks.ablation import stats
from benchmarks.ablation.plan import ARMS, Run, Settings, write_text
from benchmarks.ablation.plots import plot_study
from benchmarks.machine import describe_machine


def _load(results: Path) -> list[dict]:
    # Not ".tmp-*.json": another worker may be writing one this moment (write_json).
    return [json.loads(p.read_text()) for p in sorted((results / "runs").glob("[!.]*.json"))]


def rebuild_report(s: Settings, runs: list[Run], results: Path) -> Path:
    """README.md of the results folder: tables per group, plots; from whatever runs have finished."""
    records = _load(results)
    teachers = {r["group"]: r for r in records if r["arm"] == "teacher"}
    students = [r for r in records if r["arm"] != "teacher"]
    done = {r["id"] for r in students}
    lines = [
        "# Ablation study (issue 12): Lite → SD at CPU scale, with seeds",
        "",
        "- command: `OMP_NUM_THREADS=1 python -m benchmarks.ablation --resume` (settings in `study.json`)",
        f"- machine: {describe_machine()}",
        f"- updated: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{len(done)} of {len(runs)} planned runs finished",
        f"- settings: {json.dumps(asdict(s))}",
        "",
        "Metrics are lower-is-better. Paired table: mean of (arm − Lite) over seeds [95% t-interval]; ✓ the "
        "interval lies below 0 (better than Lite beyond the seed spread), ✗ above 0; (share of the Lite → "
        "teacher gap closed; the paper's SD closes 55% of the FID gap).",
        "",
    ]
    arms = list(ARMS)
    for group in ("textures", "photos"):
        chosen = [r for r in students if r["group"] == group]
        if not chosen:
            continue
        teacher = teachers.get(group)
        lines += [f"## {group} ({s.steps} steps per student)", ""]
        lines += stats.arm_table(chosen, arms, teacher) + [""]
        lines += stats.paired_table(chosen, arms, teacher) + [""]
        lines += ["The paper's ordering beside ours (share of the Lite → teacher gap each arm closes):", ""]
        paper_metrics = {k: stats.METRICS[k] for k in ("swd.mean", "eps_teacher.low", "eps_teacher.high")}
        lines += stats.paper_table(chosen, teacher, paper_metrics) + [""]
        lines += ["High-band ε-error against the teacher per timestep bucket (mean over seeds):", ""]
        lines += stats.bucket_table(chosen, arms) + [""]
        buckets = stats.bucket_metrics(chosen)
        lines += [
            "The same, paired difference to Lite per bucket [95% t-interval] (share of Lite's value):",
            "",
        ]
        lines += stats.paired_table(chosen, arms, teacher, metrics=buckets) + [""]
        real = teacher.get("real") if teacher else None
        plots = plot_study(chosen, arms, teacher, real, results / group)
        lines += [f"![{p.stem}]({group}/{p.name})" for p in plots] + [""]
        lines += [
            "Sample grids (seed 0): "
            + ", ".join(
                f"[{a}](grids/{group}-{r['id'].removeprefix(group + '-')}.png)"
                for a in arms
                for r in chosen
                if r["arm"] == a and r["seed"] == 0
            )
            + f", [teacher](grids/teacher-{group}.png)",
            "",
        ]
    sweep = [r for r in students if r["group"] == "sweep"]
    if sweep:
        names = list(dict.fromkeys(r.arm for r in runs if r.group == "sweep"))  # the plan's order
        lines += [f"## Sweeps ({s.sweep_steps} steps, tiny-sd, textures; base = WG without teacher)", ""]
        lines += stats.arm_table(sweep, names, teachers.get("textures")) + [""]
        lines += stats.paired_table(sweep, names, teachers.get("textures"), base="WG, no teacher") + [""]
    path = results / "README.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
