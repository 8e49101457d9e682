"""Parameter gradients (param_vjp, and the training loss of a whole net) against central
finite differences in float64."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.numeric import gradient_fd
from fwdderiv.training import loss_and_grads, softmax_cross_entropy
from fwdderiv.training.loop import limited_threads


def to_float64(layers):
    for layer in layers:
        for name, value in {**layer.params, **layer.buffers}.items():
            if value is not None:
                setattr(layer, name, value.astype(np.float64))
    return layers


def check_param_vjp(layer, x, seed=0):
    """param_vjp(cache, u) must equal the FD gradient of <u, layer(x)> in every parameter."""
    rng = np.random.default_rng(seed)
    y, cache = layer.forward(x)
    u = rng.standard_normal(y.shape)
    grads = layer.param_vjp(cache, u)
    assert set(grads) == set(layer.params)
    for name, value in layer.params.items():
        def f(p, name=name):
            old = getattr(layer, name)
            setattr(layer, name, p)
            try:
                return float(np.sum(u * layer.forward(x)[0]))
            finally:
                setattr(layer, name, old)
        g_fd = gradient_fd(f, value)
        assert grads[name].shape == value.shape
        np.testing.assert_allclose(grads[name], g_fd, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    layer, = to_float64([fd.Linear(5, 3, bias=bias, seed=1)])
    check_param_vjp(layer, np.random.default_rng(2).standard_normal((4, 5)))


@pytest.mark.parametrize("cfg", [
    dict(in_channels=2, out_channels=3, kernel_size=3),
    dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), padding=(1, 0), groups=2),
    dict(in_channels=3, out_channels=3, kernel_size=2, stride=(1, 2), dilation=2, groups=3),
    dict(in_channels=2, out_channels=2, kernel_size=3, bias=False),
], ids=["plain", "stride-pad", "groups", "depthwise-dilated", "no-bias"])
def test_conv2d(cfg):
    layer, = to_float64([fd.Conv2d(**cfg, seed=3)])
    x = np.random.default_rng(4).standard_normal((2, cfg["in_channels"], 6, 7))
    check_param_vjp(layer, x)


def test_batchnorm2d():
    layer, = to_float64([fd.BatchNorm2d(3)])
    rng = np.random.default_rng(5)
    layer.weight[...] = rng.uniform(0.5, 2, 3)
    layer.bias[...] = rng.standard_normal(3)
    layer.running_mean[...] = rng.standard_normal(3)
    layer.running_var[...] = rng.uniform(0.5, 2, 3)
    check_param_vjp(layer, rng.standard_normal((2, 3, 4, 4)))


def small_net():
    return fd.Sequential(to_float64([
        fd.Pad2d(1), fd.Conv2d(1, 3, 3, seed=1), fd.ReLU(), fd.MaxPool2d(2),
        fd.Conv2d(3, 4, 2, stride=2, groups=1, seed=2), fd.Tanh(), fd.Flatten(),
        fd.Linear(4 * 2 * 2, 5, seed=3), fd.Softmax()]))


@pytest.fixture(autouse=True)
def one_thread():
    # thousands of tiny forward passes: thread start-up would dominate
    with limited_threads(1):
        yield


def test_whole_net_loss_gradient_matches_finite_differences():
    net = small_net()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 1, 8, 8))
    y = np.array([0, 4, 2])
    loss, grads = loss_and_grads(net, x, y)
    assert len(grads) == len(net) and grads[0] == {} and grads[-1] == {}
    assert loss == pytest.approx(softmax_cross_entropy(net[:-1](x), y)[0], rel=1e-12)
    for i, layer in enumerate(net.layers):
        for name, value in layer.params.items():
            def f(p, layer=layer, name=name):
                old = getattr(layer, name)
                setattr(layer, name, p)
                try:
                    return softmax_cross_entropy(net[:-1](x), y)[0]
                finally:
                    setattr(layer, name, old)
            np.testing.assert_allclose(grads[i][name], gradient_fd(f, value), rtol=1e-6,
                                       atol=1e-9, err_msg=f"layer {i} {name}")


def test_training_loss_ignores_the_final_softmax():
    net = small_net()
    x = np.random.default_rng(7).standard_normal((2, 1, 8, 8))
    y = np.array([1, 3])
    with_softmax = loss_and_grads(net, x, y)
    without = loss_and_grads(net[:-1], x, y)
    assert with_softmax[0] == without[0]
    for a, b in zip(with_softmax[1], without[1]):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
