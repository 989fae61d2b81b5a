"""The verdict rule of issue 26 part 1 (docs/ablation.md, "the paper's toy — verdict rule written before any
run"), computed from per-seed values; how each phrase of the rule is read is stated in docs/ablation.md,
"Reading of the rule", written before the main runs.

Input: values[arm][seed] = {"rare": …, "common": …} for the arms in ARMS. Only seeds that every arm has
count (the comparisons are paired).
"""

from __future__ import annotations

import math
import statistics

from benchmarks.ablation.stats import holm_levels, interval, t_test_p

TEACHER, PLAIN, KD_UNIFORM, KD_OMEGA = "teacher", "plain", "KD(ω≡1)", "KD(ω)"
ARMS = (TEACHER, PLAIN, KD_UNIFORM, KD_OMEGA)
TEACHER_RATIO = 0.7  # the teacher's rare error ≤ 0.7 × plain's
PREMISE_RATIO = 1.5  # plain's rare error ≥ 1.5 × its common error
SHARE = 0.25  # share of the plain → teacher gap on rare that KD(ω) must close
LEVEL = 0.95
COMPARISONS = {"KD(ω) − plain": (KD_OMEGA, PLAIN), "KD(ω) − KD(ω≡1)": (KD_OMEGA, KD_UNIFORM)}
VERDICTS = ("shown", "refuted at this scale", "inconclusive", "untestable at this scale")


def _differences(values: dict, arm: str, base: str, seeds: list[int], endpoint: str) -> list[float]:
    return [values[arm][s][endpoint] - values[base][s][endpoint] for s in seeds]


def _interval(diffs: list[float], level: float) -> dict:
    mean, low, high = interval(diffs, level)
    return {"mean": mean, "low": low, "high": high, "level": level, "p": t_test_p(diffs)}


def verdict(values: dict[str, dict[int, dict[str, float]]]) -> dict:
    """Preconditions, the two Holm-corrected paired comparisons on rare, the share of the gap closed, the
    common-endpoint check and the verdict word (one of VERDICTS), with every number it rests on."""
    seeds = sorted(set.intersection(*(set(values.get(arm, {})) for arm in ARMS)))
    out: dict = {"n": len(seeds), "seeds": seeds}
    if not seeds:
        return {**out, "verdict": "inconclusive", "why": "No seed has all four arms yet"}
    means = {
        arm: {e: statistics.mean(values[arm][s][e] for s in seeds) for e in ("rare", "common")}
        for arm in ARMS
    }
    teacher_ok = means[TEACHER]["rare"] <= TEACHER_RATIO * means[PLAIN]["rare"]
    premise_ok = means[PLAIN]["rare"] >= PREMISE_RATIO * means[PLAIN]["common"]
    out["means"] = means
    out["preconditions"] = {
        "teacher rare / plain rare": means[TEACHER]["rare"] / means[PLAIN]["rare"],
        "teacher_ok": teacher_ok,
        "plain rare / plain common": means[PLAIN]["rare"] / means[PLAIN]["common"],
        "premise_ok": premise_ok,
    }
    diffs = {name: _differences(values, a, b, seeds, "rare") for name, (a, b) in COMPARISONS.items()}
    levels = holm_levels([t_test_p(d) for d in diffs.values()], LEVEL)
    out["comparisons"] = {
        name: _interval(d, level) for (name, d), level in zip(diffs.items(), levels, strict=True)
    }
    main = out["comparisons"]["KD(ω) − plain"]
    gap = means[PLAIN]["rare"] - means[TEACHER]["rare"]
    out["gap"] = gap
    out["share"] = (
        {
            "mean": -main["mean"] / gap,
            "low": -main["high"] / gap,
            "high": -main["low"] / gap,
            "level": main["level"],
        }
        if gap > 0
        else {"mean": math.nan, "low": math.nan, "high": math.nan, "level": main["level"]}
    )
    out["common"] = _interval(_differences(values, KD_OMEGA, PLAIN, seeds, "common"), LEVEL)
    out["verdict"], out["why"] = _word(out, teacher_ok and premise_ok)
    return out


def _word(out: dict, preconditions: bool) -> tuple[str, str]:
    if not preconditions:
        return "untestable at this scale", "A precondition fails"
    if out["n"] < 2:
        return "inconclusive", "Fewer than two paired seeds: no interval"
    below = all(c["high"] < 0 for c in out["comparisons"].values())
    share, common = out["share"], out["common"]
    rare_gain = -out["comparisons"]["KD(ω) − plain"]["mean"]
    if below and share["mean"] >= SHARE and common["high"] <= rare_gain:
        return (
            "shown",
            "Both Holm intervals below 0, share ≥ 25 %, common not worse by more than the rare gain",
        )
    if share["high"] < SHARE:
        return "refuted at this scale", "The upper bound of the share of the gap closed is below 25 %"
    return "inconclusive", "Neither shown nor refuted: see the intervals"
