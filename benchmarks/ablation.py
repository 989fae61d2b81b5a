"""The paper's ablation (its Table 5) at CPU scale, with seeds: Lite, +WG, +spatial, +freq, SD and the rest of
the WG × spatial × frequency grid, plus reduced-budget sweeps of λ_s, λ_f and the distillation positions.

    OMP_NUM_THREADS=1 nohup python -m benchmarks.ablation --resume > outputs/ablation/study.log 2>&1 &

Start it once per core you can spare (each process has one thread): the processes share the plan, each claims
the next run nobody holds (outputs/ablation/claims/), and a data set's teacher is prepared by one while the others
take runs of other data sets or wait.
`--data photos` takes only one data set's runs; `--teacher-threads 2` gives a process both cores while it trains
and evaluates a teacher (1.6× faster per step: 2.58 → 1.60 s) and one thread afterwards — start the other worker
with `--data` of the same set and it waits for the teacher instead of competing for the cores.

One teacher per data set (tiny-teacher at base width 56: 4.96M params, 12.9× tiny-sd's 0.38M and 12.1×
tiny-lite's 0.41M — the paper's LDM/SD ratio is 13.0×) is trained first. Every student run of a seed sees
the same data order, timesteps and noise (they are functions of the seed and the step) and the same number
of steps; every evaluation sees the same held-out x_t and the same sampling noise. Per finished run one JSON
file (arm, seed, metrics) lands in benchmarks/results/ablation/runs/; after each run the tables, plots and
sample grids are rebuilt and committed (`git commit -- benchmarks/results/ablation`).

Resumable: the study's settings are fixed in benchmarks/results/ablation/study.json at the first start;
`--resume` reuses them, skips finished runs, and continues a killed run from its last checkpoint
(outputs/ablation/, every 250 steps); a claim whose process died is taken over. Runs are done in a priority
order (see `plan`), so stopping early leaves the most important comparisons complete. `--list` shows the plan and what is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.ablation_claims import claim, exclusive, held_elsewhere, release, teacher_training

RESULTS = Path(__file__).parent / "results" / "ablation"
WORK = Path("outputs/ablation")
DATA = {"textures": "builtin:textures", "photos": "builtin:photos"}
# arm: (student preset, (λ_s, λ_f) or None for no teacher, ω form). WG = the wavelet-gated tiny-sd.
ARMS = {
    "Lite": ("tiny-lite", None, "ours"),
    "+WG": ("tiny-sd", None, "ours"),
    "+spatial": ("tiny-lite", (0.1, 0.0), "ours"),
    "+freq": ("tiny-lite", (0.0, 0.1), "ours"),
    "SD": ("tiny-sd", (0.1, 0.1), "ours"),
    "WG+spatial": ("tiny-sd", (0.1, 0.0), "ours"),
    "WG+freq": ("tiny-sd", (0.0, 0.1), "ours"),
    "spatial+freq": ("tiny-lite", (0.1, 0.1), "ours"),
    # Not in the paper's table, chosen from the first sweep seed at 300 steps: SD with the frequency weight that
    # did best there, and SD with the paper's literal ω (not normalised: its mean over textures is ~30, so it is
    # also a far stronger frequency term).
    "SD, λ_f=1": ("tiny-sd", (0.1, 1.0), "ours"),
    "SD, ω paper": ("tiny-sd", (0.1, 0.1), "paper"),
}
CORE = ["Lite", "+WG", "+spatial", "+freq", "SD"]
HEADLINE = ["Lite", "+WG", "SD"]  # the paper's claim (SD beats Lite) and its WG share, first
GRID_REST = ["WG+spatial", "WG+freq", "spatial+freq"]
FOLLOW_UPS = ["SD, λ_f=1", "SD, ω paper"]
LAMBDAS = (0.0, 0.01, 0.1, 0.5, 1.0)
POSITION_SETS = (("output",), ("feat-up1",), ("feat-up2",), ("feat-down4",), ("output", "feat-up1"))
DEFAULT_POSITIONS = ("output", "feat-up1")


@dataclass(frozen=True)
class Settings:
    teacher_base: int = 56
    teacher_steps: int = 2500
    steps: int = 1000  # student steps of the main arms
    sweep_steps: int = 300  # student steps of the λ / position sweeps
    seeds: int = 3
    extra_seeds: int = 2  # more seeds of Lite and SD, last in the plan
    batch: int = 32
    eps_images: int = 512  # held-out images for the ε-error spectra (× 10 timestep buckets)
    samples: int = 1000  # generated images per run for SWD and the spectrum error
    sampler: str = "ddim"
    eta: float = 1.0
    sample_steps: int = 100  # DDIM-50 with η = 1 leaves even the teacher unconverged
    eval_seed: int = 0


@dataclass(frozen=True)
class Run:
    group: str  # "textures", "photos" (main arms) or "sweep" (textures, reduced budget)
    arm: str
    seed: int
    steps: int
    model: str
    lambdas: tuple[float, float] | None  # (λ_s, λ_f); None: trained without a teacher
    positions: tuple[str, ...] = DEFAULT_POSITIONS
    omega: str = "ours"  # distill.omega: ours (normalised) or paper (|F(resize(x0))|^α literally)

    @property
    def data(self) -> str:
        return "photos" if self.group == "photos" else "textures"

    @property
    def id(self) -> str:
        name = self.arm.lower().replace("λ_s", "ls").replace("λ_f", "lf").replace("ω", "omega")
        slug = "-".join("".join(c if c.isascii() and c.isalnum() else " " for c in name).split())
        return f"{self.group}-{slug}-s{self.seed}"


def arm_run(group: str, arm: str, seed: int, steps: int) -> Run:
    model, lambdas, omega = ARMS[arm]
    return Run(group, arm, seed, steps, model, lambdas, omega=omega)


def sweep_runs(seed: int, steps: int) -> list[Run]:
    """SD (WG + both terms) with one setting changed at a time (λ_s, λ_f, positions, ω); the default is shared."""
    runs = {"WG, no teacher": Run("sweep", "WG, no teacher", seed, steps, "tiny-sd", None)}
    for value in LAMBDAS:
        runs[f"λ_s={value:g}"] = Run("sweep", f"λ_s={value:g}", seed, steps, "tiny-sd", (value, 0.1))
        runs[f"λ_f={value:g}"] = Run("sweep", f"λ_f={value:g}", seed, steps, "tiny-sd", (0.1, value))
    for positions in POSITION_SETS:
        name = "+".join(positions)
        runs[f"at {name}"] = Run("sweep", f"at {name}", seed, steps, "tiny-sd", (0.1, 0.1), positions)
    # λ_s = 0.1, λ_f = 0.1 at the default positions is one run under three names: keep one.
    for alias in ("λ_f=0.1", "at output+feat-up1"):
        runs.pop(alias)
    runs["λ_s=0.1"] = dataclasses.replace(runs["λ_s=0.1"], arm="λ_s=λ_f=0.1 at output+feat-up1 (default)")
    runs["ω paper"] = Run("sweep", "ω paper", seed, steps, "tiny-sd", (0.1, 0.1), omega="paper")
    return list(runs.values())


def plan(s: Settings) -> list[Run]:
    """Every run of the study, most important first: Lite, +WG and SD on textures seed by seed, then +spatial
    and +freq, one seed of the sweeps, Lite / +WG / SD on colour photos, SD with λ_f = 1 and SD with the paper's ω
    (the follow-ups the first sweep seed pointed to) on textures, the rest of the 2×2×2 grid (taken while another process trains the photos teacher), a second
    sweep seed, extra seeds."""
    seeds = range(s.seeds)
    runs = [arm_run("textures", arm, seed, s.steps) for seed in seeds for arm in HEADLINE]
    runs += [arm_run("textures", arm, seed, s.steps) for seed in seeds for arm in CORE if arm not in HEADLINE]
    runs += sweep_runs(0, s.sweep_steps)
    runs += [arm_run("photos", arm, seed, s.steps) for seed in seeds for arm in HEADLINE]
    runs += [arm_run("textures", arm, seed, s.steps) for arm in FOLLOW_UPS for seed in seeds]
    runs += [arm_run("textures", arm, seed, s.steps) for seed in seeds for arm in GRID_REST]
    runs += sweep_runs(1, s.sweep_steps)
    extra = range(s.seeds, s.seeds + s.extra_seeds)
    runs += [arm_run("textures", arm, seed, s.steps) for seed in extra for arm in ("Lite", "SD")]
    return runs


def record_path(run: Run, results: Path = RESULTS) -> Path:
    return results / "runs" / f"{run.id}.json"


def pending(runs: list[Run], results: Path = RESULTS) -> list[Run]:
    """The runs without a result file, in plan order."""
    return [r for r in runs if not record_path(r, results).is_file()]


def write_text(path: Path, text: str) -> None:
    """Atomically: a reader never sees half a file, and a killed process never leaves a half-written result that
    looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1) + "\n")


def load_settings(args: argparse.Namespace, results: Path = RESULTS) -> Settings:
    """The study's settings: from study.json when resuming, else from the command line (and saved)."""
    saved = results / "study.json"
    given = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
    if saved.is_file():
        stored = Settings(**json.loads(saved.read_text())["settings"])
        if not args.resume:
            raise SystemExit(f"{saved} exists: pass --resume to continue that study (its settings: {stored})")
        return stored
    command = " ".join(["python -m benchmarks.ablation", *sys.argv[1:]])
    write_json(saved, {"settings": dataclasses.asdict(given), "command": command})
    return given


def git_commit(paths: list[Path], message: str, attempts: int = 20) -> bool:
    """Commit only `paths` (added first); retried while another process holds the index lock."""
    names = [str(p) for p in paths]
    for _ in range(attempts):
        if Path(".git/index.lock").exists():
            time.sleep(3)
            continue
        added = subprocess.run(["git", "add", "--", *names], capture_output=True, text=True)
        if added.returncode == 0:
            done = subprocess.run(
                ["git", "commit", "-q", "-m", message, "--", *names], capture_output=True, text=True
            )
            if done.returncode == 0:
                return True
            if "nothing to commit" in done.stdout + done.stderr or "no changes added" in done.stdout:
                return False
        time.sleep(3)
    print(f"git commit failed: {message}", flush=True)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Settings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    parser.add_argument(
        "--resume", action="store_true", help="continue the study in benchmarks/results/ablation"
    )
    parser.add_argument("--list", action="store_true", help="show the plan and what is done, then stop")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many runs")
    parser.add_argument("--no-commit", action="store_true", help="do not git-commit the results")
    parser.add_argument("--data", choices=sorted(DATA), default=None, help="take only this data set's runs")
    parser.add_argument(
        "--teacher-threads",
        type=int,
        default=1,
        help="torch threads while this process prepares a teacher (students always use 1)",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild tables and plots, then stop")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="committed results (default: %(default)s)"
    )
    parser.add_argument(
        "--work", type=Path, default=WORK, help="run folders, not committed (default: %(default)s)"
    )
    args = parser.parse_args()

    from benchmarks.ablation_readme import rebuild_report
    from benchmarks.ablation_runner import Study, TeacherBusy

    settings = load_settings(args, args.results)
    runs = plan(settings)
    todo = pending(runs, args.results)
    if args.list:
        for r in runs:
            print(
                ("done  " if r not in todo else "todo  ")
                + f"{r.id:48s} {r.model:10s} {r.steps:5d} steps {r.lambdas} {r.positions} ω {r.omega}"
            )
        print(f"{len(runs) - len(todo)} of {len(runs)} runs done")
        return
    if args.report_only:
        with exclusive(args.work / "report.lock"):
            rebuild_report(settings, runs, args.results)
        return
    import torch

    torch.set_num_threads(1)
    mine = [r for r in runs if args.data in (None, r.data)]
    claims = args.work / "claims"
    study = Study(settings, args.results, args.work, claims, args.teacher_threads)
    from slimdiff.errors import TrainingStopped

    done = 0
    try:
        while args.max_runs is None or done < args.max_runs:
            run = next_run(mine, args.results, claims)
            if run is None:
                if all_held_elsewhere(mine, args.results, claims):
                    break
                time.sleep(30)  # what is left waits for a teacher another process is preparing
                continue
            try:
                record = study.do_run(run)
                write_json(record_path(run, args.results), record)
            except TeacherBusy:  # another process began preparing the teacher after next_run looked
                continue
            finally:
                release(claims, run.id)
            done += 1
            with exclusive(args.work / "report.lock"):  # one report writer and committer at a time
                rebuild_report(settings, runs, args.results)
                if not args.no_commit:
                    finished = len(runs) - len(pending(runs, args.results))
                    git_commit([args.results], f"ablation: {run.id} ({finished}/{len(runs)} runs)")
    except TrainingStopped as stop:  # SIGINT / SIGTERM: the run wrote a checkpoint; --resume continues it
        print(f"{stop}; continue with: python -m benchmarks.ablation --resume", flush=True)


def next_run(runs: list[Run], results: Path, claims: Path) -> Run | None:
    """The first pending run this process can take (now claimed): no live process holds it and no other process
    is preparing its data set's teacher (a spare core trains other students meanwhile). None: nothing to take now."""
    with exclusive(claims / ".lock"):
        for run in pending(runs, results):
            if not held_elsewhere(claims, teacher_training(run.data)) and claim(claims, run.id):
                return run
    return None


def all_held_elsewhere(runs: list[Run], results: Path, claims: Path) -> bool:
    """Every pending run is being done by another live process: nothing is left for this one."""
    with exclusive(claims / ".lock"):
        return all(held_elsewhere(claims, r.id) for r in pending(runs, results))


if __name__ == "__main__":
    main()
