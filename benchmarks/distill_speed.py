"""Cost of one distillation step, split up, next to plain training of the same student.

    python benchmarks/distill_speed.py [--batch 32] [--repeats 7]

Target (issue 4): distillation step ≤ 1.3 × (teacher forward + plain student step), i.e. the hooks,
projectors, ω and FFTs add little. All variants run interleaved in one process; medians are reported.
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

from benchmarks.machine import describe_machine, interleaved_medians, write_result
from slimdiff.diffusion import training_scheduler
from slimdiff.models.presets import get_preset
from slimdiff.training.distillation import SpectralDistillation, frequency_loss, spatial_loss, spectral_weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="tiny-teacher")
    parser.add_argument("--student", default="tiny-sd")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    torch.manual_seed(0)
    teacher = get_preset(args.teacher).build().eval().requires_grad_(False)
    student = get_preset(args.student).build().train()
    objective = SpectralDistillation(student, teacher)
    optimizer = torch.optim.AdamW([*student.parameters(), *objective.parameters()], lr=1e-4)
    cfg = student.config
    x0 = torch.rand(args.batch, cfg.in_channels, cfg.sample_size, cfg.sample_size) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.randint(0, 1000, (args.batch,))
    x_t = training_scheduler().add_noise(x0, noise, t)

    def teacher_forward() -> None:
        with torch.no_grad():
            teacher(x_t, t)

    def plain_step() -> None:
        F.mse_loss(student(x_t, t).sample, noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def distill_step() -> None:
        objective(student, x0, x_t, t, noise)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # The loss part alone: projectors, ω and FFTs on features captured once.
    with torch.no_grad():
        student(x_t, t)
        teacher(x_t, t)
    captured = {
        p: (objective.student_taps[p].pop(), objective.teacher_taps[p].pop()) for p in objective.student_taps
    }
    eps_s, eps_t = torch.randn_like(x0, requires_grad=True), torch.randn_like(x0)

    def loss_only() -> None:
        total = spatial_loss(eps_s, eps_t) + frequency_loss(eps_s, eps_t, spectral_weight(x0, x0.shape[-2:]))
        for p, (s, tt) in captured.items():
            projected = objective.projectors[p](s.requires_grad_())
            omega = spectral_weight(x0, tt.shape[-2:])
            total = total + spatial_loss(projected, tt) + frequency_loss(projected, tt, omega)
        total.backward()

    variants = {
        "teacher forward": teacher_forward,
        "plain student step": plain_step,
        "distillation step": distill_step,
        "distillation losses alone": loss_only,
    }
    med = interleaved_medians(variants, args.repeats)
    bound = med["teacher forward"] + med["plain student step"]
    ratio = med["distillation step"] / bound

    lines = [
        f"teacher {args.teacher}, student {args.student}, batch {args.batch}, {cfg.sample_size}×{cfg.sample_size}, "
        f"median of {args.repeats} interleaved repeats",
        "",
        "| part | ms / step | × plain student step |",
        "|---|---:|---:|",
    ]
    for name, value in med.items():
        lines.append(f"| {name} | {1e3 * value:.1f} | {value / med['plain student step']:.2f} |")
    overhead = med["distillation step"] - bound
    lines += [
        "",
        f"distillation step / (teacher forward + plain step) = **{ratio:.2f}** (target ≤ 1.30: "
        f"{'met' if ratio <= 1.3 else 'missed'})",
        f"overhead beyond teacher forward + plain step: {1e3 * overhead:.1f} ms "
        f"({100 * overhead / med['distillation step']:.0f}% of the step)",
    ]
    print("\n".join(lines))
    write_result("distill_speed", "\n".join(lines), describe_machine())


if __name__ == "__main__":
    main()
