"""The quality side of deployment, on models with real (trained) weights, all made here offline:

1. **Slim decoder vs full decoder.** A small VQ-f4 autoencoder (diffusers `VQModel`) is trained on built-in
   photos; a slim decoder is distilled from its decoder twice — pixel + frequency-weighted loss (slimdiff's
   default) and pixel loss alone — and both are compared with the full decoder on held-out photos (PSNR, SWD,
   low/high spectrum error). The hub autoencoders (CompVis VQ-f4, SD's KL-f8) need their own run:
   `slimdiff distill-decoder --vae THEIR_FOLDER --data YOUR_IMAGES`.
2. **int8 decoders**: the trained VQ decoder and the slim decoder quantised with onnxruntime (static, calibrated
   on latents of the data), against their fp32 graphs.
3. **int8 UNet**: the shipped tiny teacher exported and quantised by `quantize_export`, the code behind
   `slimdiff export --to onnx --quantize int8`, with its cost measured on built-in textures.

    python -m benchmarks.deploy_quality [--vq-steps 800] [--distill-steps 600] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks.machine import RESULTS, describe_machine, write_result
from slimdiff.data.datasets import held_out_images, load_images
from slimdiff.deploy.decoder_distillation import DecoderDistillSettings, distill_and_measure, held_out_pairs
from slimdiff.deploy.export import export_folder
from slimdiff.deploy.onnx_decoder import OnnxDecoder, export_decoder
from slimdiff.deploy.quantize import quantize_export, quantize_graph
from slimdiff.metrics.fidelity import decoder_quality, psnr
from slimdiff.metrics.spectrum import spectrum_error
from slimdiff.models.size import count_params
from slimdiff.models.slim_decoder import load_slim_decoder
from slimdiff.sampling.pipeline import load_pipeline

DATA, SIZE = "builtin:photos", 128
TEACHER = Path(__file__).parents[1] / "src" / "slimdiff" / "assets" / "tiny-teacher"


def train_vq(folder: Path, steps: int, seed: int = 0) -> dict:
    """A VQ-f4 autoencoder (32-64-64 channels, 512 codes of 3 dims) trained on 64×64 crops of built-in photos."""
    from diffusers import VQModel

    torch.manual_seed(seed)
    vq = VQModel(
        block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=3,
        num_vq_embeddings=512,
        vq_embed_dim=3,
        norm_num_groups=16,
        scaling_factor=1.0,
    )
    images = load_images(DATA, 64, 1024, seed)
    optimizer = torch.optim.AdamW(vq.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(steps):
        x = images[torch.randint(0, len(images), (16,), generator=g)]
        out = vq(x)
        loss = F.mse_loss(out.sample, x) + out.commit_loss.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"vq step {step}: loss {loss.item():.4f}", flush=True)
    vq.eval().save_pretrained(folder)
    return {
        "steps": steps,
        "final_loss": loss.item(),
        "seconds": round(time.perf_counter() - start, 1),
        "params": count_params(vq),
    }


def int8_decoder(decoder, latents: torch.Tensor, reference: torch.Tensor, folder: Path, name: str) -> dict:
    """fp32 vs int8 onnxruntime graphs of `decoder` on held-out `latents` (unscaled)."""
    fp32, int8 = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
    export_decoder(decoder, fp32, tuple(latents.shape[-2:]))
    feeds = [{"latents": np.ascontiguousarray(z[None].numpy())} for z in latents[:8]]
    mode = quantize_graph(fp32, int8, feeds)
    a = OnnxDecoder(fp32, decoder.config, threads=1).decode(latents[8:]).sample.clamp(-1, 1)
    b = OnnxDecoder(int8, decoder.config, threads=1).decode(latents[8:]).sample.clamp(-1, 1)
    return {
        "mode": mode["mode"],
        "psnr_int8_vs_fp32_db": psnr(b, a),
        "spectrum_error": spectrum_error(a, b),
        "psnr_fp32_vs_full_decoder_db": psnr(a, reference[8:]),
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vq-steps", type=int, default=800)
    parser.add_argument("--distill-steps", type=int, default=600)
    parser.add_argument("--n-eval", type=int, default=48)
    parser.add_argument("--work", type=Path, default=Path("outputs/deploy_quality"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    vq_folder = args.work / "vq-f4"
    if not (vq_folder / "config.json").is_file():
        result["vq"] = train_vq(vq_folder, args.vq_steps)
    autoencoder, latents, reference = held_out_pairs(vq_folder, DATA, SIZE, args.n_eval)
    real = held_out_images(DATA, SIZE, args.n_eval)
    result["full_decoder_vs_real_psnr_db"] = psnr(reference, real)
    base = DecoderDistillSettings(steps=args.distill_steps, batch_size=8, images=256, size=SIZE, crop=16)
    for label, lam in (("pixel + frequency-weighted", 1.0), ("pixel only", 0.0)):
        out = args.work / f"slim-{'freq' if lam else 'pixel'}"
        record = distill_and_measure(vq_folder, DATA, out, replace(base, lambda_freq=lam), args.n_eval)
        slim = load_slim_decoder(out)
        record["quality_vs_real"] = decoder_quality(slim, latents, real)
        result[label] = record
        print(label, json.dumps(record["quality_vs_full_decoder"]), flush=True)
    unscaled = latents / autoencoder.scaling_factor
    result["int8_full_decoder"] = int8_decoder(
        autoencoder.model, unscaled, reference, args.work, "vq-decoder"
    )
    slim = load_slim_decoder(args.work / "slim-freq")
    result["int8_slim_decoder"] = int8_decoder(slim, unscaled, reference, args.work, "slim-decoder")
    print(json.dumps({k: result[k] for k in ("int8_full_decoder", "int8_slim_decoder")}), flush=True)
    export = args.work / "tiny-teacher-onnx"
    export_folder(load_pipeline(TEACHER), export, onnx=True, source=str(TEACHER))
    result["int8_unet"] = quantize_export(export, "builtin:textures", n=32, steps=20)["quantize"]
    (RESULTS / "deploy_quality.json").write_text(json.dumps(result, indent=2, default=str))
    print(write_result("deploy_quality", report(result), describe_machine()))


if __name__ == "__main__":
    main()
