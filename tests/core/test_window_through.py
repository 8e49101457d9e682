"""A convolution's windows computed through the max-pool after it (the conv + pool fusion):
only the selected conv outputs, the same numbers as the layer-by-layer windowed path."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fwdderiv as fd
from fwdderiv.core import local
from fwdderiv.fusions import conv_pool
from fwdderiv.kernels.local import conv_pool_window, conv_window, maxpool_window
from fwdderiv.kernels.pool import maxpool_forward


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]),
       st.booleans(), st.booleans())
def test_kernel_equals_conv_then_pool(seed, dtype, shared, with_slope):
    rng = np.random.default_rng(seed)
    groups = int(rng.integers(1, 3))
    ci, co = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 4))
    conv = fd.Conv2d(ci, co, int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)),
                     padding=int(rng.integers(0, 2)), dilation=int(rng.integers(1, 3)),
                     groups=groups, seed=int(rng.integers(99)))
    k = int(rng.integers(2, 4))
    pool = fd.MaxPool2d(k, stride=int(rng.integers(1, k + 1)), padding=int(rng.integers(0, k // 2 + 1)))
    H = W = int(rng.integers(7, 11))
    window = local.Window((int(rng.integers(1, 4)),) * 2, (int(rng.integers(1, 3)),) * 2,
                          (int(rng.integers(0, 2)),) * 2)
    c0, n = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    T = rng.normal(size=(1 if shared else n, H, W, c0) + window.size + (ci,)).astype(dtype)
    T[rng.random(T.shape) < 0.4] = 0                         # zeros are skipped
    _, Ho, Wo = conv.output_shape((ci, H, W))
    if min(Ho, Wo) + 2 * pool.padding[0] < k:
        return
    _, Hp, Wp = pool.output_shape((co, Ho, Wo))
    _, argmax = maxpool_forward(rng.normal(size=(n, co, Ho, Wo)), pool.kernel_size,
                                pool.stride, pool.padding)
    slope = None
    if with_slope:
        slope = rng.normal(size=(n, co, Ho, Wo)).astype(dtype)
        slope[rng.random(slope.shape) < 0.5] = 0              # dead units are skipped
        slope[rng.random(slope.shape) < 0.2] = 1
    conv_win = conv.window_rule(window)
    pooled = pool.window_rule(conv_win)
    plain = maxpool_window(conv_window(T, conv, (Ho, Wo), window, conv_win.size), argmax,
                           (Ho, Wo), (Hp, Wp), pool, conv_win, pooled.size, slope)
    through = conv_pool_window(T, conv, argmax, (Ho, Wo), (Hp, Wp), window, conv_win, pooled,
                               slope)
    assert through.dtype == dtype
    np.testing.assert_array_equal(through, plain)


class _Spy:
    """Counts the conv + pool fusion's calls, and those that did not decline."""

    def __init__(self, monkeypatch):
        self.calls = self.used = 0
        real = conv_pool.pooled_windows

        def spy(*args, **kwargs):
            out = real(*args, **kwargs)
            self.calls += 1
            self.used += out is not None
            return out
        monkeypatch.setattr(conv_pool, "pooled_windows", spy)


@pytest.mark.parametrize("side,n,dtype", [(28, 3, np.float64), (32, 2, np.float64),
                                          (32, 4, np.float32)])
def test_lenet5_second_conv_runs_through_its_pool(monkeypatch, side, n, dtype):
    net = fd.models.lenet5(in_size=side, seed=3)
    x = np.random.default_rng(6).random((n, 1, side, side)).astype(dtype)
    spy = _Spy(monkeypatch)
    J = net.jacobian(x)
    # the first conv's windows are shared by the examples (it declines: it runs once for
    # all of them); the second conv's are each example's own
    assert (spy.calls, spy.used) == (2, 1)
    tol = dict(rtol=1e-12, atol=1e-18) if dtype == np.float64 else dict(rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(J, net.jacobian(x, windowed=False), **tol)
    np.testing.assert_allclose(J, net.jacobian(x, mode="reverse"), **tol)


def test_a_conv_read_twice_is_not_fused(monkeypatch):
    # the conv's value feeds the pool and a residual branch: its windows are needed whole
    g = fd.Graph([("c", fd.Conv2d(1, 2, 3, padding=1, seed=1), "input"),
                  ("r", fd.ReLU(), "c"), ("p", fd.MaxPool2d(2), "r"),
                  ("q", fd.MaxPool2d(2), "c"), ("s", fd.Add(), ["p", "q"]),
                  ("f", fd.Flatten(), "s")])
    x = np.random.default_rng(7).normal(size=(2, 1, 8, 8))
    spy = _Spy(monkeypatch)
    J = g.jacobian(x)
    assert spy.calls == 0
    np.testing.assert_allclose(J, g.jacobian(x, windowed=False), rtol=1e-12, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_random_conv_pool_stacks(seed):
    rng = np.random.default_rng(seed)
    c, size = int(rng.integers(1, 3)), int(rng.integers(10, 15))
    c_in, layers = c, []
    for _ in range(int(rng.integers(1, 3))):
        out = int(rng.integers(1, 4))
        block = [fd.Conv2d(c, out, int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)),
                           padding=int(rng.integers(0, 2)), seed=int(rng.integers(99)))]
        act = [fd.ReLU, fd.Tanh, fd.LeakyReLU, None][int(rng.integers(4))]
        if act is not None:
            block.append(act())
        k = int(rng.integers(2, 4))
        block.append(fd.MaxPool2d(k, stride=int(rng.integers(1, k + 1))))
        try:                                          # stop where the image is too small
            fd.Sequential(layers + block).output_shape((c_in, size, size))
        except ValueError:
            break
        layers += block
        c = out
    if not layers:
        return
    net = fd.Sequential(layers + [fd.Flatten()])
    x = rng.normal(size=(int(rng.integers(1, 4)), c_in, size, size))
    J = net.jacobian(x)
    np.testing.assert_allclose(J, net.jacobian(x, windowed=False), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(J, net.jacobian(x, mode="reverse"), rtol=1e-11, atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.5, 1.0]))
def test_random_lenet_like_nets_with_direction_chunks(seed, live_share):
    # conv -> act -> pool -> whole-input conv -> ReLU -> Flatten -> Linear -> ReLU -> Linear:
    # the through-pool windows, the column tangents of the dense part (forced on every
    # batch with a live share of 1) and small budgets (many direction chunks) together
    from fwdderiv.fusions import scaled_linear as linear_module
    rng = np.random.default_rng(seed)
    c, size = int(rng.integers(1, 3)), int(rng.integers(9, 13))
    k1 = int(rng.integers(2, 4))
    body = [fd.Conv2d(c, int(rng.integers(2, 5)), k1, padding=int(rng.integers(0, 2)),
                      seed=int(rng.integers(99))),
            [fd.ReLU, fd.LeakyReLU][int(rng.integers(2))](), fd.MaxPool2d(2)]
    co, h, w = fd.Sequential(body).output_shape((c, size, size))
    hidden = int(rng.integers(3, 9))
    net = fd.Sequential(body + [fd.Conv2d(co, hidden, (h, w), seed=1), fd.ReLU(), fd.Flatten(),
                                fd.Linear(hidden, 5, seed=2), fd.ReLU(),
                                fd.Linear(5, 3, seed=3), fd.Softmax()])
    x = rng.normal(size=(int(rng.integers(1, 5)), c, size, size))
    old = linear_module.LIVE_SHARE
    linear_module.LIVE_SHARE = live_share
    budget = int(rng.integers(20_000, 200_000))
    try:
        J = net.jacobian(x)
        while True:
            try:
                chunked = net.jacobian(x, max_memory=budget)
                break
            except ValueError:                        # below what one direction needs
                budget *= 2
    finally:
        linear_module.LIVE_SHARE = old
    dense = net.jacobian(x, windowed=False)
    np.testing.assert_allclose(J, dense, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(chunked, dense, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(J, net.jacobian(x, mode="reverse"), rtol=1e-11, atol=1e-14)
