"""The toy distillation study (benchmarks/toy_distill/): Holm's step-down, the pre-registered verdict on
synthetic paired data, and a tiny study that writes its records, resumes without redoing them and leaves a
seed another process holds to it."""

from __future__ import annotations

import fcntl
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))  # `benchmarks` lives beside src/, not in the package

from benchmarks import machine  # noqa: E402
from benchmarks.ablation.stats import holm_levels, t_test_p  # noqa: E402
from benchmarks.toy_distill import cli, runs  # noqa: E402
from benchmarks.toy_distill.verdict import KD_OMEGA, KD_UNIFORM, PLAIN, TEACHER, verdict  # noqa: E402


def test_t_test_p_is_scipys_one_sample_test():
    from scipy.stats import ttest_1samp

    values = [0.3, -0.1, 0.5, 0.2, 0.4]
    assert t_test_p(values) == pytest.approx(float(ttest_1samp(values, 0.0).pvalue), rel=1e-9)
    assert math.isnan(t_test_p([1.0])) and math.isnan(t_test_p([2.0, 2.0]))


@pytest.mark.parametrize(
    ("pvalues", "levels"),
    [
        ([0.01, 0.04], [0.975, 0.95]),  # first rejected at 2.5 %: the second is tested at 5 %
        ([0.04, 0.001], [0.95, 0.975]),  # the order is by p, not by position
        ([0.03, 0.04], [0.975, 0.975]),  # the smallest is not rejected at 2.5 %: the step-down stops
        ([math.nan, 0.001], [0.95, 0.975]),  # nan is never rejected, and comes last
    ],
)
def test_holm_levels_step_down(pvalues, levels):
    assert holm_levels(pvalues) == pytest.approx(levels)


def _study(kd_rare, kd_uniform_rare=0.8, teacher_rare=0.1, kd_common=0.2, spread=0.01, seeds=20):
    """values[arm][seed] with plain rare 1.0, common 0.2, and a fixed zero-mean wiggle of size `spread`."""
    wiggle = torch.randn(4, seeds, generator=torch.Generator().manual_seed(0))
    wiggle = ((wiggle - wiggle.mean(dim=1, keepdim=True)) * spread).tolist()
    centres = {TEACHER: (teacher_rare, 0.1), PLAIN: (1.0, 0.2), KD_UNIFORM: (kd_uniform_rare, 0.2)}
    centres[KD_OMEGA] = (kd_rare, kd_common)
    return {
        arm: {s: {"rare": rare + w[s], "common": common + w[s] / 10} for s in range(seeds)}
        for (arm, (rare, common)), w in zip(centres.items(), wiggle, strict=True)
    }


def test_verdict_shown_when_kd_omega_beats_both_and_closes_the_gap():
    v = verdict(_study(kd_rare=0.5))
    assert v["verdict"] == "shown" and v["n"] == 20
    assert v["share"]["mean"] == pytest.approx(0.5 / 0.9, rel=1e-6)
    assert all(c["high"] < 0 for c in v["comparisons"].values())


def test_verdict_not_shown_when_common_gets_worse_by_more_than_the_rare_gain():
    assert verdict(_study(kd_rare=0.5, kd_common=0.9))["verdict"] == "inconclusive"


def test_verdict_refuted_when_kd_omega_closes_a_small_share_with_a_tight_interval():
    v = verdict(_study(kd_rare=0.98))
    assert v["verdict"] == "refuted at this scale" and v["share"]["high"] < 0.25


def test_verdict_inconclusive_when_the_spread_is_too_wide():
    v = verdict(_study(kd_rare=0.7, spread=3.0))
    assert v["verdict"] == "inconclusive" and v["share"]["low"] < 0.25 < v["share"]["high"]


def test_verdict_untestable_when_the_teacher_is_not_much_better_than_plain():
    v = verdict(_study(kd_rare=0.5, teacher_rare=0.9))
    assert v["verdict"] == "untestable at this scale" and not v["preconditions"]["teacher_ok"]


def test_verdict_untestable_when_plain_does_not_fail_on_the_rare_patterns():
    values = _study(kd_rare=0.5)
    values[PLAIN] = {s: {"rare": r["rare"], "common": r["rare"]} for s, r in values[PLAIN].items()}
    v = verdict(values)
    assert v["verdict"] == "untestable at this scale" and not v["preconditions"]["premise_ok"]


def test_verdict_uses_only_seeds_with_all_four_arms():
    values = _study(kd_rare=0.5)
    del values[KD_OMEGA][3]
    assert verdict(values)["n"] == 19


TINY = [
    "--seeds",
    "2",
    "--iterations",
    "3",
    "--teacher-hidden",
    "8",
    "--student-hidden",
    "4",
    "--batch",
    "16",
]


def test_a_tiny_study_writes_its_records_and_resumes_without_redoing_them(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(runs, "WORK", tmp_path / "work")
    trained = []
    real_train = runs.train
    monkeypatch.setattr(runs, "train", lambda s, run, *a: trained.append(run.name) or real_train(s, run, *a))
    cli.main([*TINY, "--eval-samples", "2"])
    folder = tmp_path / "results" / "toy_distill"
    names = [f"s0{s}-{a}" for s in (0, 1) for a in ("teacher", "plain", "kd-uniform", "kd-spectral")]
    assert trained == names
    assert sorted(p.stem for p in folder.glob("s[0-9]*.json")) == sorted(names)
    record = json.loads((folder / "s01-kd-spectral.json").read_text())
    assert record["arm"] == KD_OMEGA and record["hidden"] == 4 and len(record["per_pattern"]) == 6
    assert record["rare"] == pytest.approx(sum(r["score_error"] for r in record["per_pattern"][4:]) / 2)
    assert set(record["log"][0]["terms"]) == {"eps", "spatial", "frequency"}
    for page in ("toy_distill.md", "toy_distill.json", "toy_distill.png"):
        assert (tmp_path / "results" / page).is_file()

    (folder / "s01-kd-uniform.json").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("s[0-9]*.json")}
    trained.clear()
    v = cli.main(["--resume", "--seeds", "5"])  # the saved settings win: still two seeds
    assert trained == ["s01-kd-uniform"]  # the teacher's weights were kept: not trained again
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("s[0-9]*.json") if p.name in kept} == kept
    assert v["n"] == 2 and json.loads((folder / "study.json").read_text())["seeds"] == 2
    with pytest.raises(SystemExit, match="--resume"):
        cli.main(TINY)  # a fresh start never overwrites a study


def test_a_seed_another_process_holds_is_left_to_it(tmp_path, monkeypatch):
    """Two processes on one study: a seed claimed by a live other process is skipped, not trained twice;
    the page counts whatever is finished on disk, and a later resume does the seed."""
    monkeypatch.setattr(machine, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(runs, "WORK", tmp_path / "work")
    trained = []
    real_train = runs.train
    monkeypatch.setattr(runs, "train", lambda s, run, *a: trained.append(run.name) or real_train(s, run, *a))
    claim_file = tmp_path / "work" / "claims" / "seed-00.claim"
    claim_file.parent.mkdir(parents=True)
    with open(claim_file, "a+") as other:  # another open file: its lock conflicts like another process's
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        v = cli.main([*TINY, "--eval-samples", "2"])
        assert all(name.startswith("s01-") for name in trained) and len(trained) == 4
        assert v["n"] == 1
        assert "4 of 8 runs finished" in (tmp_path / "results" / "toy_distill.md").read_text()
    trained.clear()
    v = cli.main(["--resume"])  # the other process is gone (its lock with it): seed 0 is done now
    assert [name[:3] for name in trained] == ["s00"] * 4 and v["n"] == 2
