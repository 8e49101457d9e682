"""jacobian_penalty: its gradients equal central differences (float64) for every layer type
and for random graphs, and PyTorch's double backward (create_graph=True) on the same
weights."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings

import fwdderiv as fd
from tests.routes import torch_exact_penalty
from fwdderiv.numeric import gradient_fd
from fwdderiv.regularization import jacobian_penalty

from ..core.test_graph import graphs
from ..layers.specs import batchnorm


def float64(layers, seed=0):
    rng = np.random.default_rng(seed)
    for layer in layers:
        for name, value in {**layer.params, **layer.buffers}.items():
            if value is not None:
                setattr(layer, name, value.astype(np.float64))
        if isinstance(layer, (fd.Linear, fd.Conv2d)):     # larger weights: more curvature
            layer.weight *= 2
            if layer.bias is not None:
                layer.bias = rng.normal(size=layer.bias.shape)
    return layers


def every_layer_net(head):
    """Conv, BatchNorm, every activation, both poolings, padding, dropout, two Linear."""
    rng = np.random.default_rng(5)
    return fd.Sequential(float64([
        fd.Pad2d((1, 0, 0, 1)), fd.Conv2d(1, 2, 3, seed=1), batchnorm(rng, 2), fd.Tanh(),
        fd.MaxPool2d(2), fd.ReLU(), fd.AvgPool2d(2, stride=1, padding=1), fd.Sigmoid(),
        fd.Flatten(), fd.Dropout(0.2), fd.Linear(18, 4, seed=2), fd.Tanh(),
        fd.Linear(4, 3, seed=3), head]))


def penalty_at(net, layer, name, q, kwargs):
    old = getattr(layer, name)
    setattr(layer, name, q)
    try:
        return jacobian_penalty(net, x_of(kwargs), **penalty_kwargs(kwargs))[0]
    finally:
        setattr(layer, name, old)


def x_of(kwargs):
    return kwargs["x"]


def penalty_kwargs(kwargs):
    return {k: v for k, v in kwargs.items() if k != "x"}


def check_against_fd(net, x, full=False, rtol=1e-6, **kwargs):
    """Every parameter array's gradient against central differences of the penalty (the
    random projections fixed by the seed): entry by entry if ``full``, else along one
    random direction per array. Returns the number of arrays checked."""
    value, grads = jacobian_penalty(net, x, **kwargs)
    assert len(grads) == len(net.layers)
    # a central difference of P with step 1e-6 carries a rounding error of about
    # 1e-16 |P| / 1e-6: the absolute tolerance follows |P|
    atol = 1e-10 + 1e-9 * abs(value)
    rng, checked, args = np.random.default_rng(1), 0, dict(kwargs, x=x)
    for layer, g in zip(net.layers, grads):
        assert set(g) == {k for k, v in layer.params.items() if v is not None}
        for name, p in layer.params.items():
            if full:
                g_fd = gradient_fd(lambda q: penalty_at(net, layer, name, q, args), p)
                np.testing.assert_allclose(g[name], g_fd, rtol=rtol, atol=1e-9,
                                           err_msg=f"{layer!r} {name} {kwargs}")
            else:
                d, eps = rng.normal(size=p.shape), 1e-6
                fd_d = (penalty_at(net, layer, name, p + eps * d, args)
                        - penalty_at(net, layer, name, p - eps * d, args)) / (2 * eps)
                np.testing.assert_allclose(np.sum(g[name] * d), fd_d, rtol=1e-6, atol=atol,
                                           err_msg=f"{layer!r} {name} {kwargs}")
            checked += 1
    return checked


@pytest.mark.parametrize("head", [fd.Softmax(), fd.LogSoftmax()], ids=repr)
@pytest.mark.parametrize("on", ["logits", "output"])
@pytest.mark.parametrize("method", ["exact", "output", "input"])
def test_every_layer_type_matches_central_differences(method, on, head):
    net = every_layer_net(head)
    x = np.random.default_rng(6).normal(size=(3, 1, 5, 5))
    assert check_against_fd(net, x, method=method, on=on, n_proj=2, seed=11) == 8


@pytest.mark.parametrize("method", ["exact", "output"])
def test_every_entry_of_every_gradient_matches_central_differences(method):
    net = every_layer_net(fd.LogSoftmax())
    x = np.random.default_rng(6).normal(size=(2, 1, 5, 5))
    check_against_fd(net, x, full=True, method=method, n_proj=2, seed=12)


def test_forward_mode_exact_gradient_matches_central_differences():
    # more outputs than inputs: the exact norm takes D unit tangents
    net = fd.Sequential(float64([fd.Linear(2, 6, seed=1), fd.Sigmoid(), fd.Linear(6, 5, seed=2)]))
    check_against_fd(net, np.random.default_rng(7).normal(size=(3, 2)), full=True,
                     method="exact")


@settings(max_examples=6, deadline=None)
@given(graphs(kinks=True))
def test_random_graphs_match_central_differences(case):
    net, x = case
    float64(net.layers)
    for method in ("exact", "output", "input"):
        check_against_fd(net, x, method=method, seed=3)


# -- PyTorch double backward ------------------------------------------------------------
def to_torch(net):
    """The same network in torch.nn, float64, sharing fwdderiv's weights (a test helper)."""
    nn, mods = torch.nn, []
    for layer in net.layers:
        if isinstance(layer, fd.Conv2d):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                          layer.stride, layer.padding, layer.dilation, layer.groups)
        elif isinstance(layer, fd.Linear):
            m = nn.Linear(layer.in_features, layer.out_features)
        elif isinstance(layer, fd.BatchNorm2d):
            m = nn.BatchNorm2d(layer.num_features, eps=layer.eps).eval()
            m.running_mean.data = torch.from_numpy(layer.running_mean.astype(np.float64))
            m.running_var.data = torch.from_numpy(layer.running_var.astype(np.float64))
        elif isinstance(layer, fd.MaxPool2d):
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, fd.AvgPool2d):
            m = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, fd.Pad2d):
            m = nn.ZeroPad2d(layer.padding)
        elif isinstance(layer, (fd.Softmax, fd.LogSoftmax)):
            m = (nn.Softmax if isinstance(layer, fd.Softmax) else nn.LogSoftmax)(dim=-1)
        elif isinstance(layer, fd.Dropout):
            m = nn.Identity()
        else:
            m = {fd.ReLU: nn.ReLU, fd.Tanh: nn.Tanh, fd.Sigmoid: nn.Sigmoid,
                 fd.Flatten: nn.Flatten}[type(layer)]()
        for name, value in layer.params.items():
            getattr(m, name).data = torch.from_numpy(np.asarray(value, np.float64).copy())
        mods.append(m)
    return nn.Sequential(*mods).double()


def torch_grad(module, name):
    """A parameter's gradient; None (no path to the penalty: a bias the Jacobian does not
    depend on) is zero."""
    p = getattr(module, name)
    return np.zeros(tuple(p.shape)) if p.grad is None else p.grad.numpy()


@pytest.mark.parametrize("on", ["logits", "output"])
def test_exact_penalty_equals_pytorch_double_backward(on):
    net = every_layer_net(fd.Softmax())
    x = np.random.default_rng(8).normal(size=(4, 1, 5, 5))
    value, grads = jacobian_penalty(net, x, method="exact", on=on)
    model = to_torch(net[:-1] if on == "logits" else net)
    t_value = torch_exact_penalty(model, x)
    assert value == pytest.approx(t_value, rel=1e-9)
    for k, (layer, g) in enumerate(zip(net.layers, grads)):
        for name in layer.params:
            np.testing.assert_allclose(g[name], torch_grad(model[k], name),
                                       rtol=1e-9, atol=1e-12 * np.abs(g[name]).max(),
                                       err_msg=f"{layer!r} {name}")


def test_lenet_exact_penalty_equals_pytorch_double_backward():
    net = fd.models.lenet5(seed=0)
    float64(net.layers)
    x = np.random.default_rng(9).random((2,) + (1, 32, 32))
    value, grads = jacobian_penalty(net, x, method="exact")
    model = to_torch(fd.layers.heads.logits_net(net))
    t_value = torch_exact_penalty(model, x)
    assert value == pytest.approx(t_value, rel=1e-9)
    for k, (layer, g) in enumerate(zip(net.layers, grads)):
        for name in layer.params:
            np.testing.assert_allclose(g[name], torch_grad(model[k], name),
                                       rtol=1e-9, atol=1e-12 * np.abs(g[name]).max())


def pytorch_layers_net():
    """The layers that came with PyTorch's options: padding modes, adaptive pools, the
    activations and normalisations of today's models."""
    rng = np.random.default_rng(7)
    bn1 = fd.BatchNorm1d(6)
    bn1.running_mean, bn1.running_var = rng.normal(size=6), rng.uniform(0.5, 2, 6)
    layers = float64([
        fd.Conv2d(1, 4, 3, padding=1, padding_mode="reflect", seed=1), fd.GELU(),
        fd.GroupNorm(2, 4), fd.SiLU(), fd.Conv2d(4, 4, 3, padding="same",
                                                 padding_mode="circular", seed=2),
        fd.LeakyReLU(0.1), fd.AdaptiveMaxPool2d(3), fd.Mish(), fd.LayerNorm([4, 3, 3]),
        fd.ELU(0.5), fd.AdaptiveAvgPool2d((2, 2)), fd.Softplus(beta=2.0), fd.Flatten(),
        fd.Linear(16, 6, seed=3), bn1, fd.Hardswish(), fd.GELU(approximate="tanh"),
        fd.Linear(6, 5, seed=4), fd.Hardtanh(-0.5, 0.5), fd.Linear(5, 3, seed=5),
        fd.Softmax()])
    for layer in layers:       # non-trivial affine parameters of the normalisations
        if isinstance(layer, (fd.GroupNorm, fd.LayerNorm)):
            layer.weight = 1 + 0.3 * rng.normal(size=layer.weight.shape)
            layer.bias = 0.3 * rng.normal(size=layer.bias.shape)
    return fd.Sequential(layers)


@pytest.mark.parametrize("method", ["exact", "output"])
def test_pytorch_layers_match_central_differences(method):
    net = pytorch_layers_net()
    x = np.random.default_rng(8).normal(size=(3, 1, 6, 6))
    n = sum(1 for layer in net.layers for v in layer.params.values() if v is not None)
    assert check_against_fd(net, x, method=method, n_proj=2, seed=13) == n


def test_pytorch_layers_exact_penalty_equals_pytorch_double_backward():
    net = pytorch_layers_net()
    x = np.random.default_rng(9).normal(size=(3, 1, 6, 6))
    value, grads = jacobian_penalty(net, x, method="exact")
    model = fd.to_torch(fd.layers.heads.logits_net(net)).double().eval()
    t_value = torch_exact_penalty(model, x)
    assert value == pytest.approx(t_value, rel=1e-9)
    modules = [m for m in model.modules() if not list(m.children())]
    with_params = [(layer, g) for layer, g in zip(net.layers, grads) if layer.params]
    torch_with_params = [m for m in modules if list(m.parameters(recurse=False))]
    assert len(with_params) == len(torch_with_params)
    for (layer, g), m in zip(with_params, torch_with_params):
        for name in layer.params:
            np.testing.assert_allclose(g[name], torch_grad(m, name), rtol=1e-9,
                                       atol=1e-12 * np.abs(g[name]).max(),
                                       err_msg=f"{layer!r} {name}")
