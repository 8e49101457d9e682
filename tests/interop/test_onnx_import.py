"""from_onnx: the onnx package's own node tests, and models exported by torch.onnx.export
checked against onnxruntime and PyTorch's Jacobian."""
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fwdderiv as fd
from fwdderiv.interop.onnx_import import OnnxImportError

from .onnx_cases import OPERATORS, collect, single_input
from .test_torch_import import ShortcutA, assert_same_jacobian, dyadic, kink_input

#: Node-test cases fwdderiv refuses, by name pattern, with the reason. A listed case must
#: raise OnnxImportError or match the reference output (so a layer that lands later, such as
#: LeakyReLU, turns a refusal into a checked pass); every other case must match.
REFUSED = {
    r"_expanded": "function-expanded forms use ReduceMax/CastLike/Exp..., outside the operator list",
    r"int8|int16|int32|int64|uint|_bool": "integer inputs: fwdderiv differentiates floats",
    r"training|_mask": "training-mode dropout and batch norm, or a used dropout mask",
    r"axis_0|axis0|negative_axis_3|axis_negative_3|allowzero_reordered|reordered_all_dims|"
    r"reshape_reduced_dims|reshape_one_dim|reshape_negative_dim|negative_extended": "the case "
    "has no batch axis and reshapes, concatenates or normalises across axis 0, which "
    "fwdderiv treats as the batch",
    r"^test_(identity|dropout_default|dropout_default_ratio)$": "the model returns its input "
    "unchanged (no layer to import)",
    r"^test_flatten_|^test_reshape_": "the node tests fix the size of axis 0 or flatten "
    "across it; fwdderiv keeps axis 0 as the batch axis",
    r"_1d|_3d|1d_|3d_|_4d|bcast": "only 2-d convolution and pooling, and 2-d matrix products",
    r"with_argmax": "uses MaxPool's Indices output",
    r"transposeA|all_attributes|matrix_bias": "Gemm with transA=1 or a per-example bias matrix",
    r"^test_(add|sub|mul|div)(_|$)": "arithmetic with a broadcast constant tensor (only "
    "scalars, and biases after Gemm/MatMul/Conv)",
    r"^test_concat": "the node tests concatenate with other graph inputs (constants here)",
    r"^test_slice($|_default|_negative_axes)|neg_steps": "slices the batch axis or has "
    "negative steps",
    r"^test_(sigmoid|tanh|relu)_example|^test_gemm_default_(zero|vector)_bias$": "",
    r"leakyrelu|gelu|softmax_axis_1|logsoftmax_axis_1": "needs LeakyReLU, GELU or "
    "Softmax(dim) (branch `layers`)",
    r"autopad|same_upper|same_lower|asymmetric|precomputed_pads|_pads$|ceil|dilations|"
    r"count_include_pad|last_window": "asymmetric/auto padding, ceil_mode, dilation or "
    "count_include_pad=0 of pooling (the last three need branch `layers`)",
    r"wrap_pad|edge_pad|reflect_pad": "wrap/edge/reflect padding (the last two need branch "
    "`layers`)",
    r"transpose_all_permutations|transpose_default": "transposes that move axis 0, which "
    "fwdderiv treats as the batch",
    r"identity_(opt|sequence)|dropout_(default|random)_old|uint8": "optional/sequence "
    "types, or a model that returns its input unchanged",
}


def reason(name):
    return next((why or "input without a batch axis" for pattern, why in REFUSED.items()
                 if re.search(pattern, name)), None)


@pytest.mark.parametrize("op_type", sorted(OPERATORS))
def test_onnx_node_cases(op_type):
    cases = collect(op_type)
    assert cases, f"no node cases generated for {op_type}"
    passed = []
    for case in cases:
        model, x, outs = single_input(case)
        refused = reason(case.name)
        try:
            net = fd.from_onnx(model)
            y = net.forward(x)
        except (OnnxImportError, TypeError, ValueError) as err:
            assert refused is not None and isinstance(err, (OnnxImportError, TypeError)), \
                f"{case.name}: {type(err).__name__}: {err}"
            continue
        # onnx's own tolerances for its cases (some reference outputs are printed to 4 digits)
        ok = y.shape == outs[0].shape and np.allclose(y, outs[0], rtol=case.rtol,
                                                      atol=max(case.atol, 1e-6))
        assert ok, f"{case.name}: output differs from onnx's reference"
        passed.append(case.name)
    # these operators' node cases are all in REFUSED; torch.onnx.export's models below and
    # the LeakyReLU/GELU layers of branch `layers` cover them
    assert passed or op_type in ("LeakyRelu", "Gelu", "Concat", "Add", "Sub", "Mul", "Div",
                                 "Dropout", "Identity", "Reshape", "Transpose"), f"no {op_type} case imported"


class Exported(nn.Module):
    """Conv, BN, ReLU, an option-A shortcut, max-pool, view(x.size(0), -1), linear, softmax."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.block = ShortcutA(2, nn.ReLU)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.max_pool2d(self.block(x), 2)
        return F.softmax(self.fc(x.view(x.size(0), -1)), dim=1)


@pytest.mark.parametrize("opset", [11, 17])
def test_torch_onnx_export_matches_onnxruntime_and_torch_jacobian(tmp_path, opset):
    model = dyadic(Exported(), 5).float()
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.zeros(2, 1, 8, 8),), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, opset_version=opset, dynamo=False,
                      do_constant_folding=False)
    net = fd.from_onnx(str(path))
    assert isinstance(net, fd.Graph)
    x = kink_input((3, 1, 8, 8), 6)
    session = ort.InferenceSession(str(path))
    expect = session.run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(net.forward(x.astype(np.float32)), expect, rtol=1e-5, atol=1e-6)
    assert_same_jacobian(model.double(), net, x)  # same float32 weights, float64 math


def test_errors_name_node_operator_and_attribute(tmp_path):
    node = onnx.helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transA=1)
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])],
        [onnx.numpy_helper.from_array(np.ones((3, 4), np.float32), "W")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    with pytest.raises(OnnxImportError, match=r"node 'fc' \(operator Gemm, attribute 'transA'\)"):
        fd.from_onnx(model)
    node = onnx.helper.make_node("Sin", ["x"], ["y"], name="s")
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 2])])
    with pytest.raises(OnnxImportError, match="operator Sin"):
        fd.from_onnx(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]))
