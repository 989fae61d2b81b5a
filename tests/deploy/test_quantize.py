"""int8 graphs (`slimdiff.deploy.quantize`): every setting produces a graph whose matrix products run in int8,
close to the fp32 graph, and bad input is refused with one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimdiff.deploy.onnx_unet import export_onnx, graph_inputs
from slimdiff.deploy.quantize import DEFAULT_SETTING, QUANTIZED_OPS, SETTINGS, quantize_graph
from slimdiff.errors import ConfigError, ModelError

# int8 kernels onnxruntime runs for a quantised Conv / MatMul, per graph format
INT8_KERNELS = {
    "Conv": {"QLinearConv", "ConvInteger"},
    "MatMul": {"QLinearMatMul", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"},
    "Gemm": {"QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"},
}


@pytest.fixture(scope="module")
def fp32_graph(tmp_path_factory, tiny_unet):
    torch.set_num_threads(1)
    unet = tiny_unet(widths=(8, 16))
    path = export_onnx(unet, tmp_path_factory.mktemp("int8") / "unet.onnx")
    feeds = [{k: v.numpy() for k, v in graph_inputs(unet.config, 1, s).items()} for s in range(4)]
    return path, feeds


def _optimised(path, tmp_path):
    """The graph as onnxruntime runs it (QDQ pairs fused into QLinear* kernels)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, onnx.load(options.optimized_model_filepath)


# the default, static attention (QLinearMatMul) and dynamic quantisation: each one kind of int8 graph (the
# other settings vary types and formats of these; benchmarks.int8_profile runs them all)
@pytest.mark.parametrize("setting", [DEFAULT_SETTING, "u8s8-qdq-rr", "dynamic-matmul"])
def test_every_setting_runs_its_products_in_int8_close_to_fp32(setting, fp32_graph, tmp_path):
    import onnx
    import onnxruntime as ort

    path, feeds = fp32_graph
    record = quantize_graph(path, tmp_path / "unet.int8.onnx", feeds, setting)
    assert record["setting"] == setting and record["mode"] == SETTINGS[setting]["mode"]
    session, optimised = _optimised(tmp_path / "unet.int8.onnx", tmp_path)
    ops = {node.op_type for node in optimised.graph.node}
    fp32_ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    for op in SETTINGS[setting].get("ops", QUANTIZED_OPS):
        if op in fp32_ops:  # each chosen op type the graph has runs in int8 kernels
            assert ops & INT8_KERNELS[op], (op, sorted(ops))
    assert "Conv" in fp32_ops and "MatMul" in fp32_ops  # the UNet's convolutions and attention
    # outputs close to fp32: relative L2 error ≤ 15% on this tiny random UNet (8 channels, 4 groups: every
    # rounding weighs more than in a real one); a wrong scale, a dropped bias or an unfused pair is off by ≥ 50%
    fp32 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for feed in feeds:
        reference = fp32.run(None, feed)[0]
        got = session.run(None, feed)[0]
        error = np.linalg.norm(got - reference) / np.linalg.norm(reference)
        assert 0 < error <= 0.15


def test_default_setting_leaves_normalisation_and_softmax_in_fp32(fp32_graph, tmp_path):
    """The default quantises only the matrix products: GroupNorm, SiLU and Softmax stay fp32 (int8
    versions of them cost more Q/DQ than they save, and their ranges are where int8 loses most)."""
    import onnx

    path, feeds = fp32_graph
    quantize_graph(path, tmp_path / "unet.int8.onnx", feeds)
    graph = onnx.load(str(tmp_path / "unet.int8.onnx")).graph
    assert not {n.op_type for n in graph.node} & {"QLinearSoftmax", "QLinearSigmoid", "QGroupNorm"}


def test_bad_inputs_are_one_clear_line(fp32_graph, tmp_path):
    path, feeds = fp32_graph
    with pytest.raises(ConfigError, match="unknown int8 setting 'int4'; choose one of") as error:
        quantize_graph(path, tmp_path / "x.onnx", feeds, "int4")
    assert "\n" not in str(error.value)
    with pytest.raises(ModelError, match="no ONNX graph at .*missing.onnx") as error:
        quantize_graph(tmp_path / "missing.onnx", tmp_path / "x.onnx", feeds, DEFAULT_SETTING)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "x.onnx").exists()
