"""ONNX graph inputs as diffusers users meet them: any height and width the UNet accepts, the timestep types and
shapes diffusers passes, an fp16 graph, and `diffusers.OnnxRuntimeModel` loading the exported graph."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import OnnxRuntimeModel
from diffusers.pipelines.onnx_utils import ORT_TO_NP_TYPE

from slimdiff.deploy.onnx_unet import (
    FP16_TOLERANCE,
    ONNX_FILE,
    OnnxUNet,
    UNetStep,
    export_onnx,
    graph_inputs,
    relative_error,
)
from slimdiff.sampling.pipeline import SlimDiffusionPipeline


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, tiny_unet):
    """A tiny slim UNet (three levels: sizes are multiples of 4) exported as float32 and float16 graphs, each in a
    folder with its config, the layout of an export's unet/."""
    unet = tiny_unet(widths=(8, 16, 16))
    root = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name, fp16 in (("fp32", False), ("fp16", True)):
        unet.save_config(root / name)
        paths[name] = export_onnx(unet, root / name / ONNX_FILE, fp16=fp16)
    assert unet.dtype == torch.float32  # the fp16 export works on a copy
    return unet, paths


def test_height_and_width_are_dynamic(graphs):
    unet, paths = graphs
    onnx_unet = OnnxUNet(paths["fp32"], unet.config)
    shapes = {i.name: i.shape for i in onnx_unet.session.get_inputs()}
    assert shapes["sample"][0] == "batch" and all(isinstance(d, str) for d in shapes["sample"][2:])
    for hw in ((8, 8), (16, 12), (4, 20)):
        assert relative_error(unet, onnx_unet, batch=3, hw=hw) <= 1e-4


@pytest.mark.parametrize(
    "timestep",
    [
        torch.tensor([500, 500, 500]),  # int64, one per sample (DDPM / DDIM timesteps)
        torch.tensor(500),  # a 0-d tensor
        500,  # a Python int
        torch.tensor([500.0]),  # one for the whole batch
    ],
    ids=["int64", "scalar-tensor", "python-int", "one-for-all"],
)
def test_the_onnx_unet_takes_every_timestep_form(graphs, timestep):
    unet, paths = graphs
    onnx_unet = OnnxUNet(paths["fp32"], unet.config)
    sample = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = onnx_unet(sample, torch.full((3,), 500.0))
    torch.testing.assert_close(onnx_unet(sample, timestep), expected)


def test_diffusers_onnx_runtime_model_loads_and_runs_the_graph(graphs):
    """As diffusers' ONNX pipelines call a UNet: the timestep dtype read from the session, one timestep of shape (1,)
    for a batch of two. (diffusers 0.42's OnnxRuntimeModel.from_pretrained needs the provider_options keyword.)"""
    unet, paths = graphs
    model = OnnxRuntimeModel.from_pretrained(paths["fp32"].parent, provider_options={})
    inputs = {i.name: i for i in model.model.get_inputs()}
    timestep_dtype = ORT_TO_NP_TYPE[inputs["timestep"].type]
    sample = graph_inputs(unet.config, batch=2)["sample"]
    out = model(sample=sample.numpy(), timestep=np.array([321], dtype=timestep_dtype))[0]
    with torch.no_grad():
        expected = UNetStep(unet)(sample, torch.tensor([321.0, 321.0]))
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-4 * float(expected.abs().max()), rtol=0)


def test_fp16_graph(graphs, tiny_pipeline):
    unet, paths = graphs
    onnx_unet = OnnxUNet(paths["fp16"], unet.config)
    types = {i.name: i.type for i in onnx_unet.session.get_inputs()}
    # the time embedding is computed in float32, as diffusers does for half-precision models
    assert types == {"sample": "tensor(float16)", "timestep": "tensor(float)"}
    assert onnx_unet.session.get_outputs()[0].type == "tensor(float16)"
    assert relative_error(unet, onnx_unet, batch=3, hw=(12, 16)) <= FP16_TOLERANCE
    # and it drives the pipeline (which samples in float32) to the PyTorch images
    torch_pipe, onnx_pipe = (
        tiny_pipeline(unet),
        SlimDiffusionPipeline(unet=onnx_unet, scheduler=tiny_pipeline().scheduler),
    )
    onnx_pipe.set_progress_bar_config(disable=True)
    images = [
        p(
            num_inference_steps=4,
            sampler="ddim",
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
        ).images
        for p in (torch_pipe, onnx_pipe)
    ]
    torch.testing.assert_close(images[1], images[0], atol=2e-2, rtol=0)


def test_export_and_sample_an_fp16_graph_from_the_command_line(tmp_path, tiny_pipeline):
    from typer.testing import CliRunner

    from slimdiff.cli import app

    runner = CliRunner()
    tiny_pipeline().save_pretrained(tmp_path / "model")
    refused = runner.invoke(
        app, ["export", str(tmp_path / "model"), "--to", "diffusers", "--fp16", "--out", "x"]
    )
    assert refused.exit_code == 2 and "--fp16: only with --to onnx" in refused.output
    out = tmp_path / "onnx"
    result = runner.invoke(
        app, ["export", str(tmp_path / "model"), "--to", "onnx", "--fp16", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "export.json").read_text())
    assert (
        record["unet_precision"] == "fp16"
        and record["relative_error"] <= record["tolerance"] == FP16_TOLERANCE
    )
    sampled = runner.invoke(
        app, ["sample", str(out), "--onnx", "-n", "2", "--steps", "2", "--out", str(tmp_path / "s")]
    )
    assert sampled.exit_code == 0, sampled.output
    assert len(list((tmp_path / "s").glob("0*.png"))) == 2
