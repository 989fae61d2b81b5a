"""ONNX export of one UNet step, and an onnxruntime stand-in for the UNet inside `SlimDiffusionPipeline`.

The graph takes (sample, timestep[, class_labels | encoder_hidden_states]) and returns the model output (ε̂).
Batch, height and width are dynamic — height and width any multiple of 2^(levels − 1), the sizes the UNet itself
accepts — and the timestep is float32 of shape (batch,) or (1,) (one timestep for the whole batch, as diffusers'
ONNX pipelines pass it). An fp16 graph (`fp16=True`) takes and returns float16 samples; its timestep stays float32,
since diffusers computes the time embedding in float32 whatever the model's dtype. It is exported with torch's
`torch.export`-based exporter (`dynamo=True`); the wavelet gates are plain tensor ops, so nothing needs a custom
symbolic. `diffusers.OnnxRuntimeModel.from_pretrained(folder / "unet", provider_options={})` loads it (diffusers
0.42 needs the `provider_options` keyword there).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimdiff.models.inputs import condition_input, example_inputs

ONNX_FILE = "model.onnx"
# max |ONNX − PyTorch| / max |PyTorch| an fp16 graph is allowed against the float32 model (fp32 graphs: 1e-4)
FP16_TOLERANCE = 1e-2
MAX_SIDE = 4096


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


def export_onnx(unet: nn.Module, path: str | Path, fp16: bool = False) -> Path:
    """Write one UNet step of `unet` as an ONNX graph to `path`: dynamic batch, height and width (multiples of
    2^(levels − 1)) and token axis; `fp16` exports a float16 copy (the float32 `unet` is left as it is)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = graph_inputs(unet.config)
    factor = 2 ** (len(unet.config.block_out_channels) - 1)
    batch = torch.export.Dim("batch", min=1, max=4096)
    height = torch.export.Dim("height", min=1, max=MAX_SIDE // factor)
    width = torch.export.Dim("width", min=1, max=MAX_SIDE // factor)
    dynamic = {"sample": {0: batch, 2: factor * height, 3: factor * width}, "timestep": {0: batch}}
    if "encoder_hidden_states" in inputs:
        dynamic["encoder_hidden_states"] = {0: batch, 1: torch.export.Dim("tokens", min=1, max=1024)}
    elif "class_labels" in inputs:
        dynamic["class_labels"] = {0: batch}
    if fp16:
        unet = copy.deepcopy(unet).half()
        inputs = {k: v.half() if k != "timestep" and v.is_floating_point() else v for k, v in inputs.items()}
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
    pipeline can run its steps without torch's UNet. `config` is the exported UNet's config. Inputs are cast to the
    graph's types (any timestep: int64 or float, a scalar, one per sample or one for all); the output comes back
    as float32, the dtype the pipeline samples in (`dtype`)."""

    dtype = torch.float32

    def __init__(self, path: str | Path, config, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_types = {i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in self.session.get_inputs()}

    def __call__(
        self, sample: torch.Tensor, timestep: torch.Tensor | float | int, **condition: torch.Tensor
    ) -> torch.Tensor:
        timestep = torch.as_tensor(timestep).reshape(-1).expand(sample.shape[0])
        feeds = {"sample": sample, "timestep": timestep, **condition}
        missing = set(self.input_names) - set(feeds)
        if missing:
            raise ValueError(f"the ONNX UNet needs inputs {sorted(missing)}")
        arrays = {
            name: np.ascontiguousarray(feeds[name].detach().cpu().numpy().astype(self.input_types[name]))
            for name in self.input_names
        }
        return torch.from_numpy(self.session.run(None, arrays)[0]).float()


_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


def relative_error(
    unet: nn.Module, onnx_unet: OnnxUNet, batch: int = 3, seed: int = 1, hw: tuple[int, int] | None = None
) -> float:
    """max |ONNX − PyTorch (float32)| / max |PyTorch| of one UNet step on random inputs (a batch size other than
    the exported example's, to exercise the dynamic axis; `hw` another sample size)."""
    config = dict(unet.config) if hw is None else {**unet.config, "sample_size": list(hw)}
    inputs = graph_inputs(config, batch, seed)
    with torch.no_grad():
        reference = UNetStep(unet).eval()(*inputs.values())
    sample, timestep, *condition = inputs.values()
    kwargs = {onnx_unet.input_names[2]: condition[0]} if condition else {}
    got = onnx_unet(sample, timestep, **kwargs)
    return float((got - reference).abs().max() / reference.abs().max())
