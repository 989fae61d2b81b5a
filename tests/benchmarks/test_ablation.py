"""The ablation study's bookkeeping (benchmarks/ablation/): its plan, resume, settings and table maths, on toy
inputs — no training."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))  # `benchmarks` lives beside src/, not in the package

from benchmarks.ablation import claims, cli, report, runner, stats  # noqa: E402
from benchmarks.ablation import plan as ablation_plan  # noqa: E402
from benchmarks.ablation.plan import CORE, Settings, pending, plan, record_path  # noqa: E402


def test_plan_starts_with_lite_wg_and_sd_seed_by_seed_then_the_other_main_arms_with_equal_steps():
    s = Settings(seeds=3)
    runs = plan(s)
    headline, rest = runs[: 3 * s.seeds], runs[3 * s.seeds : 5 * s.seeds]
    assert [r.arm for r in headline] == ["Lite", "+WG", "SD"] * 3
    assert [r.seed for r in headline] == [0] * 3 + [1] * 3 + [2] * 3
    assert [(r.arm, r.seed) for r in rest] == [(a, seed) for seed in range(3) for a in ("+spatial", "+freq")]
    assert {r.steps for r in runs if r.group != "sweep"} == {s.steps}
    assert {r.steps for r in runs if r.group == "sweep"} == {s.sweep_steps}
    assert len({r.id for r in runs}) == len(runs)


@contextlib.contextmanager
def _held_by_another_process(claim_dir: Path, name: str):
    """Another live process holding claim `name` the way a worker does; it dies at the end of the block."""
    code = (
        "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held'); input()"
    )
    claim_dir.mkdir(parents=True, exist_ok=True)
    path = claims._path(claim_dir, name)
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert other.stdout.readline().strip() == b"held"
        yield
    finally:
        other.kill()
        other.wait()


def test_a_claim_is_held_against_live_processes_and_free_when_they_die(tmp_path):
    claim_dir = tmp_path / "claims"
    assert claims.claim(claim_dir, "run-a") and claims.claim(claim_dir, "run-a")  # ours, again
    assert not claims.held_elsewhere(claim_dir, "run-a")
    with _held_by_another_process(claim_dir, "run-b"):
        assert claims.held_elsewhere(claim_dir, "run-b")
        assert not claims.claim(claim_dir, "run-b")  # a live process holds it
    assert not claims.held_elsewhere(claim_dir, "run-b")
    assert claims.claim(claim_dir, "run-b")  # its holder died (killed): free at once
    claims.release(claim_dir, "run-a")
    code = f"from benchmarks.ablation import claims as c; from pathlib import Path; print(c.claim(Path({str(claim_dir)!r}), 'run-a'))"
    taken = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert taken.stdout.strip() == "True"  # released: another process can take it
    assert claims.held_elsewhere(tmp_path / "other-study", "run-b") is False  # claims are per folder


def test_a_stale_pid_in_a_claim_file_does_not_hold_the_claim(tmp_path):
    claim_dir = tmp_path / "claims"
    claim_dir.mkdir()
    claims._path(claim_dir, "run-a").write_text(f"{os.getpid() + 1}\n")  # left by an earlier boot
    assert not claims.held_elsewhere(claim_dir, "run-a") and claims.claim(claim_dir, "run-a")


def test_runs_whose_teacher_another_process_prepares_are_skipped_until_it_is_done(tmp_path):
    runs = plan(Settings(seeds=1, extra_seeds=0))
    photos = [r for r in runs if r.data == "photos"]
    for run in runs:
        if run.data == "textures":
            ablation_plan.write_json(record_path(run, tmp_path), {"arm": run.arm, "seed": run.seed})
    claim_dir = tmp_path / "claims"
    with _held_by_another_process(claim_dir, claims.teacher_training("photos")):
        assert cli.next_run(runs, tmp_path, claim_dir) is None  # only photos left, its teacher is busy
        assert not cli.all_held_elsewhere(runs, tmp_path, claim_dir)  # so the loop waits, not stops
    assert cli.next_run(runs, tmp_path, claim_dir) == photos[0]  # the teacher's process died: taken here
    assert cli.next_run(runs, tmp_path, claim_dir) == photos[0]  # our own claim does not block us
    with _held_by_another_process(claim_dir, photos[1].id):
        assert cli.next_run(photos[1:2], tmp_path, claim_dir) is None
        assert cli.all_held_elsewhere(photos[1:2], tmp_path, claim_dir)  # nothing left for us: stop


def test_one_process_prepares_a_teacher_on_its_teacher_threads_under_the_training_claim(
    tmp_path, monkeypatch
):
    seen = []
    claim_dir = tmp_path / "claims"

    class FakeContext:  # stands in for training and evaluating the teacher
        def __init__(self, s, data, results, work):
            self.name = claims.teacher_training(data)

        def teacher_record(self):
            seen.append((torch.get_num_threads(), claims._path(claim_dir, self.name) in claims._held))

    monkeypatch.setattr(runner, "Context", FakeContext)
    study = runner.Study(Settings(), tmp_path, tmp_path, claim_dir, teacher_threads=2)
    first = study.context("photos")
    assert study.context("photos") is first  # prepared once per process
    assert seen == [(2, True)]  # evaluated too before the claim is let go, on both threads
    assert torch.get_num_threads() == 1  # students: one thread
    assert not claims.held_elsewhere(claim_dir, first.name)
    assert claims._path(claim_dir, first.name) not in claims._held  # released


def test_a_teacher_another_process_prepares_makes_the_run_step_aside(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "Context", lambda *a: pytest.fail("built while another prepares it"))
    study = runner.Study(Settings(), tmp_path, tmp_path, tmp_path / "claims")
    busy = claims.teacher_training("photos")
    with _held_by_another_process(tmp_path / "claims", busy), pytest.raises(runner.TeacherBusy):
        study.context("photos")


def test_the_photos_arms_and_the_follow_up_arms_come_before_the_rest_of_the_grid():
    runs = plan(Settings(seeds=3))
    first_photo = next(i for i, r in enumerate(runs) if r.data == "photos")
    follow_ups = [i for i, r in enumerate(runs) if r.arm in ablation_plan.FOLLOW_UPS]
    first_rest = next(i for i, r in enumerate(runs) if r.arm in ablation_plan.GRID_REST)
    assert first_photo < follow_ups[0] and follow_ups[-1] < first_rest
    assert [
        (runs[i].seed, runs[i].lambdas, runs[i].omega, runs[i].model, runs[i].data) for i in follow_ups
    ] == [
        (seed, lambdas, omega, "tiny-sd", "textures")
        for lambdas, omega in (((0.1, 1.0), "ours"), ((0.1, 0.1), "paper"))
        for seed in range(3)
    ]
    # the paper-ω arm is the sweep's ω run at the main arms' budget
    sweep_omega = next(r for r in ablation_plan.sweep_runs(0, 300) if r.omega == "paper")
    main_omega = runs[follow_ups[3]]
    assert (sweep_omega.model, sweep_omega.lambdas, sweep_omega.positions) == (
        main_omega.model,
        main_omega.lambdas,
        main_omega.positions,
    )
    assert sorted((r.arm, r.seed) for r in runs if r.data == "photos") == sorted(
        (a, seed) for a in ("Lite", "+WG", "SD") for seed in range(3)
    )


def test_the_arms_are_the_papers_grid():
    lite, wg, spatial, freq, sd = (ablation_plan.ARMS[a] for a in CORE)
    assert lite == ("tiny-lite", None, "ours") and wg == ("tiny-sd", None, "ours")
    assert spatial == ("tiny-lite", (0.1, 0.0), "ours") and freq == ("tiny-lite", (0.0, 0.1), "ours")
    assert sd == ("tiny-sd", (0.1, 0.1), "ours")
    grid = [ablation_plan.ARMS[a] for a in CORE + ablation_plan.GRID_REST]
    assert len(set(grid)) == 8  # the full 2 × 2 × 2


def test_sweeps_vary_one_setting_at_a_time_and_share_the_default_run():
    runs = ablation_plan.sweep_runs(0, 100)
    settings = [(r.lambdas, r.positions, r.omega) for r in runs]
    assert len(settings) == len(set(settings)) == 15  # no teacher + 4 λ_s + 4 λ_f + 4 positions + ω + default
    assert [r.omega for r in runs].count("paper") == 1
    settings = [(r.lambdas, r.positions) for r in runs if r.omega == "ours"]
    assert ((0.1, 0.1), ("output", "feat-up1")) in settings
    default_positions = [(lam, pos) for lam, pos in settings if lam and len(pos) == 2]
    assert {lam[0] for lam, _ in default_positions if lam[1] == 0.1} == set(ablation_plan.LAMBDAS)
    assert {lam[1] for lam, _ in default_positions if lam[0] == 0.1} == set(ablation_plan.LAMBDAS)
    assert all(r.id.isascii() for r in runs)


def test_resume_skips_finished_runs_and_keeps_the_order(tmp_path):
    runs = plan(Settings(seeds=2, extra_seeds=0))
    for run in runs[:3] + runs[5:6]:
        ablation_plan.write_json(
            record_path(run, tmp_path), {"arm": run.arm, "seed": run.seed, "metrics": {}}
        )
    todo = pending(runs, tmp_path)
    assert todo == runs[3:5] + runs[6:]
    assert not list((tmp_path / "runs").glob(".tmp-*"))  # written atomically


def _args(resume: bool, **changes) -> argparse.Namespace:
    values = {**Settings().__dict__, **changes}
    return argparse.Namespace(resume=resume, **values)


def test_settings_are_fixed_at_the_first_start(tmp_path):
    first = ablation_plan.load_settings(_args(False, steps=7), tmp_path)
    assert first.steps == 7 and json.loads((tmp_path / "study.json").read_text())["settings"]["steps"] == 7
    with pytest.raises(SystemExit, match="--resume"):
        ablation_plan.load_settings(_args(False), tmp_path)
    assert (
        ablation_plan.load_settings(_args(True, steps=99), tmp_path).steps == 7
    )  # the study's, not the CLI's


def test_an_interrupted_start_without_checkpoints_is_cleaned_but_checkpoints_are_kept(tmp_path):
    empty, started = tmp_path / "a", tmp_path / "b"
    (empty / "logs").mkdir(parents=True)
    (started / "checkpoints" / "step-00000250").mkdir(parents=True)
    runner.clean_partial(empty)
    runner.clean_partial(started)
    assert not empty.exists() and started.exists()


def test_paired_difference_uses_the_t_interval():
    base = {0: 10.0, 1: 12.0, 2: 11.0}
    arm = {0: 9.0, 1: 10.0, 2: 11.0, 5: 0.0}  # seed 5 has no partner and is left out
    d = stats.paired_difference(arm, base)
    assert d["n"] == 3 and d["per_seed"] == {0: -1.0, 1: -2.0, 2: 0.0}
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) · sd / √n, sd of (−1, −2, 0) = 1
    assert d["mean"] == pytest.approx(-1.0)
    assert (d["low"], d["high"]) == pytest.approx((-1.0 - half, -1.0 + half))


def test_gap_closed_is_the_share_of_lite_to_teacher():
    # The paper's FID numbers: Lite 17.3, SD 10.5, teacher 5.0 → 55%.
    closed = stats.gap_closed({0: 10.5}, {0: 17.3}, 5.0)
    assert closed["mean"] == pytest.approx(0.5528, abs=1e-4)
    base, arm = {0: 10.0, 1: 12.0, 2: 11.0}, {0: 8.0, 1: 9.0, 2: 8.0}
    closed = stats.gap_closed(arm, base, 5.0)
    assert closed["mean"] == pytest.approx((11.0 - 25 / 3) / 6.0)
    assert closed["low"] < closed["mean"] < closed["high"]
    teacher_worse = stats.gap_closed(arm, base, 20.0)
    assert math.isnan(teacher_worse["mean"])  # a teacher worse than Lite leaves no gap to close


def _record(arm: str, seed, value: float, key: str = "eps") -> dict:
    return {"arm": arm, "seed": seed, "group": "textures", "metrics": {key: {"high": value}}}


def test_tables_mark_differences_beyond_the_seed_spread():
    runs = [_record("Lite", s, v) for s, v in enumerate((1.0, 1.1, 0.9))]
    runs += [_record("SD", s, v) for s, v in enumerate((0.5, 0.62, 0.41))]  # clearly better
    runs += [_record("+WG", s, v) for s, v in enumerate((1.2, 0.9, 1.0))]  # within the spread
    metrics = {"eps.high": "ε high"}
    teacher = _record("teacher", None, 0.1)
    table = "\n".join(stats.arm_table(runs, ["Lite", "+WG", "SD"], teacher, metrics))
    assert "| Lite | 3 | 1 ± 0.1 |" in table and "| teacher | 1 | 0.1 |" in table
    paired = stats.paired_table(runs, ["Lite", "+WG", "SD"], teacher, metrics=metrics)
    sd_row = next(row for row in paired if row.startswith("| SD"))
    wg_row = next(row for row in paired if row.startswith("| +WG"))
    assert "✓" in sd_row and "(+54%)" in sd_row  # (1.0 − 0.51) / (1.0 − 0.1) = 0.544
    assert "✓" not in wg_row and "✗" not in wg_row


def test_the_gap_of_a_distance_to_the_teacher_is_the_baseline_value():
    runs = [_record("Lite", s, v, key="eps_teacher") for s, v in enumerate((1.0, 1.1, 0.9))]
    runs += [_record("SD", s, v, key="eps_teacher") for s, v in enumerate((0.5, 0.55, 0.45))]
    teacher = {"arm": "teacher", "seed": None, "metrics": {}}  # the teacher records no distance to itself
    paired = stats.paired_table(runs, ["Lite", "SD"], teacher, metrics={"eps_teacher.high": "x"})
    assert "(+50%)" in next(row for row in paired if row.startswith("| SD"))  # (1.0 − 0.5) / (1.0 − 0)


def test_per_bucket_metrics_index_the_bucket_lists_and_feed_the_paired_table():
    def record(arm, seed, late):
        buckets = [{"t_from": 0, "t_to": 500, "high": 2.0}, {"t_from": 500, "t_to": 1000, "high": late}]
        return {"arm": arm, "seed": seed, "metrics": {"eps_teacher": {"high": 1.0, "buckets": buckets}}}

    runs = [record("Lite", s, v) for s, v in enumerate((1.0, 1.1, 0.9))]
    runs += [record("SD", s, v) for s, v in enumerate((0.8, 0.92, 0.7))]
    metrics = stats.bucket_metrics(runs)
    assert metrics == {"eps_teacher.buckets.0.high": "t 0–499", "eps_teacher.buckets.1.high": "t 500–999"}
    assert stats.lookup(runs[3]["metrics"], "eps_teacher.buckets.1.high") == 0.8
    assert stats.lookup(runs[3]["metrics"], "eps_teacher.buckets.2.high") is None
    paired = stats.paired_table(runs, ["Lite", "SD"], None, metrics=metrics)
    assert paired[0] == "| arm vs Lite | t 0–499 | t 500–999 |"
    early, late = paired[2].split(" | ")[1:3]
    assert early.startswith("0 [0, 0]") and "✓" not in early  # identical early buckets
    assert "✓" in late and "(+19%)" in late  # (1.0 − 0.807) / 1.0


def test_the_paper_table_puts_its_gap_closed_beside_ours():
    runs = [_record("Lite", s, v) for s, v in enumerate((1.0, 1.1, 0.9))]
    runs += [_record("SD", s, v) for s, v in enumerate((0.5, 0.62, 0.41))]
    teacher = _record("teacher", None, 0.1)
    table = stats.paper_table(runs, teacher, {"eps.high": "ε high"})
    assert table[0] == "| arm | paper FID | paper: gap closed | ours: ε high |"
    assert [row.split(" | ")[0] for row in table[2:]][0] == "| Lite" and table[-1].startswith(
        "| SD | 10.5 | +55% |"
    )
    assert "+54% [" in table[-1] and "(n=3)" in table[-1]  # (1.0 − 0.51) / (1.0 − 0.1)
    assert next(row for row in table if row.startswith("| +WG")).endswith("| — |")  # no runs yet


def test_the_results_page_is_rebuilt_from_the_committed_runs_and_skips_half_written_files(tmp_path):
    import statistics

    committed = ROOT / "benchmarks" / "results" / "ablation" / "runs"
    records = [json.loads(p.read_text()) for p in committed.glob("textures-lite-s*.json")]
    if len(records) < 2:
        pytest.skip("needs at least two committed Lite runs")
    shutil.copytree(committed, tmp_path / "runs")
    (tmp_path / "runs" / ".tmp-textures-sd-s9.json").write_text(
        '{"arm": "SD", "se'
    )  # another worker, mid-write
    page = report.rebuild_report(Settings(), plan(Settings()), tmp_path).read_text()
    lite_swd = [r["metrics"]["swd"]["mean"] for r in records]
    row = next(line for line in page.splitlines() if line.startswith(f"| Lite | {len(records)} |"))
    expected = f"{stats._g(statistics.mean(lite_swd))} ± {stats._g(statistics.stdev(lite_swd), 2)}"
    assert expected in row
    assert not list(tmp_path.glob(".tmp-*"))  # the page itself was replaced whole


def test_evaluation_records_hold_every_metric_the_tables_read(tmp_path, tiny_teacher_folder):
    s = Settings(eps_images=4, samples=4, sample_steps=2)
    work, results = tmp_path / "work", tmp_path / "results"
    shutil.copytree(
        tiny_teacher_folder, work / "teacher-textures" / "model"
    )  # a trained teacher, so none trains
    context = runner.Context(s, "textures", results, work)
    teacher = context.teacher_record()
    run = ablation_plan.arm_run("textures", "SD", 0, steps=1)
    student = context.evaluate(tiny_teacher_folder, run)  # the teacher stands in for a student
    for metric in stats.METRICS:
        if not metric.startswith("eps_teacher"):
            assert stats.lookup(teacher["metrics"], metric) is not None, metric
        assert stats.lookup(student["metrics"], metric) is not None, metric
    # The same model against its own recorded predictions on the same x_t: no distance; its own error is the
    # teacher's, whether computed live (student) or written to the teacher's record.
    assert student["metrics"]["eps_teacher"]["high"] < 1e-10
    assert student["metrics"]["eps"]["high"] == pytest.approx(teacher["metrics"]["eps"]["high"], rel=1e-4)
    assert json.loads((results / "runs" / "textures-teacher.json").read_text())["params"] == student["params"]
    assert (results / "grids" / f"{run.id}.png").is_file()  # seed 0 keeps its grid
