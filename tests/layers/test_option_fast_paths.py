"""PyTorch's options keep the fast paths where they apply and decline them where they do
not: the windowed forward Jacobian equals the dense one either way."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.core import local


def windowed(net, x):
    return local.plan(net.layers, net.shapes(x.shape[1:]))[0]


def head(layers, in_shape):
    net = fd.Sequential(layers + [fd.Flatten()])
    return fd.Sequential(net.layers + [fd.Linear(int(np.prod(net.output_shape(in_shape))), 3)])


@pytest.mark.parametrize("layers, n_windowed", [
    ([fd.ZeroPad2d(1), fd.Conv2d(2, 3, 3, padding="same", seed=1), fd.LeakyReLU(0.1),
      fd.MaxPool2d(2, dilation=1, ceil_mode=False), fd.Hardswish(), fd.Identity()], 6),
    ([fd.Conv2d(2, 3, 3, padding="valid", seed=2), fd.GELU(), fd.ConstantPad2d(1, 2.0),
      fd.AvgPool2d(2, count_include_pad=True), fd.SiLU(), fd.Dropout2d(0.2)], 6),
    ([fd.Conv2d(2, 3, 3, padding=1, seed=3), fd.ELU(), fd.Conv2d(3, 3, 2, padding="same")], 2),
    ([fd.Conv2d(2, 3, 3, seed=4), fd.ReLU6(), fd.MaxPool2d(2, ceil_mode=True), fd.Mish()], 2),
    ([fd.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", seed=5), fd.Softplus()], 0),
    ([fd.Conv2d(2, 3, 3, seed=6), fd.Hardtanh(), fd.AvgPool2d(3, 2, 1, divisor_override=4)], 2),
], ids=["same-pool", "valid-constpad", "even-same", "ceil", "reflect", "divisor"])
def test_windowed_jacobian_equals_dense_with_pytorch_options(layers, n_windowed):
    net = head(layers, (2, 11, 12))
    x = np.random.default_rng(0).normal(size=(2, 2, 11, 12))
    assert windowed(net, x) == n_windowed
    Jw = net.jacobian(x, windowed=True)
    Jd = net.jacobian(x, windowed=False)
    np.testing.assert_allclose(Jw, Jd, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.jacobian(x, mode="reverse"), Jd, rtol=1e-11, atol=1e-14)


def test_lenet5_windowed_path_still_runs_and_equals_dense():
    net = fd.models.lenet5()
    x = np.random.default_rng(1).random((2, 1, 32, 32))
    assert windowed(net, x) >= 4
    np.testing.assert_allclose(net.jacobian(x, windowed=True), net.jacobian(x, windowed=False),
                               rtol=1e-11, atol=1e-16)
