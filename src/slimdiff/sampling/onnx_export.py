"""ONNX export of one UNet step, and an onnxruntime stand-in for the UNet inside `SlimDiffusionPipeline`.

The graph takes (sample, timestep[, class_labels | encoder_hidden_states]) with a dynamic batch axis and
returns the model output (ε̂). It is exported with torch's `torch.export`-based exporter (`dynamo=True`);
the wavelet gates are plain tensor ops, so nothing needs a custom symbolic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimdiff.models.inputs import condition_input, example_inputs

ONNX_FILE = "model.onnx"


class UNetStep(nn.Module):
    """A UNet call with positional inputs and a plain tensor output, the form the exporter traces."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.condition = condition_input(unet.config)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        kwargs = {self.condition: condition} if self.condition else {}
        return self.unet(sample, timestep, **kwargs).sample


def graph_inputs(config, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Example inputs of the exported graph: the UNet's, with float timesteps (one per sample)."""
    inputs = example_inputs(config, batch, seed)
    return {**inputs, "timestep": inputs["timestep"].float()}


def export_onnx(unet: nn.Module, path: str | Path) -> Path:
    """Write one UNet step of `unet` as an ONNX graph with a dynamic batch axis to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = graph_inputs(unet.config)
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = {"sample": {0: batch}, "timestep": {0: batch}}
    if "encoder_hidden_states" in inputs:
        dynamic["encoder_hidden_states"] = {0: batch, 1: torch.export.Dim("tokens", min=1, max=1024)}
    elif "class_labels" in inputs:
        dynamic["class_labels"] = {0: batch}
    step = UNetStep(unet).eval()
    with torch.no_grad():
        program = torch.onnx.export(
            step,
            tuple(inputs.values()),
            dynamo=True,
            input_names=list(inputs),
            output_names=["output"],
            dynamic_shapes=tuple(dynamic[name] for name in inputs),
            verbose=False,
        )
    program.save(str(path))
    return path


class OnnxUNet:
    """An onnxruntime session that answers the UNet's call, `(sample, timestep, **condition) → tensor`, so the
    pipeline can run its steps without torch's UNet. `config` is the exported UNet's config."""

    def __init__(self, path: str | Path, config, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(
        self, sample: torch.Tensor, timestep: torch.Tensor, **condition: torch.Tensor
    ) -> torch.Tensor:
        timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        feeds = {"sample": sample, "timestep": timestep, **condition}
        missing = set(self.input_names) - set(feeds)
        if missing:
            raise ValueError(f"the ONNX UNet needs inputs {sorted(missing)}")
        arrays = {name: np.ascontiguousarray(feeds[name].detach().cpu().numpy()) for name in self.input_names}
        return torch.from_numpy(self.session.run(None, arrays)[0])


def relative_error(unet: nn.Module, onnx_unet: OnnxUNet, batch: int = 3, seed: int = 1) -> float:
    """max |ONNX − PyTorch| / max |PyTorch| of one UNet step on random inputs (a batch size other than the
    exported example's, to exercise the dynamic axis)."""
    inputs = graph_inputs(unet.config, batch, seed)
    with torch.no_grad():
        reference = UNetStep(unet).eval()(*inputs.values())
    sample, timestep, *condition = inputs.values()
    kwargs = {onnx_unet.input_names[2]: condition[0]} if condition else {}
    got = onnx_unet(sample, timestep, **kwargs)
    return float((got - reference).abs().max() / reference.abs().max())
