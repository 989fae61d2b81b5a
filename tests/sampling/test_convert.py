"""`slimdiff convert` (issue 15): CompVis LDM checkpoints → our preset folders, without executing code.

The checkpoints are built here in the CompVis key layout from tiny configs of the ldm-f4 and ldm-kl8 structure.
(During development the mapping was also checked against CompVis' own `openaimodel.UNetModel` and
`Encoder` / `Decoder`: same outputs to 1e-5 for lite-ldm-f4, lite-ldm-kl8 and both first stages.)"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from diffusers import AutoencoderKL, VQModel
from typer.testing import CliRunner

from slimdiff.cli import app
from slimdiff.errors import ConfigError, ModelError
from slimdiff.models.compvis import from_compvis, to_compvis
from slimdiff.models.compvis_vae import first_stage, vae_from_compvis, vae_to_compvis
from slimdiff.models.loading import load_teacher
from slimdiff.models.presets import PRESETS, Preset, get_preset
from slimdiff.sampling.convert import convert_checkpoint, read_checkpoint, scheduler_from
from slimdiff.sampling.pipeline import load_pipeline

runner = CliRunner()
# The f4 and kl8 structures at test size: same levels, attention and samplers, narrow widths, one res-block.
TINY = {
    "ldm-f4": {"block_out_channels": (8, 16, 16, 16), "attention_head_dim": 8},
    "ldm-kl8": {
        "block_out_channels": (8, 16, 16, 16, 16),
        "attention_head_dim": 4,
        "attention_heads": 2,
        "attn_norm_num_groups": 4,
    },
}
SMALL = {"layers_per_block": 1, "norm_num_groups": 4, "sample_size": 16}


def _random(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight random (also the zero-initialised output layers), so that a misplaced tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def _tiny(preset: str, seed: int = 0):
    return _random(get_preset(preset).build(**TINY[preset], **SMALL), seed)


def _vae(kind: str, seed: int = 0):
    blocks = {"down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2}
    latent = 3 if kind == "vq" else 4  # as LDM's VQ-f4 and KL-f8
    common = {**blocks, "block_out_channels": (32, 64), "layers_per_block": 1, "latent_channels": latent}
    vae = (
        VQModel(**common, num_vq_embeddings=16, vq_embed_dim=latent)
        if kind == "vq"
        else AutoencoderKL(**common)
    )
    return _random(vae, seed)


@pytest.mark.parametrize("preset", list(TINY))
def test_a_compvis_state_dict_round_trips_to_identical_parameters(preset, unet_inputs, assert_same_model):
    ours = _tiny(preset)
    compvis = to_compvis(ours.state_dict(), ours)
    fresh = get_preset(preset).build(**TINY[preset], **SMALL).eval()
    fresh.load_state_dict(from_compvis(compvis, fresh))
    assert_same_model(ours, fresh, unet_inputs(ours))


def test_the_compvis_layout_is_the_one_openaimodel_writes():
    # f4: input_blocks 1-2 level 0, 3 its Downsample (.op), 4-5 level 1 with attention (.1), …; output level 3
    # first, its up-sampler after the attention of its last block (.2); the fused qkv as a 1-D conv.
    compvis = to_compvis(_tiny("ldm-f4").state_dict(), _tiny("ldm-f4"))
    for key, shape in {
        "time_embed.0.weight": (32, 8),
        "input_blocks.0.0.weight": (8, 3, 3, 3),
        "input_blocks.2.0.op.weight": (8, 8, 3, 3),
        "input_blocks.3.0.in_layers.2.weight": (16, 8, 3, 3),
        "input_blocks.3.0.skip_connection.weight": (16, 8, 1, 1),
        "input_blocks.3.1.qkv.weight": (48, 16, 1),
        "middle_block.1.proj_out.weight": (16, 16, 1),
        "output_blocks.1.2.conv.weight": (16, 16, 3, 3),
        "output_blocks.7.0.out_layers.3.weight": (8, 8, 3, 3),
        "out.2.weight": (3, 8, 3, 3),
    }.items():
        assert tuple(compvis[key].shape) == shape, key
    church = to_compvis(_tiny("ldm-kl8").state_dict(), _tiny("ldm-kl8"))
    # input_blocks 1: level 0 (ResBlock + attention), 2: its down-sampling ResBlock (scale-shift: 2 × 8 outputs)
    assert tuple(church["input_blocks.2.0.emb_layers.1.weight"].shape) == (16, 32)
    assert "input_blocks.2.0.op.weight" not in church and "input_blocks.1.1.qkv.weight" in church
    assert "output_blocks.1.1.in_layers.0.weight" in church  # level 4 has no attention: its up ResBlock is .1


def test_the_fused_qkv_is_split_per_head_in_legacy_order():
    ours = _tiny("ldm-kl8")  # 2 heads of 4 channels in the first attention (8 channels)
    name = "down_blocks.0.attentions.0"
    compvis = to_compvis(ours.state_dict(), ours)
    qkv = compvis["input_blocks.1.1.qkv.weight"][..., 0]  # (24, 8)
    state = ours.state_dict()
    for head in range(2):
        rows = qkv[head * 12 : (head + 1) * 12]  # head h: its q, k, v in turn (QKVAttentionLegacy)
        for j, part in enumerate(("to_q", "to_k", "to_v")):
            torch.testing.assert_close(
                rows[j * 4 : (j + 1) * 4], state[f"{name}.{part}.weight"][head * 4 : (head + 1) * 4]
            )


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_first_stage_round_trip_and_shape_inference(kind):
    vae = _vae(kind)
    compvis = vae_to_compvis(vae.state_dict(), vae)
    assert "encoder.down.0.block.0.nin_shortcut.weight" not in compvis  # 32 → 32 channels: no shortcut
    assert tuple(compvis["decoder.mid.attn_1.q.weight"].shape) == (64, 64, 1, 1)
    assert (
        "decoder.up.1.block.0.conv1.weight" in compvis and "encoder.down.0.downsample.conv.weight" in compvis
    )
    fresh = first_stage(compvis, scaling_factor=0.5)
    assert type(fresh) is type(vae) and fresh.config.scaling_factor == 0.5
    fresh.load_state_dict(vae_from_compvis(compvis, fresh))
    for name, tensor in vae.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name


def _checkpoint(tmp_path, preset="ldm-f4", kind="vq", betas_end=0.0195, **extra):
    unet, vae = _tiny(preset), _vae(kind)
    state = {f"model.diffusion_model.{k}": v for k, v in to_compvis(unet.state_dict(), unet).items()}
    state |= {f"first_stage_model.{k}": v for k, v in vae_to_compvis(vae.state_dict(), vae).items()}
    state["betas"] = torch.linspace(0.0015**0.5, betas_end**0.5, 1000, dtype=torch.float64).float() ** 2
    state |= extra
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, "global_step": 7, "epoch": 1}, path)  # a Lightning checkpoint's shape
    return path, unet, vae


def test_convert_writes_a_pipeline_that_loads_as_a_teacher(tmp_path, assert_same_model, unet_inputs):
    path, unet, vae = _checkpoint(tmp_path, scale_factor=torch.tensor(1.0))
    record = convert_checkpoint(path, "ldm-f4", tmp_path / "out", overrides={**TINY["ldm-f4"], **SMALL})
    assert record["vae"] == {"kind": "vq", "scaling_factor": 1.0} and record["schedule"].startswith(
        "scaled_linear"
    )
    assert json.loads((tmp_path / "out" / "convert.json").read_text())["preset"] == "ldm-f4"
    pipe = load_pipeline(tmp_path / "out")
    assert_same_model(unet, pipe.unet, unet_inputs(unet))
    assert all(torch.equal(pipe.vae.state_dict()[k], v) for k, v in vae.state_dict().items())
    assert_same_model(unet, load_teacher(tmp_path / "out"))
    images = pipe(batch_size=1, num_inference_steps=2, sampler="ddim", output_type="pt").images
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()  # 16² latents, a 2-level (f2) VAE


def test_church_schedule_ema_and_kl_scale_come_from_the_checkpoint(tmp_path):
    unet = _tiny("ldm-kl8", seed=1)
    ema = _tiny("ldm-kl8", seed=2)
    path, _, _ = _checkpoint(tmp_path, "ldm-kl8", "kl", betas_end=0.0155, scale_factor=torch.tensor(0.2277))
    state = torch.load(path, weights_only=True)["state_dict"]
    state |= {f"model.diffusion_model.{k}": v for k, v in to_compvis(unet.state_dict(), unet).items()}
    state |= {"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(5)}
    state |= {
        "model_ema." + f"diffusion_model.{k}".replace(".", ""): v
        for k, v in to_compvis(ema.state_dict(), ema).items()
    }
    torch.save({"state_dict": state}, path)
    overrides = {**TINY["ldm-kl8"], **SMALL}
    record = convert_checkpoint(path, "ldm-kl8", tmp_path / "ema", ema=True, overrides=overrides)
    pipe = load_pipeline(tmp_path / "ema")
    assert pipe.scheduler.config.beta_end == pytest.approx(0.0155) and record["vae"]["kind"] == "kl"
    assert pipe.vae.config.scaling_factor == pytest.approx(0.2277)
    converted = pipe.unet.state_dict()
    assert all(torch.equal(converted[k], v) for k, v in ema.state_dict().items())
    convert_checkpoint(path, "ldm-kl8", tmp_path / "raw", overrides=overrides, vae=False)
    raw = load_pipeline(tmp_path / "raw")
    assert raw.vae is None and all(
        torch.equal(raw.unet.state_dict()[k], v) for k, v in unet.state_dict().items()
    )


def test_a_non_linear_schedule_keeps_its_betas():
    betas = torch.linspace(1e-4, 2e-2, 1000) ** 1.5
    scheduler, how = scheduler_from({"betas": betas})
    assert how == "the checkpoint's β values"
    torch.testing.assert_close(scheduler.betas.float(), betas)


class Payload:
    """Anything but tensors: torch.load(weights_only=True) must refuse to rebuild it."""


def test_checkpoints_with_code_objects_are_refused_without_running_them(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": Payload(), "args": argparse.Namespace(a=1)}, path)
    with pytest.raises(
        ModelError, match="holds Python objects other than tensors, which slimdiff never unpickles"
    ):
        read_checkpoint(path)


def test_wrong_preset_and_unsuitable_presets_are_one_clear_error(tmp_path):
    path, _, _ = _checkpoint(tmp_path)
    with pytest.raises(ModelError, match="does not have this preset's layout: .* tensors missing"):
        convert_checkpoint(path, "ldm-kl8", tmp_path / "x", overrides={**TINY["ldm-kl8"], **SMALL})
    with pytest.raises(ModelError, match="does not fit preset ldm-f4: size mismatch"):
        convert_checkpoint(
            path,
            "ldm-f4",
            tmp_path / "x",
            overrides={**SMALL, "block_out_channels": (16, 32, 32, 32), "attention_head_dim": 8},
        )
    with pytest.raises(ConfigError, match="sd-f4 has no CompVis counterpart"):
        convert_checkpoint(path, "sd-f4", tmp_path / "x")
    with pytest.raises(ModelError, match="no EMA weights"):
        convert_checkpoint(path, "ldm-f4", tmp_path / "x", ema=True, overrides={**TINY["ldm-f4"], **SMALL})
    assert not (tmp_path / "x").exists()


def test_cli_convert(tmp_path, monkeypatch):
    path, unet, _ = _checkpoint(tmp_path)
    tiny = Preset("tiny-ldm-f4", "test", {**PRESETS["ldm-f4"].config, **TINY["ldm-f4"], **SMALL})
    monkeypatch.setitem(PRESETS, "tiny-ldm-f4", tiny)
    out = tmp_path / "converted"
    result = runner.invoke(app, ["convert", str(path), "--preset", "tiny-ldm-f4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "tiny-ldm-f4 UNet" in result.output and "vq autoencoder" in result.output
    converted = load_pipeline(out).unet.state_dict()
    assert all(torch.equal(converted[k], v) for k, v in unet.state_dict().items())
    again = runner.invoke(app, ["convert", str(path), "--preset", "tiny-ldm-f4", "--out", str(out)])
    assert again.exit_code == 2 and "is not empty" in again.output
    missing = runner.invoke(
        app, ["convert", str(tmp_path / "nope.ckpt"), "--preset", "ldm-f4", "--out", str(tmp_path / "n")]
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output and "Traceback" not in missing.output


def _random_bytes(path):
    path.write_bytes(bytes(range(256)) * 8)


def _pickle_named_safetensors(path):
    torch.save({"state_dict": {"x": torch.zeros(2)}, "args": argparse.Namespace(a=1)}, path)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("random.ckpt", _random_bytes, "neither a torch checkpoint nor a safetensors file"),
        ("random.safetensors", _random_bytes, "neither a torch checkpoint nor a safetensors file"),
        ("empty.ckpt", lambda p: p.write_bytes(b""), "is empty"),
        ("folder.ckpt", lambda p: p.mkdir(), "is a folder"),
        ("pickle.safetensors", _pickle_named_safetensors, "holds Python objects other than tensors"),
        ("truncated.ckpt", lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "cannot read checkpoint"),
    ],
)
def test_unreadable_checkpoints_are_one_line_naming_what_was_expected(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    result = runner.invoke(app, ["convert", str(path), "--preset", "ldm-f4", "--out", str(tmp_path / "out")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert message in lines[0] and "Traceback" not in result.output
    assert "expected" in lines[0] or "state_dict" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_torch_checkpoint_named_safetensors_is_read_by_its_content(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"state_dict": {"w": torch.arange(3.0)}}, path)
    assert torch.equal(read_checkpoint(path)["w"], torch.arange(3.0))
