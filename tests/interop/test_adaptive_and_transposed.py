"""AdaptiveAvgPool2d to any output size, and ConvTranspose2d with stride, padding,
output_padding, groups and dilation (per axis too), through both import routes: each
Jacobian, forward and reverse, equals torch.func's in float64.

torch.onnx (opset 17, TorchScript exporter) writes adaptive average pooling only when the
output size divides the input size (as AveragePool, or GlobalAveragePool for 1); the other
sizes go through from_torch alone."""
import numpy as np
import pytest
import torch
from torch import nn

import fwdderiv as fd
from tests.routes import imported, torch_jacobians



def check(model, shape, route, tmp_path, layer):
    model = model.double().eval()
    x = np.random.default_rng(0).standard_normal((2,) + shape)
    net = imported(model, x, route, tmp_path)
    assert any(type(v).__name__ == layer for v in net.layers), net.layers
    Jr, Jf = torch_jacobians(model, x)
    np.testing.assert_allclose(Jf, Jr, rtol=1e-12, atol=1e-14)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), Jr, rtol=1e-10, atol=1e-13,
                                   err_msg=mode)


class Pooled(nn.Module):
    def __init__(self, size, channels=2):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(size)

    def forward(self, x):
        return self.pool(torch.tanh(self.conv(x)))


#: (output_size, per-example input shape, routes): sizes that do not divide the input
#: (overlapping windows of different sizes), larger than the input, None entries.
POOLS = [(3, (2, 7, 7), ("torch",)), ((2, 3), (2, 5, 5), ("torch",)),
         ((None, 2), (2, 5, 7), ("torch",)), ((4, 5), (2, 5, 7), ("torch",)),
         ((7, 6), (2, 3, 3), ("torch",)), ((3, 2), (2, 6, 4), ("torch", "onnx")),
         (1, (2, 5, 5), ("torch", "onnx"))]


@pytest.mark.parametrize("size,shape,route",
                         [(s, sh, r) for s, sh, routes in POOLS for r in routes],
                         ids=lambda v: str(v).replace(" ", ""))
def test_adaptive_average_pooling_to_any_size(size, shape, route, tmp_path):
    divides = all(o is None or n % o == 0 for n, o in
                  zip(shape[1:], size if isinstance(size, tuple) else (size, size)))
    check(Pooled(size), shape, route, tmp_path,
          "AvgPool2d" if divides else "AdaptiveAvgPool2d")


class TokensPooled(nn.Module):
    """Tokens (L, C) turned channels-first and pooled to one, as Swin's head does with
    ``nn.AdaptiveAvgPool1d(1)``; or by the maximum. ONNX: GlobalAveragePool /
    GlobalMaxPool of a rank-3 value."""

    def __init__(self, pool):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.pool = pool

    def forward(self, x):
        return self.pool(torch.tanh(self.fc(x)).transpose(1, 2)).flatten(1)


def test_global_average_pooling_of_tokens_imports_from_onnx(tmp_path):
    check(TokensPooled(nn.AdaptiveAvgPool1d(1)), (5, 4), "onnx", tmp_path, "Mean")


@pytest.mark.parametrize("op,reduce", [("GlobalAveragePool", np.mean),
                                       ("GlobalMaxPool", np.max)])
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4, 2)])
def test_global_pools_of_other_ranks_reduce_the_spatial_axes(op, reduce, shape):
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE,
                                                             ["N", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    net = fd.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = np.random.default_rng(0).standard_normal((2,) + shape)
    axes = tuple(range(2, len(shape) + 1))
    np.testing.assert_array_equal(net(x), reduce(x, axis=axes, keepdims=True))


class Decoder(nn.Module):
    def __init__(self, **options):
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.ConvTranspose2d(4, 8, (3, 2), **options)
        self.conv = nn.Conv2d(8, 2, 2)

    def forward(self, x):
        return self.conv(torch.tanh(self.up(x)))


TRANSPOSED = [dict(stride=2, padding=1, output_padding=1, groups=2),
              dict(stride=3, padding=2, output_padding=2, dilation=2),
              dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2,
                   dilation=(1, 2)),
              dict(groups=4, dilation=3, bias=False),
              dict(stride=2, padding=(0, 2), output_padding=(0, 1), dilation=(2, 1))]


@pytest.mark.parametrize("route", ["torch", "onnx"])
@pytest.mark.parametrize("options", TRANSPOSED, ids=lambda o: "-".join(
    f"{k}{v}" for k, v in o.items()).replace(" ", ""))
def test_transposed_convolution_with_every_option(options, route, tmp_path):
    check(Decoder(**options), (4, 4, 3), route, tmp_path, "ConvTranspose2d")
