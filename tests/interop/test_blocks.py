"""Blocks of public vision models, written as their authors write them, through both
import routes: squeeze-and-excitation (a broadcasting product), hard-sigmoid and
hard-swish as MobileNetV3 writes them (adding and dividing by numbers), and ShuffleNet's
channel shuffle (a transpose of activations). Each Jacobian, forward and reverse, equals
PyTorch's own in float64."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fwdderiv as fd
from tests.interop.architectures import HardSigmoid as HSigmoid, HardSwish as HSwish, LayerNorm2d
from tests.routes import imported, torch_jacobian


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduction=2):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)
        self.gate = HSigmoid()

    def forward(self, x):
        n, c = x.shape[:2]
        y = F.adaptive_avg_pool2d(x, 1).view(n, c)
        y = self.gate(self.fc2(F.relu(self.fc1(y)))).view(n, c, 1, 1)
        return x * y


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


class Block(nn.Module):
    """Conv, hard-swish, squeeze-and-excitation, channel shuffle, 3 - x, a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = HSwish()
        self.se = SqueezeExcite(8)
        self.head = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        x = self.se(self.act(self.conv(x)))
        x = 3 - channel_shuffle(x, 2) * 0.5
        return self.head(torch.flatten(x.permute(0, 2, 3, 1), 1))


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    model = Block().double().eval()
    x = np.random.default_rng(0).normal(size=(3, 3, 6, 6))
    return model, x, torch_jacobian(model, x)


@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_the_block_equals_pytorchs_jacobian(block, route, tmp_path):
    model, x, J = block
    net = imported(model, x, route, tmp_path)
    if route == "torch":
        assert {"Mul", "Shift", "Permute"} <= {type(layer).__name__ for _, layer, _ in net.nodes}
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=1e-10, atol=1e-12)


def test_a_product_that_does_not_broadcast_is_refused_with_both_shapes():
    with pytest.raises(ValueError, match=r"\(N, 3, 4\), \(N, 2, 1\)"):
        fd.Mul().output_shape((3, 4), (2, 1))


def test_permute_refuses_moving_the_batch_axis():
    with pytest.raises(ValueError, match="batch axis 0 first"):
        fd.Permute([1, 0, 2])


def test_the_default_memory_budget_never_refuses_a_call(monkeypatch):
    """A documented call must not fail on its own default (GoogLeNet in reverse mode
    needed 301 MB for one direction against the 256 MiB default): the default budget
    grows to one direction of one example; a budget the user gives is still enforced."""
    net = fd.Sequential([fd.Conv2d(1, 4, 3, padding=1), fd.ReLU(), fd.Flatten(),
                         fd.Linear(4 * 8 * 8, 3)])
    x = np.random.default_rng(1).normal(size=(2, 1, 8, 8))
    monkeypatch.setattr("fwdderiv.core.jacobian.DEFAULT_MAX_MEMORY", 64)
    with pytest.warns(UserWarning, match="more than the default max_memory"):
        J = net.jacobian(x, mode="reverse")
    np.testing.assert_allclose(J, net.jacobian(x, mode="forward", max_memory=1 << 24),
                               rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="max_memory=64 bytes is too small"):
        net.jacobian(x, mode="reverse", max_memory=64)


class Upsampling(nn.Module):
    """U-Net's decoder steps: nearest x2, bilinear to a size that is not a multiple, and
    bilinear x2 with aligned corners, joined by a convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x):
        x = self.up(x)
        x = F.interpolate(torch.tanh(self.conv(x)), size=(11, 7), mode="bilinear")
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_upsampling_equals_pytorchs_jacobian(route, tmp_path):
    torch.manual_seed(1)
    model = Upsampling().double().eval()
    x = np.random.default_rng(2).normal(size=(2, 2, 3, 4))
    net = imported(model, x, route, tmp_path)
    assert sum(type(layer).__name__ == "Upsample" for _, layer, _ in net.nodes) == 3
    J = torch_jacobian(model, x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=1e-10, atol=1e-12)


class SEBlock(nn.Module):
    """SENet's squeeze-and-excitation layer as its reference code writes it."""

    def __init__(self, channel, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False),
                                nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel, bias=False),
                                nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_senet_expand_as_equals_pytorchs_jacobian(route, tmp_path):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 8, 3), SEBlock(8), nn.Flatten()).double().eval()
    x = np.random.default_rng(5).normal(size=(2, 2, 5, 5))
    net = imported(model, x, route, tmp_path)
    J = torch_jacobian(model, x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=1e-10, atol=1e-12)


class Normalised(nn.Module):
    """A classifier that normalises its input inside forward, with per-channel buffers, as
    torchvision-style wrappers and many repositories do, and adds a learned position
    embedding (a constant tensor) to its feature map."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1))
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.embedding = nn.Parameter(torch.randn(4, 4, 4))
        self.scale = nn.Parameter(torch.rand(1, 4, 1, 1) + 0.5)
        self.head = nn.Linear(64, 3)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = torch.relu(self.conv(x) + self.embedding) * self.scale
        return self.head((1.0 - x).flatten(1))


@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_constant_tensors_in_forward_equal_pytorchs_jacobian(route, tmp_path):
    torch.manual_seed(6)
    model = Normalised().double().eval()
    x = np.random.default_rng(7).random((2, 3, 6, 6))
    net = imported(model, x, route, tmp_path)
    assert any(type(layer).__name__ == "Constant" for _, layer, _ in net.nodes)
    with torch.no_grad():
        np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).numpy(), rtol=1e-12,
                                   atol=1e-12)
    J = torch_jacobian(model, x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=1e-10, atol=1e-12)


def test_a_product_of_values_of_different_ranks_has_the_finite_difference_jacobian():
    """(4, 5) times (5,): the second operand's tangents and cotangents take the broadcast
    and the sum over the axis it lacks."""
    net = fd.Graph([("a", fd.Tanh(), "input"),
                    ("row", fd.Slice([0], [1], [1]), "input"),
                    ("b", fd.Reshape([5]), "row"),
                    ("s", fd.Sigmoid(), "b"),
                    ("m", fd.Mul(), ["a", "s"]),
                    ("out", fd.Tanh(), "m")])
    x = np.random.default_rng(8).normal(size=(3, 4, 5))
    reference = fd.numeric.jacobian_fd(net, x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), reference, rtol=1e-6,
                                   atol=1e-8)


@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_convnext_layer_norm_equals_pytorchs_jacobian(route, tmp_path):
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), LayerNorm2d(4), nn.GELU(approximate="tanh"),
                          nn.Flatten()).double().eval()
    x = np.random.default_rng(10).normal(size=(2, 2, 5, 5))
    net = imported(model, x, route, tmp_path)
    J = torch_jacobian(model, x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=1e-9, atol=1e-11)
