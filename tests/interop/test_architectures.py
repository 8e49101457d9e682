"""Well-known vision architectures (``tests/interop/architectures.py``: our own small
versions written from the papers) through both import routes, ``from_torch`` and the
ONNX export read by ``from_onnx``: the output equals the model's, and the forward- and
reverse-mode Jacobians equal ``torch.vmap(torch.func.jacrev(f))`` to 1e-9 of the largest
entry, in float64 (two examples through ``from_torch``, the first through ``from_onnx``).

ONNX stores float attributes in float32 (``epsilon`` 1e-5 becomes 9.99999975e-06);
``from_onnx`` reads them back as the decimal the exporter was given, so both routes agree
with PyTorch to about 1e-15."""
import functools

import numpy as np
import pytest
import torch

from tests.interop.architectures import ARCHITECTURES
from tests.routes import imported, torch_jacobian

BATCH = 2
RTOL = 1e-9

#: Layers each architecture's feature must become through ``from_torch`` (a guard that
#: the small versions still exercise what the issue names).
FEATURES = {
    "resnet18": {"Conv2d", "BatchNorm2d", "Add"},
    "mobilenetv2": {"ReLU6", "Add"},
    "mobilenetv3": {"Mul", "Shift", "Scale", "ReLU6"},          # SE gate, hard-swish
    "efficientnet_b0": {"SiLU", "Sigmoid", "Mul"},
    "shufflenetv2": {"Slice", "Concat", "Permute"},             # chunk, channel shuffle
    "densenet": {"Concat", "AvgPool2d"},
    "googlenet": {"Concat", "MaxPool2d"},
    "unet": {"Upsample", "Concat"},
    "fsrcnn": {"PReLU", "ConvTranspose2d"},
    "vit": {"Permute", "Concat", "MatMul", "Softmax", "GELU", "LayerNorm"},
    "vit_sdpa": {"MatMul", "Softmax"},
    "mlp_mixer": {"Permute", "Linear", "GELU"},
    "convnext": {"Mean", "Pow", "LayerNorm", "Permute", "Mul"},
    "swin": {"Roll", "MatMul", "Softmax", "Constant", "Concat"},
    "botnet": {"MatMul", "Gather", "Softmax"},
}


@functools.lru_cache(maxsize=None)
def case(name):
    """(model in float64, input batch, its output, PyTorch's Jacobian)."""
    build, in_shape = ARCHITECTURES[name]
    model = build().double()
    x = np.random.default_rng(0).normal(size=(BATCH,) + in_shape)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    return model, x, y, torch_jacobian(model, x)


def relative_error(J, reference):
    return float(np.abs(J - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("route", ["torch", "onnx"])
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_architecture_equals_pytorchs_jacobian(name, route, tmp_path):
    model, x, y, J = case(name)
    net = imported(model, x, route, tmp_path)
    if route == "torch":
        assert FEATURES[name] <= {type(layer).__name__ for _, layer, _ in net.nodes}
    else:       # the export has a symbolic batch; one example keeps the file fast
        x, y, J = x[:1], y[:1], J[:1]
    np.testing.assert_allclose(net(x), y, rtol=1e-10, atol=1e-10 * np.abs(y).max())
    for mode in ("forward", "reverse"):
        got = net.jacobian(x, mode=mode)
        assert got.shape == J.shape
        assert relative_error(got, J) <= RTOL, (name, route, mode, relative_error(got, J))


def test_every_architecture_has_a_small_input_and_its_features():
    """The registry is what the zoo benchmark runs; each model is in eval mode and its
    batch norms (if any) carry non-trivial running statistics."""
    assert set(ARCHITECTURES) == set(FEATURES)
    for name, (build, in_shape) in ARCHITECTURES.items():
        model = build()
        assert not model.training, name
        assert int(np.prod(in_shape)) <= 3 * 32 * 32, name
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert not torch.allclose(m.running_var, torch.ones_like(m.running_var)), name
