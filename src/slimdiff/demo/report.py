"""The demo's report: sample grids, the numbers table with each row's sampler, seconds per image and speed-up,
the ε-error per timestep and the spectra."""

from __future__ import annotations

from slimdiff.demo.recipe import DATA, SIZE, uses_shipped_students
from slimdiff.reporting.report import Report


def sampler_name(sampler: dict) -> str:
    eta = "" if sampler["eta"] is None else f", η = {sampler['eta']:g}"
    return f"{sampler['scheduler']} {sampler['steps']}{eta}"


def demo_report(settings, teacher_path, section, metrics, evaluations, grids, samplers, minutes) -> Report:
    s = settings
    report = Report("slimdiff demo: spectrum-aware distillation on built-in textures")
    report.paragraph(
        f"Data: {DATA} ({SIZE}×{SIZE} crops of the scikit-image textures, grey: R = G = B). Teacher: "
        f"{teacher_path}. Student: tiny-sd (wavelet-gated), distilled for {s.student_steps} steps with "
        f"λ_s = λ_f = {section.lambda_spatial:g}, α = {section.alpha:g} at {', '.join(section.positions)}"
        + (
            " (shipped with slimdiff, trained by `slimdiff demo --train-students`). "
            if uses_shipped_students(s)
            else " (trained by this run). "
        )
        + f"Samples: {s.samples} per model from the same initial noise, with the sampler in the table ({s.sampler} "
        f"{s.sample_steps} steps, η = {s.eta:g}, for every many-step model). "
        + (
            f"Few-step student: the distilled student, step-distilled (consistency distillation against the "
            f"teacher, λ_s = 1, λ_f = 0) for {s.few_step_training} steps to sample in {s.few_step_calls} calls "
            f"with its own LCM scheduler; beside it, the same LCM sampler on the student before step "
            f"distillation (what the step distillation adds). "
            if s.few_step_calls
            else ""
        )
        + f"Run time {minutes:.1f} min."
    )
    report.heading("Samples")
    for name, file in grids.items():
        report.picture(file, f"{name} (first 64)")
    report.heading("Numbers")
    header = [
        "model",
        "sampler",
        "params",
        "MACs/step",
        "steps/s (batch 64)",
        "s/image (batch 1)",
        "speed-up",
    ]
    header += ["SWD×10³ ↓", "spectrum err low ↓"]
    header += ["spectrum err high ↓", "colour (chroma RMS) ↓", "ε-error low ↓", "ε-error high ↓"]
    rows = []
    for name in evaluations:
        m = metrics[name]
        rows.append(
            [
                name,
                sampler_name(samplers[name]),
                f"{m['params'] / 1e6:.2f}M",
                f"{m['macs'] / 1e9:.3f}G",
                f"{m['unet_steps_per_s']:.1f}",
                f"{m['seconds_per_image']:.3g}",
                f"{m['vs_teacher']['speed_up']:.1f}×" if "vs_teacher" in m else "1×",
                m["swd"]["mean"],
                m["spectrum_error"]["low"],
                m["spectrum_error"]["high"],
                m["chroma_rms"],
                m["eps_spectrum"]["low"],
                m["eps_spectrum"]["high"],
            ]
        )
    report.table(header, rows)
    verdicts = [
        f"{name}: SWD {c['swd_ratio']:.2f}× and high-frequency spectrum error {c['spectrum_high_ratio']:.2f}× the "
        f"teacher's ({'within' if c['ok'] else 'NOT within'} 2×), {c['speed_up']:.1f}× faster per image"
        for name, c in ((n, m["vs_teacher"]) for n, m in metrics.items() if "vs_teacher" in m)
    ]
    report.paragraph("Against the teacher's samples from the same noise — " + "; ".join(verdicts) + ".")
    report.paragraph(
        "SWD: sliced Wasserstein distance to the real crops over Laplacian-pyramid patches (mean over levels). "
        "Spectrum error: mean |log10 P_model − log10 P_real| of the radial power spectrum below / above half "
        "Nyquist. Colour: RMS distance of each pixel from its grey value (the real crops: 0). s/image: one image "
        "at batch 1 through the pipeline with the row's sampler, median of ≥ 3 runs on this machine; speed-up: "
        "the teacher's s/image over the row's. ε-error: power of "
        f"ε̂ − ε on {s.samples} held-out real crops below / above half Nyquist, averaged over 10 timestep "
        "buckets (no sampling; low variance); per bucket below. One seed per model and small sample sizes: read "
        "differences of a few percent as noise (the seeded comparison is docs/ablation.md)."
    )
    report.heading("ε-error per timestep")
    buckets = {name: ev.eps_spectrum for name, ev in evaluations.items()}
    first = next(iter(buckets.values()))
    edges = list(zip(first.bucket_edges[:-1], first.bucket_edges[1:], strict=True))
    head = ["timesteps", *[f"{name}: total (high)" for name in buckets]]
    table = []
    for b, (lo, hi) in enumerate(edges):
        cells = [f"{r.low[b] + r.high[b]:.4f} ({r.high[b]:.4f})" for r in buckets.values()]
        table.append([f"{lo}–{hi - 1}", *cells])
    report.table(head, table)
    report.paragraph(
        "Mean squared error of ε̂ per timestep bucket (total = low + high band; high band in brackets), on the "
        "same held-out x_t for every model. The average over buckets in the table above hides where the "
        "students lose: compare the rows at large t, where the sample's layout is decided."
    )
    report.heading("Spectra")
    report.picture("spectra.png", "mean radial power spectrum of real and generated images")
    report.picture("eps-spectrum.png", "prediction-error power per timestep and frequency")
    return report
