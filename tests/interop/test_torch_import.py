"""from_torch / to_torch: imported networks against PyTorch's own float64 Jacobians.

Weights are small dyadic rationals and inputs halves of small integers, so every sum is
exact in float64: ReLU inputs land exactly on the kink (0) and max-pool windows hold exact
ties, and the comparison is run there, not only off the kinks.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from torch import nn

import fwdderiv as fd
from fwdderiv.interop.torch_import import UnsupportedOperatorError

RTOL = 1e-10


def torch_jacobian(model, x, mode):
    jac = torch.func.jacfwd if mode == "forward" else torch.func.jacrev
    f = lambda v: model(v[None])[0]  # noqa: E731
    with torch.no_grad():
        return torch.func.vmap(jac(f))(torch.from_numpy(x)).detach().numpy()


def assert_same_jacobian(model, net, x):
    for mode in ("forward", "reverse"):
        expect = torch_jacobian(model, x, mode)
        got = net.jacobian(x, mode=mode)
        scale = max(1.0, np.abs(expect).max())
        np.testing.assert_allclose(got, expect, rtol=RTOL, atol=RTOL * scale, err_msg=mode)


def dyadic(model, seed):
    """Weights in {-2, ..., 2} / 4 (biases zero) so that sums are exact in float64."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.from_numpy(rng.integers(-2, 3, p.shape) / 4.0))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.from_numpy(rng.integers(-2, 3, m.num_features) / 4.))
                m.running_var.copy_(torch.from_numpy(rng.integers(1, 4, m.num_features) / 1.))
                m.weight.copy_(torch.from_numpy(rng.integers(1, 3, m.num_features) / 2.))
    return model.double().eval()


def kink_input(shape, seed):
    return np.random.default_rng(seed).integers(-2, 3, shape) / 2.0


# --- random models ----------------------------------------------------------------------
ACTIVATIONS = [nn.ReLU, nn.Sigmoid, nn.Tanh] + [
    getattr(nn, n) for n in ("LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "Hardtanh",
                             "ReLU6", "Mish", "Hardswish") if hasattr(fd, n)]


class ShortcutA(nn.Module):
    """He et al. (2016) option A: stride-2 subsampling and zero channels."""

    def __init__(self, c, act):
        super().__init__()
        self.conv = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * c)
        self.act, self.c = act(), c

    def forward(self, x):
        out = self.bn(self.conv(x))
        out += F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.c // 2, self.c - self.c // 2))
        return self.act(out)


class ShortcutB(nn.Module):
    """Option B: a 1x1 stride-2 convolution and batch norm on the shortcut."""

    def __init__(self, c, act):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * c), act(),
                                  nn.Conv2d(2 * c, 2 * c, 3, padding=1, bias=False))
        self.short = nn.Sequential(nn.Conv2d(c, 2 * c, 1, stride=2, bias=False),
                                   nn.BatchNorm2d(2 * c))
        self.act = act()

    def forward(self, x):
        return self.act(self.body(x) + self.short(x))


class Branches(nn.Module):
    """Two convolutions concatenated along channels."""

    def __init__(self, c, act):
        super().__init__()
        self.a, self.b, self.act = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 3, padding=1), act()

    def forward(self, x):
        return self.act(torch.cat([self.a(x), self.b(x)], dim=1))


class Random(nn.Module):
    def __init__(self, body, head, out):
        super().__init__()
        self.body, self.head, self.out = body, head, out

    def forward(self, x):
        x = self.body(x)
        x = self.head(x.view(x.size(0), -1))
        if self.out == "softmax":
            return F.softmax(x, dim=1)
        if self.out == "log_softmax":
            return F.log_softmax(x, dim=1)
        return x


@st.composite
def models(draw):
    c = 2
    act = draw(st.sampled_from(ACTIVATIONS))
    groups = draw(st.sampled_from([1, 2]))
    layers = [nn.Conv2d(2, 2 * c, 3, stride=draw(st.sampled_from([1, 2])),
                        padding=draw(st.integers(0, 2)), dilation=draw(st.sampled_from([1, 2])),
                        groups=groups)]
    if draw(st.booleans()):
        layers.append(nn.BatchNorm2d(2 * c))
    layers.append(act())
    c *= 2
    block = draw(st.sampled_from(["A", "B", "cat", "none"]))
    if block == "A":
        layers.append(ShortcutA(c, act)); c *= 2
    elif block == "B":
        layers.append(ShortcutB(c, act)); c *= 2
    elif block == "cat":
        layers.append(Branches(c, act)); c *= 2
    pool = draw(st.sampled_from(["max", "avg", "none"]))
    if pool == "max":
        layers.append(nn.MaxPool2d(2, stride=draw(st.sampled_from([1, 2])),
                                   padding=draw(st.integers(0, 1))))
    elif pool == "avg":
        layers.append(nn.AvgPool2d(2, padding=draw(st.integers(0, 1))))
    body = nn.Sequential(*layers)
    h = draw(st.integers(7, 9))
    try:
        with torch.no_grad():
            size = body.eval()(torch.zeros(1, 2, h, h)).numel()
    except RuntimeError:            # strides and dilations leave no pixel for the pool
        reject()
    head = nn.Sequential(nn.Linear(size, 5), act(), nn.Dropout(0.5), nn.Linear(5, 3))
    out = draw(st.sampled_from(["softmax", "log_softmax", "logits"]))
    return Random(body, head, out), h


@settings(max_examples=5, deadline=None)
@given(models(), st.integers(0, 2 ** 16))
def test_random_models_match_torch_jacobians_on_kinks(spec, seed):
    model, h = spec
    model = dyadic(model, seed)
    net = fd.from_torch(model, torch.zeros(2, 2, h, h, dtype=torch.float64))
    x = kink_input((3, 2, h, h), seed)  # a batch size other than the example's
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x), model(torch.from_numpy(x)).numpy(),
                                   rtol=1e-12, atol=1e-12)
    assert_same_jacobian(model, net, x)


# --- the seed question's model -------------------------------------------------------------
class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.softmax(self.fc3(x), dim=1)


def test_lenet5_functional_forward_imports_as_a_chain():
    torch.manual_seed(0)
    model = LeNet5().double().eval()
    net = fd.from_torch(model, torch.zeros(1, 1, 32, 32, dtype=torch.float64))
    assert isinstance(net, fd.Sequential)
    x = np.random.default_rng(1).standard_normal((2, 1, 32, 32))
    assert_same_jacobian(model, net, x)
    # weights copied exactly, in PyTorch's layout
    np.testing.assert_array_equal(net.layers[0].weight, model.conv1.weight.detach().numpy())


class ResNetTail(nn.Module):
    """Nested Sequential, ``+=`` residual, F.avg_pool2d(out, out.size()[3])."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.block = nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
                                   nn.Conv2d(4, 4, 3, padding=1))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        out = self.stem(x)
        res = self.block(out)
        res += out
        out = F.avg_pool2d(res, res.size()[3])
        return self.fc(torch.flatten(out, 1))


def test_residual_model_is_a_graph_and_round_trips_through_to_torch():
    torch.manual_seed(0)
    model = dyadic(ResNetTail(), 3)
    net = fd.from_torch(model, torch.zeros(4, 1, 6, 6, dtype=torch.float64))
    assert isinstance(net, fd.Graph) and not isinstance(net, fd.Sequential)
    x = kink_input((2, 1, 6, 6), 4)
    assert_same_jacobian(model, net, x)
    back = fd.to_torch(net)
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(x)).numpy(), net.forward(x),
                                   rtol=1e-12, atol=1e-12)
    again = fd.from_torch(back, torch.zeros(2, 1, 6, 6, dtype=torch.float64))
    assert [type(layer) for layer in again.layers] == [type(layer) for layer in net.layers]
    np.testing.assert_array_equal(again.jacobian(x), net.jacobian(x))


def test_to_torch_of_a_native_sequential():
    net = fd.Sequential([fd.Conv2d(1, 2, 3, stride=2, padding=1), fd.ReLU(),
                         fd.MaxPool2d(2), fd.Flatten(), fd.Linear(8, 3), fd.LogSoftmax()])
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    module = fd.to_torch(net)
    assert isinstance(module, nn.Sequential)
    with torch.no_grad():
        np.testing.assert_allclose(module.double()(torch.from_numpy(x)).numpy(),
                                   net.forward(x), rtol=1e-6, atol=1e-6)


# --- errors ----------------------------------------------------------------------------------
class Sine(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return torch.sin(self.fc(x))  # the unsupported line


def test_unsupported_operator_names_operator_module_and_line():
    with pytest.raises(UnsupportedOperatorError) as err:
        fd.from_torch(Sine().eval(), torch.zeros(2, 3))
    text = str(err.value)
    assert "sin" in text and "test_torch_import.py" in text and "unsupported line" in text


class FixedBatch(nn.Module):
    def forward(self, x):
        return x.view(4, -1)


def test_a_fixed_batch_size_is_refused_with_a_fix():
    with pytest.raises(ValueError, match=r"x\.size\(0\)"):
        fd.from_torch(FixedBatch(), torch.zeros(4, 2, 3))


def test_training_mode_is_imported_in_eval_mode_from_a_copy():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).double()
    with pytest.warns(UserWarning, match="training mode"):
        net = fd.from_torch(model, torch.zeros(2, 3, dtype=torch.float64))
    assert model.training  # the caller's module is untouched
    x = np.random.default_rng(0).standard_normal((3, 3))
    assert_same_jacobian(model.eval(), net, x)


def test_non_module_is_a_type_error():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fd.from_torch(lambda x: x, torch.zeros(2, 3))


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_to_torch_of_the_zoo_resnet_whose_node_names_hold_dots(shortcut):
    net = fd.models.resnet20(shortcut=shortcut)
    assert any("." in name for name, _, _ in net.nodes)      # torch forbids them in names
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32))
    module = fd.to_torch(net).double()
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), net.forward(x),
                                   rtol=1e-10, atol=1e-10)
