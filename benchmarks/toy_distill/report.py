"""The study's page (benchmarks/results/toy_distill.{md,json}) and figure (toy_distill.png): per-arm errors,
the preconditions, the two Holm-corrected comparisons, the share of the gap closed, the verdict, and the
gradient shares of the loss terms."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path

from benchmarks import machine
from benchmarks.ablation.stats import interval
from benchmarks.machine import describe_machine, write_result
from benchmarks.toy_distill.runs import Settings
from benchmarks.toy_distill.verdict import ARMS, verdict
from slimdiff.analysis.toy.signals import ALPHAS
from slimdiff.reporting.plots import figure, save


def _g(x: float, digits: int = 3) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.{digits}g}"


def _by_arm(records: list[dict]) -> dict[str, list[dict]]:
    return {arm: sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"]) for arm in ARMS}


def _ci(x: dict, pct: bool = False) -> str:
    f = (lambda v: "—" if math.isnan(v) else f"{100 * v:.0f} %") if pct else (lambda v: _g(v, 3))
    return f"{f(x['mean'])} [{f(x['low'])}, {f(x['high'])}]"


def _share_at(rs: list[dict], where: float) -> dict[str, float]:
    """Mean over seeds of each term's gradient share at the log entry a fraction `where` into training."""
    logs = [r["log"][min(len(r["log"]) - 1, round(where * (len(r["log"]) - 1)))] for r in rs]
    return {name: statistics.mean(log["grad_share"][name] for log in logs) for name in logs[0]["grad_share"]}


def body(s: Settings, records: list[dict], planned: int) -> tuple[str, dict]:
    arms = _by_arm(records)
    values = {
        arm: {r["seed"]: {"rare": r["rare"], "common": r["common"]} for r in rs} for arm, rs in arms.items()
    }
    v = verdict(values)
    interim = "" if v["n"] == s.seeds else f" (interim: {v['n']} of {s.seeds} seeds)"
    cpu = {arm: statistics.mean(r["train_cpu_s"] for r in rs) for arm, rs in arms.items() if rs}
    lines = [
        f"{len(records)} of {planned} runs finished. Settings: `{json.dumps(asdict(s))}`. Rule and its reading: "
        "docs/ablation.md, issue 26 part 1. Errors: `score_error`, the excess ε-error E‖ε̂ − ε*‖²/40 against "
        f"the exact ε* (evaluation seed {s.eval_seed}); rare = mean over α = 12, 16, common = over α = 1, 2.",
        "",
        f"## Verdict: **{v['verdict']}**{interim}",
        "",
        f"{v['why']}.",
        "",
        "| arm | seeds | CPU-s per run | " + " | ".join(f"α={a}" for a in ALPHAS) + " | rare | common |",
        "|---|---|---|" + "---|" * (len(ALPHAS) + 2),
    ]
    for arm, rs in arms.items():
        if not rs:
            continue
        per_alpha = [
            _g(statistics.mean(r["per_pattern"][i]["score_error"] for r in rs)) for i in range(len(ALPHAS))
        ]
        ends = [_g(statistics.mean(r[e] for r in rs)) for e in ("rare", "common")]
        lines.append(f"| {arm} | {len(rs)} | {cpu[arm]:.0f} | " + " | ".join(per_alpha + ends) + " |")
    if "preconditions" in v:
        p = v["preconditions"]
        lines += [
            "",
            "Means over the paired seeds. Preconditions: teacher rare / plain rare = "
            f"{_g(p['teacher rare / plain rare'])} (≤ 0.7: {'yes' if p['teacher_ok'] else 'no'}); plain rare / "
            f"plain common = {_g(p['plain rare / plain common'])} (≥ 1.5: {'yes' if p['premise_ok'] else 'no'}).",
            "",
            f"| paired difference (n = {v['n']}) | mean [interval] | level (Holm) | p |",
            "|---|---|---|---|",
        ]
        for name, c in v["comparisons"].items():
            lines.append(f"| {name}, rare | {_ci(c)} | {100 * c['level']:.1f} % | {_g(c['p'], 2)} |")
        c = v["common"]
        lines += [
            f"| KD(ω) − plain, common | {_ci(c)} | {100 * c['level']:.0f} % (not in the family) | {_g(c['p'], 2)} |",
            "",
            f"Share of the plain → teacher gap on rare ({_g(v['gap'])}) that KD(ω) closes: {_ci(v['share'], True)} "
            f"(the interval of KD(ω) − plain at its Holm level, scaled by the gap).",
        ]
    lines += [
        "",
        "Gradient-norm share of each weighted term (mean over seeds; ‖∇ term‖ / Σ_terms ‖∇ term‖):",
        "",
    ]
    for arm in ARMS[2:]:
        if arms[arm]:
            at = {f"{int(100 * w)} %": _share_at(arms[arm], w) for w in (0.0, 0.1, 0.5, 1.0)}
            cells = [
                f"{when} of training: " + ", ".join(f"{k} {100 * x:.0f} %" for k, x in sh.items())
                for when, sh in at.items()
            ]
            lines.append(f"- {arm}: " + "; ".join(cells))
    lines += ["", "![per-pattern error](toy_distill.png)"]
    return "\n".join(lines), v


def plot(records: list[dict], path: Path) -> Path:
    """Per-pattern error per arm (mean ± 95 % t-interval over seeds) and the KD arms' gradient shares."""
    fig, (ax, ax_share) = figure(width=11.0, height=3.8, ncols=2)
    for k, (arm, rs) in enumerate(_by_arm(records).items()):
        if not rs:
            continue
        stats = [interval([r["per_pattern"][i]["score_error"] for r in rs]) for i in range(len(ALPHAS))]
        x = [a * (1 + 0.02 * (k - 1.5)) for a in ALPHAS]  # arms side by side
        mean = [m for m, _, _ in stats]
        err = [
            [m - lo if not math.isnan(lo) else 0 for m, lo, _ in stats],
            [hi - m if not math.isnan(hi) else 0 for m, _, hi in stats],
        ]
        bars = ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, label=f"{arm} (n={len(rs)})")
        if arm in ARMS[2:]:
            its = [e["iteration"] for e in rs[0]["log"]]
            for term, style in (("eps", "-"), ("frequency", ":")):
                share = [
                    statistics.mean(r["log"][j]["grad_share"][term] for r in rs) for j in range(len(its))
                ]
                ax_share.plot(its, share, style, color=bars[0].get_color(), label=f"{arm}: {term}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ALPHAS, [str(a) for a in ALPHAS])
    ax.set_xlabel("pattern α (π ∝ rank⁻²: α = 16 the rarest)")
    ax.set_ylabel("excess ε-error vs exact ε*")
    ax.legend(fontsize=8)
    ax_share.set_xlabel("iteration")
    ax_share.set_ylabel("share of Σ ‖∇ term‖")
    if ax_share.lines:  # the KD arms' shares, once one has finished
        ax_share.legend(fontsize=7)
    return save(fig, path)


def rebuild(s: Settings, records: list[dict], planned: int) -> dict:
    """Write the page, its JSON and the figure from the finished records; returns the verdict."""
    text, v = body(s, records, planned)
    write_result("toy_distill", text)
    summary = {"settings": asdict(s), "verdict": v, "machine": describe_machine()}
    summary["runs"] = [{k: r[k] for k in ("seed", "arm", "rare", "common", "train_cpu_s")} for r in records]
    (machine.RESULTS / "toy_distill.json").write_text(json.dumps(summary, indent=1) + "\n")
    if records:
        plot(records, machine.RESULTS / "toy_distill.png")
    return v
