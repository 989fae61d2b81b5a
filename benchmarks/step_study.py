"""Issue 25's few-step study, by the rule written before its runs (docs/step_distillation.md; nothing here may
change what that rule fixes), in its two settings:

    python -m benchmarks.step_study [--setting textures|fashion-mnist] [--seeds 0 1 2] [--resume]

Per seed s, a slim student, its step distillation to 4 calls with the frequency term (λ_s = 1, λ_f = 0.1, the
default λ_f) and without it (λ_f = 0), 400 steps each of configs/steps-tiny.yaml's recipe at the setting's
batch; then every arm samples 256 images from the same noise (evaluation seed 1000 + s) and is scored against
held-out real images: the setting's distances (SWD×10³; FD-FMNIST too on Fashion-MNIST), the high-band spectrum
error, the SWD×10³ to the teacher's samples, and seconds per image at batch 1. Arms: the rule's, and `lcm@N` —
the LCM sampler on the student before step distillation, the control found after the rule was written,
reported beside the goals, not in them.
- textures: the shipped tiny teacher; the student is the demo's distilled SD student (800 steps, train.seed =
  s; seed 0's is the shipped one, trained exactly so); 256 held-out crops.
- fashion-mnist: the reference study's teacher and SD students (`benchmarks.fashion_mnist`, its seeds 0–2,
  trained there the first time they are missing); the whole test split (10 000 images) as the real set.

Each trained model and each arm's scores land as they finish (benchmarks/results/step_study{-setting}/
seed{s}-{arm}.json; textures has no suffix); --resume skips what is there, so the study survives the end of a
session. The summary (step_study{-setting}.md / .json) is rewritten after every arm, with the goals read by the
rule on the seeds that are complete.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from benchmarks import fashion_mnist
from benchmarks.ablation.stats import interval
from benchmarks.machine import RESULTS, describe_machine
from slimdiff.config import DistillConfig
from slimdiff.demo.recipe import (
    DATA,
    SHIPPED_STUDENTS,
    SHIPPED_TEACHER,
    DemoSettings,
    fine_tuning,
    from_scratch,
    run_config,
    step_distillation,
)
from slimdiff.metrics.evaluate import EvalOptions, evaluate, resolve
from slimdiff.metrics.swd import swd
from slimdiff.reporting.plots import figure, save
from slimdiff.training.loop import train

# CD_STEPS: configs/steps-tiny.yaml's 400 (the demo trains 150 to stay within its 15 minutes)
SAMPLES, CALLS, CD_STEPS, LAMBDA_FREQ = 256, 4, 400, 0.1
MANY = {"scheduler": "ddim", "steps": 100, "eta": 1.0}


@dataclass(frozen=True)
class Setting:
    name: str
    train_data: str  # what the step distillation trains on
    real: str  # the held-out images the arms are scored against
    n_real: int | None  # None: as many as samples
    distances: tuple[str, ...]  # record keys of the distances to real data, the rule's G1 and G3 on each
    batch: int  # the batch its students were trained at

    @property
    def suffix(self) -> str:
        return "" if self.name == "textures" else f"-{self.name}"

    @property
    def records(self) -> Path:
        return RESULTS / f"step_study{self.suffix}"


SETTINGS = {
    "textures": Setting("textures", DATA, DATA, None, ("swd",), DemoSettings().batch_size),
    "fashion-mnist": Setting(
        "fashion-mnist",
        "builtin:fashion-mnist",
        fashion_mnist.DATA_TEST,
        fashion_mnist.Settings().real,
        ("fd_fmnist", "swd"),
        fashion_mnist.Settings().batch,
    ),
}


def arms() -> dict[str, tuple[str, dict]]:
    """arm → (which model: teacher | student | steps | steps-plain, sampler)."""
    table = {"teacher": ("teacher", MANY), "student": ("student", MANY)}
    for n in (4, 2):
        for solver in ("dpm++", "unipc"):
            table[f"{solver}@{n}"] = ("student", {"scheduler": solver, "steps": n, "eta": None})
    for n in (4, 2, 1):
        few = {"scheduler": "lcm", "steps": n, "eta": None}
        table[f"steps@{n}"] = ("steps", few)
        table[f"steps-plain@{n}"] = ("steps-plain", few)
        table[f"lcm@{n}"] = ("student", few)  # the control, outside the rule's goals
    return table


def _reference(name: str) -> Path:
    """A model of the Fashion-MNIST reference study, trained there (with its teacher) when missing."""
    s = fashion_mnist.Settings()
    runs = {r.name: r for r in fashion_mnist.plan(s)}
    if runs[name].teacher:
        _reference(runs[name].teacher)
    fashion_mnist.train_run(s, runs[name])
    return fashion_mnist.WORK / name / "model"


def model(setting: Setting, seed: int, which: str, work: Path) -> Path:
    """The seed's model `which` (teacher | student | steps | steps-plain), trained here the first time it is
    needed, so the arms that need no step distillation land first."""
    fmnist = setting.name == "fashion-mnist"
    if which == "teacher":
        return _reference("teacher") if fmnist else Path(str(SHIPPED_TEACHER))
    teacher = model(setting, seed, "teacher", work)
    recipe = DemoSettings()
    section = DistillConfig(teacher=str(teacher), positions=recipe.positions)
    if which == "student":
        if fmnist:
            return _reference(f"sd-s{seed}")
        if seed == 0:
            return Path(str(SHIPPED_STUDENTS["student"]))
        scratch = from_scratch(recipe.student_steps, recipe.batch_size, seed)
        return _trained(work / f"s{seed}-student", run_config("tiny-sd", scratch, Path(), section))
    lambda_freq = LAMBDA_FREQ if which == "steps" else 0.0
    distill = step_distillation(section, CALLS, model(setting, seed, "student", work), lambda_freq)
    tuning = fine_tuning(CD_STEPS, setting.batch, seed)
    return _trained(
        work / f"s{seed}-{which}", run_config("tiny-sd", tuning, Path(), distill, setting.train_data)
    )


def _trained(folder: Path, config) -> Path:
    if not (folder / "model" / "model_index.json").is_file():
        run = replace(config.run, dir=str(folder), checkpoint_every=100, keep_checkpoints=2)
        train(replace(config, run=run), resume="latest" if (folder / "checkpoints").is_dir() else None)
    return folder / "model"


def score_arm(setting: Setting, seed: int, arm: str, work: Path) -> dict:
    which, sampler = arms()[arm]
    fd = ("fd-fmnist",) if "fd_fmnist" in setting.distances else ()
    options = EvalOptions(
        target=str(model(setting, seed, which, work)),
        data=setting.real,
        metrics=("swd", "spectrum", "latency", *fd),
        n=SAMPLES,
        n_real=setting.n_real,
        batch_size=64,
        seed=1000 + seed,
        **sampler,
    )
    options, pipeline = resolve(options)
    ev = evaluate(options, work / f"s{seed}-eval" / arm.replace("@", "-"), pipeline)
    teacher_samples = work / f"s{seed}-teacher-samples.pt"
    if arm == "teacher":
        torch.save(ev.fake, teacher_samples)
    results = ev.report["results"]
    return {
        "setting": setting.name,
        "seed": seed,
        "arm": arm,
        "model": which,
        "sampler": sampler,
        "swd": results["swd"]["mean"],
        **({"fd_fmnist": results["fd_fmnist"]} if fd else {}),
        "spectrum_high": results["spectrum_error"]["high"],
        "swd_to_teacher": swd(torch.load(teacher_samples), ev.fake)["mean"],
        "seconds_per_image": results["seconds_per_image"],
        "machine": describe_machine(),
    }


def load_results(setting: Setting) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(setting.records.glob("seed*-*.json"))]


def goals(setting: Setting, results: list[dict]) -> dict:
    """G1–G4 and the precondition of docs/step_distillation.md on the seeds with every arm they need; G1 and G3
    on each of the setting's distances, the precondition on the first."""
    table: dict[int, dict[str, dict]] = {}
    for r in results:
        table.setdefault(r["seed"], {})[r["arm"]] = r
    need = {"teacher", "student", "dpm++@4", "unipc@4", "steps@4", "steps-plain@4"}
    seeds = sorted(s for s, by_arm in table.items() if need <= set(by_arm))
    if not seeds:
        return {"seeds": []}

    def ratios(arm: str, base: str, key: str) -> list[float]:
        return [table[s][arm][key] / table[s][base][key] for s in seeds]

    def differences(arm: str, base: str, key: str) -> list[float]:
        return [table[s][arm][key] - table[s][base][key] for s in seeds]

    def mean_of(arm: str, key: str) -> float:
        return sum(table[s][arm][key] for s in seeds) / len(seeds)

    def stated(values, bound=None):
        mean, low, high = interval(values)
        out = {"mean": mean, "low": low, "high": high, "per_seed": values}
        if bound is not None:
            out["reading"] = (
                "met beyond the spread" if high <= bound else "met" if mean <= bound else "missed"
            )
        return out

    d0 = setting.distances[0]
    verdict: dict = {
        "seeds": seeds,
        "precondition": {
            f"teacher {d0}": mean_of("teacher", d0),
            f"student {d0}": mean_of("student", d0),
            "reading": "holds" if mean_of("teacher", d0) < mean_of("student", d0) else "fails: untestable",
        },
    }
    for d in setting.distances:
        verdict[f"G1 {d}(steps@4)/{d}(student)"] = stated(ratios("steps@4", "student", d), 1.25)
    verdict["G2 high(steps@4)/high(teacher)"] = stated(ratios("steps@4", "teacher", "spectrum_high"), 1.1)
    for d in setting.distances:
        best = min(("dpm++@4", "unipc@4"), key=lambda arm: mean_of(arm, d))
        verdict[f"G3 best training-free solver by {d}"] = best
        difference = stated(differences("steps@4", best, d))
        no_interval = math.isnan(difference["high"])  # one seed
        difference["reading"] = (
            "no interval yet" if no_interval else "met" if difference["high"] < 0 else "missed"
        )
        verdict[f"G3 {d}(steps@4) - {d}(best)"] = difference
    for key, name in (*((d, d) for d in setting.distances), ("spectrum_high", "high")):
        verdict[f"G4 {name}(steps@4) - {name}(steps-plain@4)"] = stated(
            differences("steps@4", "steps-plain@4", key)
        )
    if all("lcm@4" in table[s] for s in seeds):  # the control, beside the goals
        verdict[f"control: {d0}(steps@4) - {d0}(lcm@4)"] = stated(differences("steps@4", "lcm@4", d0))
    return verdict


def _f(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


# the page's figure: distance against UNet calls, one line per family of arms (arm prefix → label)
FAMILIES = {
    "steps": "step-distilled (λ_f = 0.1)",
    "steps-plain": "step-distilled (λ_f = 0)",
    "lcm": "LCM sampler, undistilled (control)",
    "dpm++": "DPM-Solver++",
    "unipc": "UniPC",
}
# record key → its name on the page
NAMES = {
    "swd": "SWD×10³",
    "fd_fmnist": "FD-FMNIST",
    "spectrum_high": "high-band spectrum error",
    "swd_to_teacher": "SWD×10³ to the teacher",
    "seconds_per_image": "s/image (batch 1)",
}


def plot_summary(setting: Setting, results: list[dict], path: Path) -> Path:
    """Each distance (mean over seeds, every seed as a dot) against the number of UNet calls, per family of arms;
    the teacher's and the student's DDIM-100 as horizontal lines."""
    fig, axes = figure(width=5.5 * len(setting.distances), height=3.8, ncols=len(setting.distances))
    panels = list(axes) if len(setting.distances) > 1 else [axes]
    for ax, key in zip(panels, setting.distances, strict=True):
        for arm, linestyle in (("teacher", "--"), ("student", ":")):
            values = [r[key] for r in results if r["arm"] == arm]
            if values:
                mean = sum(values) / len(values)
                ax.axhline(mean, linestyle=linestyle, color="k", label=f"{arm}, DDIM-100")
        for family, label in FAMILIES.items():
            by_calls: dict[int, list[float]] = {}
            for r in results:
                name, _, calls = r["arm"].partition("@")
                if name == family:
                    by_calls.setdefault(int(calls), []).append(r[key])
            if not by_calls:
                continue
            calls = sorted(by_calls)
            (line,) = ax.plot(
                calls, [sum(by_calls[c]) / len(by_calls[c]) for c in calls], marker="o", label=label
            )
            dots = [(c, v) for c in calls for v in by_calls[c]]
            ax.scatter(*zip(*dots, strict=True), s=8, color=line.get_color(), alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([1, 2, 4], ["1", "2", "4"])
        ax.set_xlabel("UNet calls per image")
        ax.set_ylabel(f"{NAMES[key]} to real (↓)")
    panels[0].legend(fontsize=7)
    return save(fig, path)


def write_summary(setting: Setting, command: str) -> None:
    results = load_results(setting)
    verdict = goals(setting, results)
    page = RESULTS / f"step_study{setting.suffix}"
    page.with_suffix(".json").write_text(json.dumps({"results": results, "goals": verdict}, indent=1) + "\n")
    columns = [*setting.distances, "spectrum_high", "swd_to_teacher", "seconds_per_image"]
    lower_is_better = {*setting.distances, "spectrum_high"}
    header = [NAMES[c] + (" ↓" if c in lower_is_better else "") for c in columns]
    lines = [
        f"# step_study (issue 25, item 2: {setting.name})",
        "",
        f"- command: `{command}`",
        f"- machine: {describe_machine()}",
        "- rule: docs/step_distillation.md (written before any run); arms `lcm@N` are the control added after it",
        "",
        "| seed | arm | sampler | " + " | ".join(header) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for r in results:
        sampler = f"{r['sampler']['scheduler']} {r['sampler']['steps']}"
        cells = " | ".join(_f(r.get(c)) for c in columns)
        lines.append(f"| {r['seed']} | {r['arm']} | {sampler} | {cells} |")
    lines += ["", f"## Goals on the complete seeds ({verdict['seeds'] or 'none yet'})", ""]
    for name, value in verdict.items():
        if isinstance(value, dict) and "mean" in value:
            reading = f" — **{value['reading']}**" if "reading" in value else ""
            lines.append(
                f"- {name}: {_f(value['mean'])} [{_f(value['low'])}, {_f(value['high'])}] (95 % t-interval; "
                f"per seed {', '.join(_f(v) for v in value['per_seed'])}){reading}"
            )
        elif name != "seeds":
            lines.append(f"- {name}: {value}")
    if results:
        plot_summary(setting, results, page.with_suffix(".png"))
        lines += ["", f"![distance against calls]({page.name}.png)"]
    lines.append("")
    page.with_suffix(".md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=SETTINGS, default="textures")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, help="default: outputs/step-study[-setting]")
    parser.add_argument("--resume", action="store_true", help="keep what earlier runs finished")
    args = parser.parse_args(argv)
    setting = SETTINGS[args.setting]
    work = args.work or Path(f"outputs/step-study{setting.suffix}")
    command = "python -m benchmarks.step_study " + " ".join(sys.argv[1:] if argv is None else argv)
    setting.records.mkdir(parents=True, exist_ok=True)
    table = arms()
    order = sorted(table, key=lambda arm: table[arm][0].startswith("steps"))  # untrained arms first
    for seed in args.seeds:
        for arm in order:
            path = setting.records / f"seed{seed}-{arm.replace('@', '-')}.json"
            if args.resume and path.is_file():
                continue
            result = score_arm(setting, seed, arm, work)
            path.write_text(json.dumps(result, indent=1) + "\n")
            print(json.dumps(result), flush=True)
            write_summary(setting, command)
    write_summary(setting, command)


if __name__ == "__main__":
    main()
