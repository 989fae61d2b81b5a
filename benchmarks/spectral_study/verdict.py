"""The committed rule of docs/ablation.md ("Re-posed (issue 26), part 2") applied to a returned
spectral_study.json: preconditions, the four Holm-corrected paired comparisons, the verdict word; a table and
two figures (per-seed results; Figure 6).

    python -m benchmarks.spectral_study.verdict benchmarks/results/spectral_study/spectral_study.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.ablation.stats import gap_closed, holm_levels, interval, paired_difference, t_test_p
from benchmarks.machine import RESULTS, write_result
from benchmarks.spectral_study.plan import ARMS

COMPARISONS = (  # (name, arm, base, metric): the rule's family, in its order
    ("(1) SD − Lite, high", "SD", "Lite", "high"),
    ("(2) SD − Lite, FD-FMNIST", "SD", "Lite", "fd"),
    ("(3) +WG − Lite, high", "+WG", "Lite", "high"),
    ("(4) KD(ω) − KD(ω≡1), high", "KD(ω)", "KD(ω≡1)", "high"),
)
REPORTED = (
    ("+WG split − +WG, high", "+WG split", "+WG", "high"),
    ("SD ω-mean − SD, high", "SD ω-mean", "SD", "high"),
)
REPORTED += (("SD − Lite, SWD", "SD", "Lite", "swd"), ("SD − Lite, low", "SD", "Lite", "low"))


def metric(final: dict, name: str) -> float:
    return (
        final["samples"]["fd_fmnist" if name == "fd" else "swd"]
        if name in ("fd", "swd")
        else final["eps"][name]
    )


def by_seed(record: dict, arm: str, name: str) -> dict[int, float]:
    return {
        r["seed"]: metric(r["final"], name)
        for r in record["runs"].values()
        if r["arm"] == arm and "final" in r
    }


def plateau_gain(record: dict, arm: str = "Lite") -> float | None:
    """Mean over seeds of the held-out ε-MSE (all) gain from S/2 to S; None without a round at S/2."""
    gains = []
    for run in record["runs"].values():
        rounds = {r["steps"]: r["eps"]["all"] for r in run["rounds"]}
        last = max(rounds)
        if run["arm"] == arm and last // 2 in rounds:
            gains.append((rounds[last // 2] - rounds[last]) / rounds[last // 2])
    return statistics.mean(gains) if gains else None


def judge(record: dict) -> dict:
    teacher = record["teacher"]["final"]
    lite_high, lite_fd = by_seed(record, "Lite", "high"), list(by_seed(record, "Lite", "fd").values())
    gain = plateau_gain(record)
    pre = {
        "P1 Lite plateaued (gain S/2 → S < 3 %)": (gain, None if gain is None else gain < 0.03),
        "P2 teacher high ≤ Lite high / 1.5": (
            statistics.mean(lite_high.values()) / teacher["eps"]["high"],
            statistics.mean(lite_high.values()) / teacher["eps"]["high"] >= 1.5,
        ),
        "P3 teacher FD below Lite by ≥ 3 sd": (
            (statistics.mean(lite_fd) - teacher["samples"]["fd_fmnist"]) / statistics.stdev(lite_fd),
            statistics.mean(lite_fd) - teacher["samples"]["fd_fmnist"] >= 3 * statistics.stdev(lite_fd),
        ),
    }
    rows = []
    for name, arm, base, m in COMPARISONS + REPORTED:
        d = paired_difference(by_seed(record, arm, m), by_seed(record, base, m))
        rows.append(
            {
                "name": name,
                **{k: v for k, v in d.items() if k != "per_seed"},
                "diffs": list(d["per_seed"].values()),
            }
        )
    for row in rows:
        row["p"] = t_test_p(row["diffs"])
    # the family's intervals at their Holm step-down levels: one lies below 0 exactly when Holm rejects it
    family = rows[: len(COMPARISONS)]
    for row, level in zip(family, holm_levels([r["p"] for r in family]), strict=True):
        _, row["holm_low"], row["holm_high"] = interval(row["diffs"], level)
        row["holm_level"] = level
    below = [r["mean"] < 0 and r["holm_high"] < 0 for r in family]
    share = gap_closed(by_seed(record, "SD", "high"), lite_high, teacher["eps"]["high"])
    low = next(r for r in rows if r["name"] == "SD − Lite, low")
    low_ok = low["high"] <= -rows[0]["mean"]
    preconditions = all(holds is True for _, holds in pre.values())
    if not preconditions:
        word = "untestable at this scale"
    elif below[0] and below[1] and share["mean"] >= 0.25 and low_ok and below[2] and below[3]:
        word = "shown"
    elif share["high"] < 0.25:
        word = "refuted at this scale"
    else:
        word = "inconclusive"
    return {
        "verdict": word,
        "preconditions": pre,
        "comparisons": rows,
        "sd_share_of_gap": share,
        "low_ok": low_ok,
    }


def _row(r: dict) -> str:
    holm = (
        f"[{r['holm_low']:.4g}, {r['holm_high']:.4g}] at {r['holm_level']:.4g}" if "holm_level" in r else "—"
    )
    return f"| {r['name']} | {r['n']} | {r['mean']:.4g} | [{r['low']:.4g}, {r['high']:.4g}] | {r['p']:.3g} | {holm} |"


def arm_table(record: dict) -> list[str]:
    lines = [
        "| arm | seeds | high (t ≥ 300) | low (t ≥ 300) | ε-MSE all | FD-FMNIST | SWD ×10³ |",
        "|---|---|---|---|---|---|---|",
    ]
    teacher = record["teacher"]["final"]
    cells = [f"{metric(teacher, m):.4g}" for m in ("high", "low", "all", "fd", "swd")]
    lines.append(
        f"| teacher ({record['teacher']['rounds'][-1]['steps']} steps) | 1 | " + " | ".join(cells) + " |"
    )
    for arm in ARMS:
        columns = [list(by_seed(record, arm, m).values()) for m in ("high", "low", "all", "fd", "swd")]
        if columns[0]:
            cells = [
                f"{statistics.mean(v):.4g} ± {statistics.stdev(v):.2g}" if len(v) > 1 else f"{v[0]:.4g}"
                for v in columns
            ]
            lines.append(f"| {arm} | {len(columns[0])} | " + " | ".join(cells) + " |")
    return lines


def plot(record: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, arm in enumerate(ARMS):
        high, fd = by_seed(record, arm, "high"), by_seed(record, arm, "fd")
        seeds = sorted(high)
        axes[0].scatter([high[s] for s in seeds], [fd[s] for s in seeds], label=arm, color=f"C{i}")
    teacher = record["teacher"]["final"]
    axes[0].scatter(
        [teacher["eps"]["high"]],
        [teacher["samples"]["fd_fmnist"]],
        marker="*",
        s=200,
        color="k",
        label="teacher",
    )
    axes[0].set(
        xlabel="high-band ε-error, t ≥ 300 (held out)",
        ylabel="FD-FMNIST",
        title=f"students at {record['student_steps']} steps, one point per seed",
    )
    axes[0].legend(fontsize=8)
    rows = record.get("figure6", [])
    for j, name in enumerate(sorted({r["model"] for r in rows})):
        for dtype, style in (("float16", "-"), ("bfloat16", "--")):
            pts = [
                (r["batch"], r["images_per_s"]) for r in rows if r["model"] == name and r["dtype"] == dtype
            ]
            axes[1].plot(*zip(*pts, strict=True), style, marker="o", color=f"C{j}", label=f"{name} {dtype}")
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="batch",
        ylabel="images (UNet steps × batch) / s",
        title="Figure 6 on the H200 (eager PyTorch)",
    )
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "spectral_study.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("record", type=Path)
    record = json.loads(parser.parse_args().record.read_text())
    result = judge(record)
    lines = [
        f"**Verdict: {result['verdict']}** (rule: docs/ablation.md, part 2). GPU run: {record['machine']}; started "
        f"{record['started']}, {record['elapsed_s']:.0f} s of a {record['budget_s']:.0f} s budget, {record['workers']} worker processes; "
        f"teacher {record['teacher']['rounds'][-1]['steps']} steps (stopped: {record['teacher'].get('stopped')}); "
        f"students S = {record['student_steps']} steps; λ = {record['calibration']['lambda']:.4g}.",
        "",
        "Preconditions:",
        "",
    ]
    for name, (value, holds) in result["preconditions"].items():
        shown = "not measurable" if value is None else f"{value:.3g}"
        lines.append(
            f"- {name}: {shown} → {'holds' if holds else 'fails' if holds is False else 'cannot be checked'}"
        )
    share = result["sd_share_of_gap"]
    lines += [
        "",
        f"SD's share of the Lite → teacher gap on high: {share['mean']:.1%} [{share['low']:.1%}, {share['high']:.1%}]",
        "",
        "| comparison | n | mean | 95 % CI | p | Holm interval (family of 4) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(r) for r in result["comparisons"]]
    lines += ["", *arm_table(record), "", "![per-seed results and Figure 6](spectral_study.png)"]
    figure6 = record.get("figure6", [])
    if figure6:
        lines += [
            "",
            "Figure 6 (UNet steps/s, eager PyTorch, one H200):",
            "",
            "| dtype | batch | " + " | ".join(sorted({r["model"] for r in figure6})) + " |",
            "|---|---|---|---|---|",
        ]
        for dtype in ("float16", "bfloat16"):
            for batch in sorted({r["batch"] for r in figure6}):
                cells = [
                    f"{r['steps_per_s']:.1f}"
                    for r in sorted(figure6, key=lambda r: r["model"])
                    if r["dtype"] == dtype and r["batch"] == batch
                ]
                lines.append(f"| {dtype} | {batch} | " + " | ".join(cells) + " |")
    plot(record, RESULTS)
    write_result("spectral_study", "\n".join(lines), machine=record["machine"])
    (RESULTS / "spectral_study.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
