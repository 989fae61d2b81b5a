"""The ablation study's figures per data set: the samples' radial power spectra, and the ε-error per timestep
bucket (against the truth and against the teacher) with its radial profile relative to the base arm."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path

from slimdiff.reporting.plots import figure, save


def plot_study(
    runs: list[Mapping], arms: list[str], teacher: Mapping | None, real: Mapping | None, out: Path
) -> list[Path]:
    """spectra.png (samples' radial power, mean over seeds) and eps.png (ε-error vs ground truth and vs the
    teacher per timestep bucket, high band; and the ε-error radial profile relative to the base arm)."""
    present = [a for a in arms if any(r["arm"] == a for r in runs)]
    if not present:
        return []
    fig, ax = figure(6.0, 4.2)
    if real is not None:
        ax.loglog(real["radii"][1:], real["power"][1:], "k-", lw=2, label="real (held out)")
    if teacher is not None:
        ax.loglog(teacher["radii"][1:], teacher["samples_power"][1:], "k--", lw=1.5, label="teacher")
    for arm in present:
        powers = [r["samples_power"] for r in runs if r["arm"] == arm]
        mean = [statistics.mean(p[i] for p in powers) for i in range(len(powers[0]))]
        ax.loglog(runs[0]["radii"][1:], mean[1:], label=arm)
    ax.set_xlabel("spatial frequency (Nyquist = 1)")
    ax.set_ylabel("power of samples")
    ax.legend(fontsize=7)
    written = [save(fig, out / "spectra.png")]

    fig, axes = figure(13.0, 3.8, ncols=3)
    for arm in present:
        chosen = [r for r in runs if r["arm"] == arm]
        for ax, key in zip(axes[:2], ("eps", "eps_teacher"), strict=True):
            per = [[b["high"] for b in r["metrics"][key]["buckets"]] for r in chosen]
            centres = [(b["t_from"] + b["t_to"]) / 2 for b in chosen[0]["metrics"][key]["buckets"]]
            mean = [statistics.mean(p[i] for p in per) for i in range(len(centres))]
            std = [statistics.stdev(p[i] for p in per) if len(per) > 1 else 0 for i in range(len(centres))]
            ax.errorbar(centres, mean, yerr=std, label=arm, capsize=2)
        profile = [
            statistics.mean(p[i] for p in [r["eps_radial"] for r in chosen])
            for i in range(len(chosen[0]["eps_radial"]))
        ]
        if arm == present[0]:
            base_profile = profile
        ratio = [p / b for p, b in zip(profile, base_profile, strict=True)]
        axes[2].plot(chosen[0]["radii"], ratio, label=arm)
    axes[0].set_title("ε̂ − ε, high band, per t")
    axes[1].set_title("ε̂ − ε̂_teacher, high band, per t")
    axes[2].set_title(f"ε-error power by frequency / {present[0]}")
    for ax in axes[:2]:
        ax.set_yscale("log")
        ax.set_xlabel("timestep t")
    axes[2].set_xlabel("spatial frequency (Nyquist = 1)")
    axes[2].axhline(1.0, color="grey", lw=0.8)
    axes[0].legend(fontsize=7)
    written.append(save(fig, out / "eps.png"))
    return written
