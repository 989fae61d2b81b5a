"""Class-conditional slim models on this CPU: does guidance make the samples the intended class?

A tiny class-conditional teacher is trained on `builtin:digits` (scikit-learn's 8×8 digits at 16×16, 10
classes), a tiny-sd-class student is distilled from it and the same student trained without a teacher; a small
CNN trained on the real digits judges every sample. Reported per model and guidance scale w: accuracy of the
intended class (chance 1/10), per-class accuracy and per-class SWD to the real digits of that class, and a
grid with one row per class. Resumable: finished runs and measurements are reused (`--resume` is the default;
`--fresh` starts over). Runs go to outputs/bench-conditional/ (not committed); results to
benchmarks/results/conditional.{md,json,png}.

    OMP_NUM_THREADS=1 python -m benchmarks.conditional
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.machine import RESULTS, describe_machine, write_result
from slimdiff.config import Config, from_dict
from slimdiff.data.datasets import make_dataset
from slimdiff.metrics.swd import swd
from slimdiff.reporting.images import save_grid
from slimdiff.sampling.pipeline import load_pipeline
from slimdiff.training.checkpoint import list_checkpoints
from slimdiff.training.loop import train

RUNS = Path("outputs/bench-conditional")
SIZE, CLASSES = 16, 10
GUIDANCE = (0.0, 1.0, 3.0)
LABELS = {
    "teacher": "teacher (tiny-teacher-class)",
    "student": "SD student, distilled (tiny-sd-class)",
    "plain": "SD, no teacher (tiny-sd-class)",
}


def run_config(name: str, model: str, steps: int, teacher: Path | None = None) -> Config:
    mapping = {
        "model": model,
        "data": {"source": "builtin:digits", "size": SIZE},
        "train": {
            "steps": steps,
            "batch_size": 32,
            "base_lr": 2.5e-5,
            "warmup_steps": 100,
            "ema_decay": 0.999,
        },
        "run": {"dir": str(RUNS / name), "checkpoint_every": 250, "sample_every": 0},
    }
    if teacher is not None:
        mapping["distill"] = {"teacher": str(teacher)}
    return from_dict(Config, mapping)


def trained(config: Config) -> Path:
    """The run's model folder, training (or resuming) it when it is not finished."""
    run = Path(config.run.dir)
    if not (run / "model" / "model_index.json").is_file():
        resume = "latest" if list_checkpoints(run / "checkpoints") else None
        train(config, resume=resume)
    return run / "model"


class DigitClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (SIZE // 4) ** 2, 64), nn.ReLU(), nn.Linear(64, CLASSES),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.mean(dim=1, keepdim=True))  # grey: the mean of R, G, B


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = make_dataset("builtin:digits", SIZE, conditioning="class")
    images, labels = zip(*(data[i] for i in range(len(data))), strict=True)
    return torch.stack(images), torch.tensor(labels)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, path: Path) -> tuple[nn.Module, float]:
    """A small CNN on 80% of the real digits (shifted by up to one pixel); its accuracy on the other 20%."""
    model = DigitClassifier()
    split = int(0.8 * len(images))
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        torch.manual_seed(0)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(1500):
            index = torch.randint(split, (64,), generator=g)
            shift = tuple(torch.randint(-1, 2, (2,), generator=g).tolist())
            x = torch.roll(images[index], shift, dims=(2, 3))
            loss = F.cross_entropy(model(x), labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[split:]).argmax(1) == labels[split:]).float().mean().item()
    return model, accuracy


@torch.no_grad()
def sample(
    model: Path, w: float, per_class: int, steps: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` samples of every class at guidance w (w = 0: the unconditional branch), in [-1, 1]."""
    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    generator = torch.Generator().manual_seed(seed)
    images = pipe(
        batch_size=len(labels),
        class_labels=labels,
        guidance_scale=w,
        num_inference_steps=steps,
        sampler="dpm++",
        generator=generator,
        output_type="pt",
    ).images
    return images * 2 - 1, labels


def measure(name: str, model: Path, classifier: nn.Module, real, real_labels, args, cache: dict) -> dict:
    rows = cache.setdefault(name, {})
    for w in GUIDANCE:
        key = f"{w:g}"
        if key in rows:
            continue
        images, labels = sample(model, w, args.per_class, args.steps)
        predicted = classifier(images).argmax(1)
        per_class = [(predicted[labels == c] == c).float().mean().item() for c in range(CLASSES)]
        swd_per_class = [
            swd(real[real_labels == c][: args.per_class * 4], images[labels == c], seed=0)["mean"]
            for c in range(CLASSES)
        ]
        rows[key] = {
            "accuracy": (predicted == labels).float().mean().item(),
            "per_class_accuracy": per_class,
            "swd_per_class": swd_per_class,
            "swd_mean": sum(swd_per_class) / CLASSES,
        }
        save_grid(images.view(CLASSES, args.per_class, *images.shape[1:])[:, :10].reshape(-1, *images.shape[1:]),
                  RESULTS / "conditional" / f"{name}-w{key}.png", nrow=10, upscale=3)  # fmt: skip
        (RESULTS / "conditional.json").write_text(json.dumps(cache, indent=2))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=3000)
    parser.add_argument("--student-steps", type=int, default=1500)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument(
        "--with-plain", action="store_true", help="also the student trained without a teacher"
    )
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps per sample")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs and measurements")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.fresh:
        shutil.rmtree(RUNS, ignore_errors=True)
        (RESULTS / "conditional.json").unlink(missing_ok=True)
    real, real_labels = digits()
    classifier, held_out_accuracy = train_classifier(real, real_labels, RUNS / "classifier.pt")
    results_file = RESULTS / "conditional.json"
    cache = json.loads(results_file.read_text()) if results_file.is_file() else {}
    cache["classifier_held_out_accuracy"] = held_out_accuracy
    # each model is measured as soon as it is trained, so a stopped run keeps what it measured
    teacher = trained(run_config("teacher", "tiny-teacher-class", args.teacher_steps))
    configs = {"student": run_config("student", "tiny-sd-class", args.student_steps, teacher)}
    if args.with_plain:
        configs["plain"] = run_config("plain", "tiny-sd-class", args.student_steps)
    table = {"teacher": measure("teacher", teacher, classifier, real, real_labels, args, cache)}
    for name, config in configs.items():
        table[name] = measure(name, trained(config), classifier, real, real_labels, args, cache)
    lines = [
        f"Data: builtin:digits at {SIZE}×{SIZE} (10 classes, chance = 0.10). Teacher {args.teacher_steps} steps, "
        f"students {args.student_steps} steps (batch 32, lr 8e-4, cond_dropout 0.1). {args.per_class} samples per "
        f"class and w, DPM-Solver++ {args.steps} steps, the same noise for every model and w. Judge: a small CNN "
        f"trained on 80% of the real digits, {held_out_accuracy:.3f} accuracy on the other 20%.",
        "",
        "| model | "
        + " | ".join(f"acc w={w:g}" for w in GUIDANCE)
        + " | "
        + " | ".join(f"SWD w={w:g}" for w in GUIDANCE)
        + " |",
        "|---|" + "---|" * (2 * len(GUIDANCE)),
    ]
    for name, rows in table.items():
        accuracy = " | ".join(f"{rows[f'{w:g}']['accuracy']:.3f}" for w in GUIDANCE)
        distance = " | ".join(f"{rows[f'{w:g}']['swd_mean']:.1f}" for w in GUIDANCE)
        lines.append(f"| {LABELS[name]} | {accuracy} | {distance} |")
    lines += ["", "w = 0 is the unconditional branch alone, w = 1 the conditional model, w > 1 guided. SWD×10³ is "
              "the mean over classes of the SWD between a class's samples and the real digits of that class.",
              "", "Per-class accuracy at w = 3:", "",
              "| model | " + " | ".join(str(c) for c in range(CLASSES)) + " |", "|---|" + "---|" * CLASSES]  # fmt: skip
    for name, rows in table.items():
        lines.append(
            f"| {LABELS[name]} | " + " | ".join(f"{a:.2f}" for a in rows["3"]["per_class_accuracy"]) + " |"
        )
    lines += ["", "Grids (one row per class, w = 3): " + ", ".join(
        f"`conditional/{name}-w3.png`" for name in table)]  # fmt: skip
    write_result("conditional", "\n".join(lines), describe_machine())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
