"""Issue 25's few-step study on the built-in textures, by the rule written before its runs
(docs/step_distillation.md; nothing here may change what that rule fixes).

    python -m benchmarks.step_study [--seeds 0 1 2] [--resume] [--work outputs/step-study]

Per seed s, everything by the demo's recipe (`slimdiff.demo`): the slim student (the distilled SD student,
800 steps, train.seed = s; seed 0's is the shipped one, trained exactly so), its step distillation to 4 calls
with the frequency term (λ_s = 1, λ_f = 0.1, the default λ_f) and without it (λ_f = 0), 400 steps each
(configs/steps-tiny.yaml; the demo's own 150 fit its time budget); then
every arm samples 256 images from the same noise (evaluation seed 1000 + s) and is scored against 256
held-out real crops: SWD×10³, the high-band spectrum error, the SWD×10³ to the teacher's samples, and seconds
per image at batch 1. Arms: the rule's, and `lcm@N` — the LCM sampler on the student before step distillation,
the control found after the rule was written, reported beside the goals, not in them.

Each trained model and each arm's scores land as they finish (benchmarks/results/step_study/seed{s}-{arm}.json);
--resume skips what is there, so the study survives the end of a session. The summary (step_study.md / .json)
is rewritten after every arm, with the goals read by the rule on the seeds that are complete.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import torch

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
from slimdiff.training.loop import train

OUT = RESULTS / "step_study"
# CD_STEPS: configs/steps-tiny.yaml's 400 (the demo trains 150 to stay within its 15 minutes)
SAMPLES, CALLS, CD_STEPS, LAMBDA_FREQ = 256, 4, 400, 0.1
MANY = {"scheduler": "ddim", "steps": 100, "eta": 1.0}


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


def model(seed: int, which: str, work: Path) -> Path:
    """The seed's model `which` (teacher | student | steps | steps-plain), trained here the first time it is
    needed, so the arms that need no step distillation land first."""
    recipe, teacher = DemoSettings(), Path(str(SHIPPED_TEACHER))
    section = DistillConfig(teacher=str(teacher), positions=recipe.positions)
    if which == "teacher":
        return teacher
    if which == "student":
        if seed == 0:
            return Path(str(SHIPPED_STUDENTS["student"]))
        scratch = from_scratch(recipe.student_steps, recipe.batch_size, seed)
        return _trained(work / f"s{seed}-student", run_config("tiny-sd", scratch, Path(), section))
    lambda_freq = LAMBDA_FREQ if which == "steps" else 0.0
    distill = step_distillation(section, CALLS, model(seed, "student", work), lambda_freq)
    config = run_config("tiny-sd", fine_tuning(CD_STEPS, recipe.batch_size, seed), Path(), distill)
    return _trained(work / f"s{seed}-{which}", config)


def _trained(folder: Path, config) -> Path:
    if not (folder / "model" / "model_index.json").is_file():
        run = replace(config.run, dir=str(folder), checkpoint_every=100, keep_checkpoints=2)
        train(replace(config, run=run), resume="latest" if (folder / "checkpoints").is_dir() else None)
    return folder / "model"


def score_arm(seed: int, arm: str, work: Path) -> dict:
    which, sampler = arms()[arm]
    options = EvalOptions(
        target=str(model(seed, which, work)),
        data=DATA,
        metrics=("swd", "spectrum", "latency"),
        n=SAMPLES,
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
        "seed": seed,
        "arm": arm,
        "model": which,
        "sampler": sampler,
        "swd": results["swd"]["mean"],
        "spectrum_high": results["spectrum_error"]["high"],
        "swd_to_teacher": swd(torch.load(teacher_samples), ev.fake)["mean"],
        "seconds_per_image": results["seconds_per_image"],
        "machine": describe_machine(),
    }


def load_results() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(OUT.glob("seed*-*.json"))]


def goals(results: list[dict]) -> dict:
    """G1–G4 and the precondition of docs/step_distillation.md on the seeds with every arm they need."""
    table: dict[int, dict[str, dict]] = {}
    for r in results:
        table.setdefault(r["seed"], {})[r["arm"]] = r
    need = {"teacher", "student", "dpm++@4", "unipc@4", "steps@4", "steps-plain@4"}
    seeds = sorted(s for s, by_arm in table.items() if need <= set(by_arm))
    if not seeds:
        return {"seeds": []}

    def per_seed(f):
        return [f(table[s]) for s in seeds]

    def stated(values, bound=None):
        mean, low, high = interval(values)
        out = {"mean": mean, "low": low, "high": high, "per_seed": values}
        if bound is not None:
            out["reading"] = (
                "met beyond the spread" if high <= bound else "met" if mean <= bound else "missed"
            )
        return out

    best = min(("dpm++@4", "unipc@4"), key=lambda a: sum(table[s][a]["swd"] for s in seeds))
    return {
        "seeds": seeds,
        "precondition": {
            "teacher_swd": sum(per_seed(lambda t: t["teacher"]["swd"])) / len(seeds),
            "student_swd": sum(per_seed(lambda t: t["student"]["swd"])) / len(seeds),
        },
        "G1 swd(steps@4)/swd(student)": stated(
            per_seed(lambda t: t["steps@4"]["swd"] / t["student"]["swd"]), 1.25
        ),
        "G2 high(steps@4)/high(teacher)": stated(
            per_seed(lambda t: t["steps@4"]["spectrum_high"] / t["teacher"]["spectrum_high"]), 1.1
        ),
        "G3 best training-free solver": best,
        "G3 swd(steps@4) - swd(best)": stated(per_seed(lambda t: t["steps@4"]["swd"] - t[best]["swd"])),
        "G4 swd(steps@4) - swd(steps-plain@4)": stated(
            per_seed(lambda t: t["steps@4"]["swd"] - t["steps-plain@4"]["swd"])
        ),
        "G4 high(steps@4) - high(steps-plain@4)": stated(
            per_seed(lambda t: t["steps@4"]["spectrum_high"] - t["steps-plain@4"]["spectrum_high"])
        ),
    }


def _f(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def write_summary(command: str) -> None:
    results = load_results()
    verdict = goals(results)
    (RESULTS / "step_study.json").write_text(
        json.dumps({"results": results, "goals": verdict}, indent=1) + "\n"
    )
    lines = [
        "# step_study (issue 25, item 2: textures)",
        "",
        f"- command: `{command}`",
        f"- machine: {describe_machine()}",
        "- rule: docs/step_distillation.md (written before any run); arms `lcm@N` are the control added after it",
        "",
        "| seed | arm | sampler | SWD×10³ ↓ | high-band spectrum error ↓ | SWD×10³ to the teacher | s/image (batch 1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sampler = f"{r['sampler']['scheduler']} {r['sampler']['steps']}"
        lines.append(
            f"| {r['seed']} | {r['arm']} | {sampler} | {_f(r['swd'])} | {_f(r['spectrum_high'])} | "
            f"{_f(r['swd_to_teacher'])} | {_f(r['seconds_per_image'])} |"
        )
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
    lines.append("")
    (RESULTS / "step_study.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("outputs/step-study"))
    parser.add_argument("--resume", action="store_true", help="keep what earlier runs finished")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.step_study " + " ".join(argv or [])
    OUT.mkdir(parents=True, exist_ok=True)
    table = arms()
    order = sorted(table, key=lambda arm: table[arm][0].startswith("steps"))  # untrained arms first
    for seed in args.seeds:
        for arm in order:
            path = OUT / f"seed{seed}-{arm.replace('@', '-')}.json"
            if args.resume and path.is_file():
                continue
            result = score_arm(seed, arm, args.work)
            path.write_text(json.dumps(result, indent=1) + "\n")
            print(json.dumps(result), flush=True)
            write_summary(command)


if __name__ == "__main__":
    main()
