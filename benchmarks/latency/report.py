"""The Markdown of `python -m benchmarks.latency`: whole-path seconds per image composed from the timed
parts."""

from __future__ import annotations

GOAL_SECONDS, GOAL_SPEEDUP = 1.0, 200.0
PATHS = [  # (model, solver, steps); LDM only with the paper's DDIM-200
    ("LDM-f4", "ddim", 200),
    *[(m, s, n) for m in ("Lite-f4", "SD-f4") for s in ("dpm++", "unipc") for n in (20, 10)],
]
RUNTIMES = [("torch", "fp32"), ("ort", "fp32"), ("ort", "int8")]
DECODERS = ("full VQ-f4", "slim")


def path_seconds(
    t: dict, batch, model, runtime, precision, solver, steps, decoder
) -> tuple[float, float, float]:
    """(total, UNet share, decoder share) in seconds per image; the decoder runs in the same runtime/precision."""
    unet = t["unet"][batch].get(f"{model}|{runtime}|{precision}")
    dec = t["decoder"][batch].get(f"{decoder}|{runtime}|{precision}")
    if unet is None or dec is None:
        return (float("nan"),) * 3
    steps_s = steps * (unet + t["solver"][batch][solver]) / batch
    return steps_s + dec / batch, steps_s, dec / batch


def report(t: dict, threads: int) -> str:
    lines = []
    if t.get("clock") == "cpu":
        lines.append(
            "Seconds here are **CPU seconds** of the one thread (`time.process_time`): what each part costs on an "
            "idle core, whatever else the shared machine runs; memory-bandwidth and cache contention from other "
            "jobs still slow it somewhat.\n"
        )
    for batch in t["unet"]:
        ldm, _, _ = path_seconds(t, batch, "LDM-f4", "torch", "fp32", "ddim", 200, "full VQ-f4")
        lines += [
            f"## Batch {batch}: seconds per 256×256 image (UNet steps + decoder)\n",
            f"LDM-f4 DDIM-200, PyTorch fp32, full decoder: **{ldm:.1f} s** per image (the reference of the × column).\n",
            "| model | solver | steps | runtime | decoder | s / image | UNet s | decoder s | × faster than LDM | ≤ 1 s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for model, solver, steps in PATHS:
            for runtime, precision in RUNTIMES if model != "LDM-f4" else RUNTIMES[:1]:
                for decoder in DECODERS:
                    total, unet, dec = path_seconds(
                        t, batch, model, runtime, precision, solver, steps, decoder
                    )
                    if total != total:
                        continue
                    ok = "yes" if total <= GOAL_SECONDS else "no"
                    lines.append(
                        f"| {model} | {solver} | {steps} | {runtime} {precision} | {decoder} | {total:.2f} | "
                        f"{unet:.2f} | {dec:.2f} | {ldm / total:.0f}× | {ok} |"
                    )
        lines.append("")
        lines += [
            "Timed parts (median seconds per call, this batch):\n",
            "| part | torch fp32 | ort fp32 | ort int8 |",
            "|---|---|---|---|",
        ]
        for name in ("LDM-f4", "Lite-f4", "SD-f4"):
            row = [t["unet"][batch].get(f"{name}|{r}|{p}") for r, p in RUNTIMES]
            lines.append(
                f"| {name} UNet step | " + " | ".join("—" if v is None else f"{v:.3f}" for v in row) + " |"
            )
        for name in DECODERS:
            row = [t["decoder"][batch].get(f"{name}|{r}|{p}") for r, p in RUNTIMES]
            lines.append(
                f"| {name} decoder | " + " | ".join("—" if v is None else f"{v:.3f}" for v in row) + " |"
            )
        solvers = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in t["solver"][batch].items())
        lines += ["", f"Solver overhead per step (a free model): {solvers}.", ""]
    if t.get("end_to_end"):
        lines += [
            "## Whole paths run end to end through the pipeline (batch 1), against the composed sum\n",
            "| path | measured s / image | composed s / image |",
            "|---|---|---|",
        ]
        for name, seconds in t["end_to_end"].items():
            unet_key, rest = name.split(" + ")
            decoder_key, run = rest.rsplit(" ", 1)
            model, runtime, precision = unet_key.split("|")
            solver, steps = run.rsplit("-", 1)
            decoder = decoder_key.split("|")[0]
            composed = path_seconds(t, 1, model, runtime, precision, solver, int(steps), decoder)[0]
            lines.append(f"| {name} | {seconds:.2f} | {composed:.2f} |")
        lines.append("")
    if t.get("rss"):
        lines += [
            "## Peak memory (RSS of a fresh process drawing one image, batch 1)\n",
            "| configuration (model, runtime, decoder, steps) | peak RSS MiB | s / image in that process |",
            "|---|---|---|",
        ]
        for config, r in t["rss"].items():
            if "error" in r:
                lines.append(f"| {config} | failed | {r['error'][-80:]!r} |")
            else:
                lines.append(f"| {config} | {r['rss_mib']:.0f} | {r['seconds']:.2f} |")
        lines.append("")
    lines.append(
        f"torch and onnxruntime ran with {threads} thread(s); the machine was shared with other jobs."
    )
    return "\n".join(lines)
