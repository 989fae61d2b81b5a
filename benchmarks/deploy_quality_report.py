"""The Markdown of `benchmarks/deploy_quality.py`."""

from __future__ import annotations


def _se(e: dict) -> str:
    return f"{e['low']:.3f} / {e['high']:.3f}"


def report(r: dict) -> str:
    lines = ["## Slim decoder vs the full decoder it was distilled from\n"]
    if "vq" in r:
        vq = r["vq"]
        lines.append(
            f"The VQ-f4 autoencoder: {vq['params'] / 1e6:.2f}M weights, trained {vq['steps']} steps on 64×64 "
            f"crops of built-in photos ({vq['seconds']:.0f} s, final loss {vq['final_loss']:.4f})."
        )
    lines += [
        f"Its own reconstructions reach {r['full_decoder_vs_real_psnr_db']:.1f} dB PSNR against the photos.\n",
        "| slim decoder loss | params | steps | PSNR vs full decoder (dB) | SWD×10³ vs full (mean) | "
        "spectrum error low / high vs full | PSNR vs the real photos (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in ("pixel + frequency-weighted", "pixel only"):
        rec = r[label]
        q, real = rec["quality_vs_full_decoder"], rec["quality_vs_real"]
        swd = q.get("swd_x1e3", {}).get("mean", float("nan"))
        lines.append(
            f"| {label} | {rec['params'] / 1e6:.2f}M | {rec['settings']['steps']} | {q['psnr_db']:.2f} | "
            f"{swd:.1f} | {_se(q['spectrum_error'])} | {real['psnr_db']:.2f} |"
        )
    lines += [
        "",
        "## int8 decoders (onnxruntime static quantisation, calibrated on latents of the data)\n",
        "| decoder | mode | PSNR int8 vs fp32 (dB) | spectrum error int8 vs fp32 low / high |",
        "|---|---|---|---|",
    ]
    for key, name in (("int8_full_decoder", "full VQ-f4"), ("int8_slim_decoder", "slim")):
        d = r[key]
        lines.append(
            f"| {name} | {d['mode']} | {d['psnr_int8_vs_fp32_db']:.2f} | {_se(d['spectrum_error'])} |"
        )
    q = r["int8_unet"]
    cost = q["cost"]
    lines += [
        "",
        "## int8 UNet: the shipped tiny teacher, `quantize_export` (= `slimdiff export --quantize int8`)\n",
    ]
    for name, g in q["graphs"].items():
        lines.append(
            f"- {name}: {g['mode']} quantisation, one step {g['fp32_seconds'] * 1e3:.1f} ms fp32 → "
            f"{g['int8_seconds'] * 1e3:.1f} ms int8 ({g['speedup']:.2f}×)"
        )
    s = cost["samples"]
    swd = s.get("swd_x1e3", {}).get("mean", float("nan"))
    lines += [
        f"- samples from the same noise ({s['n']}, {s['sampler']} {s['steps']} steps): PSNR int8 vs fp32 "
        f"{s['psnr_db']:.1f} dB, SWD×10³ {swd:.1f}, spectrum error low / high {_se(s['spectrum_error'])}",
        f"- ε error on {cost['eps_data']} per timestep bucket (mean squared, low / high frequencies):\n",
        "| timesteps | int8 − fp32 low | int8 − fp32 high | fp32 − true ε low | fp32 − true ε high | int8 share of the "
        "model's own error (high) |",
        "|---|---|---|---|---|---|",
    ]
    for b in cost["eps_error"]["buckets"]:
        share = b["int8_vs_fp32_high"] / max(b["fp32_own_error_high"], 1e-12)
        lines.append(
            f"| {b['t_from']}–{b['t_to'] - 1} | {b['int8_vs_fp32_low']:.2e} | {b['int8_vs_fp32_high']:.2e} | "
            f"{b['fp32_own_error_low']:.2e} | {b['fp32_own_error_high']:.2e} | {share:.1%} |"
        )
    return "\n".join(lines)
