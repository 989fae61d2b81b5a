"""Time and memory of each evaluation metric on 1k and 10k 32×32 images.

    python -m benchmarks.metrics [--repeats 2] [--sizes 1000 10000]

Each (metric, N) case runs in its own process. Peak memory: the kernel's peak-RSS mark is reset once the
inputs are made (Linux /proc/self/clear_refs), and the metric's peak above the resident size at that
moment is reported. Cases are interleaved and
repeated; the table keeps the fastest repeat and reports ratios (10k / 1k, and time relative to the
spectrum at the same N), because other jobs share this machine's cores. Inputs: stationary 1/f² fields
(real) and a blurred second draw (fake); metric cost does not depend on image content.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.machine import RESULTS, child_result, describe_machine, status_kib

CASES = (
    "spectrum",
    "swd",
    "fid+kid (small CNN)",
    "fid+kid stats (2048-d)",
    "eps-spectrum (overhead)",
    "eps-spectrum (tiny-sd)",
)


def _fields(n: int, seed: int) -> torch.Tensor:
    from slimdiff.metrics.spectrum import frequency_radius

    g = torch.Generator().manual_seed(seed)
    amplitude = frequency_radius(32, 32).clamp_min(1 / 16).float() ** -1
    noise = torch.randn(n, 3, 32, 32, generator=g)
    x = torch.fft.ifft2(torch.fft.fft2(noise) * amplitude).real
    return (x / x.abs().amax()).clamp(-1, 1)


def _small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    return torch.nn.Sequential(_FromUint8(), net)


class _FromUint8(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / 127.5 - 1


def run_case(case: str, n: int) -> dict:
    """Make the inputs, then time one metric call; returns seconds and extra peak memory (MiB)."""
    from slimdiff.analysis.blur import gaussian_blur

    real, fake = _fields(n, 0), gaussian_blur(_fields(n, 1), 1.0)
    note = ""
    if case == "spectrum":
        from slimdiff.metrics.spectrum import spectrum_error

        def work():
            return spectrum_error(real, fake)
    elif case == "swd":
        from slimdiff.metrics.swd import swd

        def work():
            return swd(real, fake)
    elif case == "fid+kid (small CNN)":
        from slimdiff.metrics.fid import extract_features, fid_from_features, kid_from_features

        extractor = _small_cnn()

        def work():
            a, b = extract_features(real, extractor), extract_features(fake, extractor)
            return fid_from_features(a, b), kid_from_features(a, b)
    elif case == "fid+kid stats (2048-d)":
        from slimdiff.metrics.fid import fid_from_features, kid_from_features

        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, 2048, generator=g, dtype=torch.float64).abs()
        b = torch.randn(n, 2048, generator=g, dtype=torch.float64).abs() + 0.01
        note = "statistics only, on random 2048-d features (Inception's size); the network is not run"

        def work():
            return fid_from_features(a, b), kid_from_features(a, b)
    else:
        from slimdiff.diffusion import training_scheduler
        from slimdiff.metrics.eps_spectrum import eps_error_spectrum

        if case == "eps-spectrum (overhead)":

            def model(x, t):
                return torch.zeros_like(x)

            buckets = 10
        else:
            from slimdiff.models.presets import get_preset

            torch.manual_seed(0)
            model = get_preset("tiny-sd").build()
            buckets = 1  # the UNet dominates: one forward pass per image (cost grows linearly with buckets)
            note = f"1 timestep bucket: {n} tiny-sd forward passes at batch 100"

        def work():
            return eps_error_spectrum(model, real, training_scheduler(), buckets=buckets, batch_size=100)

    base = _reset_peak_rss()
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    return {"case": case, "n": n, "seconds": seconds, "extra_peak_mib": (peak - base) / 1024, "note": note}


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux ≥ 4.0) so VmHWM afterwards is this metric's own peak;
    returns the resident size at the reset (KiB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_kib("VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process: one measurement
        print(json.dumps(run_case(args.case, args.n)))
        return
    best: dict[tuple[str, int], dict] = {}
    for repeat in range(args.repeats):
        for n in args.sizes:
            for case in CASES:
                row = child_result(["benchmarks.metrics", "--case", case, "--n", str(n)])
                if "error" in row:
                    raise SystemExit(f"{case}, n = {n}: {row['error']}")
                print(
                    f"repeat {repeat + 1}: {case:26s} n={n:6d} {row['seconds']:8.2f} s  +{row['extra_peak_mib']:7.1f} MiB",
                    flush=True,
                )
                key = (case, n)
                if key not in best or row["seconds"] < best[key]["seconds"]:
                    best[key] = row
    small, large = min(args.sizes), max(args.sizes)
    lines = [
        "# Metric cost on 32×32 images",
        "",
        f"Command: `python -m benchmarks.metrics --repeats {args.repeats} --sizes {' '.join(map(str, args.sizes))}`",
        f"Machine: {describe_machine()} (shared with other jobs: compare the ratios, not the seconds)",
        "",
        "| metric | N | seconds (best of repeats) | × spectrum at same N | extra peak memory (MiB) | notes |",
        "|---|---|---|---|---|---|",
    ]
    for case in CASES:
        for n in args.sizes:
            row = best[(case, n)]
            ratio = row["seconds"] / best[("spectrum", n)]["seconds"]
            lines.append(
                f"| {case} | {n} | {row['seconds']:.2f} | {ratio:.1f} | {row['extra_peak_mib']:.0f} | {row['note']} |"
            )
    lines += [
        "",
        f"Scaling from {small} to {large} images (time ratio; linear would be {large / small:.0f}):",
        "",
    ]
    for case in CASES:
        lines.append(f"- {case}: {best[(case, large)]['seconds'] / best[(case, small)]['seconds']:.1f}×")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metrics.md").write_text(text)
    (RESULTS / "metrics.json").write_text(json.dumps(list(best.values()), indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
