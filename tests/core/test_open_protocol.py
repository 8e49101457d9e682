"""Layers defined outside the package get the runner's fast paths by declaring them, and
the runner names no concrete layer class."""
import ast
import pathlib

import numpy as np

import fwdderiv as fd
from fwdderiv.core.jacobian import windows_of
from fwdderiv.core import local
from fwdderiv.fusions import slope_pool


class Softsign(fd.Elementwise):
    """A new activation: one class, one method."""

    def value_and_slope(self, x):
        d = 1 + np.abs(x)
        return x / d, 1 / (d * d)


class ChannelMix(fd.Layer):
    """A new linear layer: a fixed 1x1 channel mixing, y[c] = sum_k M[c, k] x[k]."""

    linear = True
    pointwise = True

    def __init__(self, M):
        self.M = np.asarray(M)
        self.calls = []

    def output_shape(self, in_shape):
        return (self.M.shape[0],) + tuple(in_shape[1:])

    def forward(self, x):
        return np.einsum("ck,nk...->nc...", self.M, x), None

    def jvp(self, cache, dx):
        self.calls.append(dx.shape)
        return np.einsum("ck,ndk...->ndc...", self.M, dx)

    def vjp(self, cache, gy):
        return np.einsum("ck,ndc...->ndk...", self.M, gy)


def network(mix):
    return fd.Sequential([mix, fd.Conv2d(3, 4, 3, padding=1), Softsign(), fd.MaxPool2d(2),
                          fd.Conv2d(4, 4, 3), Softsign(), fd.Flatten(), fd.Linear(400, 5)])


def test_new_layers_run_windowed_and_fused_and_agree_with_dense(monkeypatch):
    rng = np.random.default_rng(0)
    mix = ChannelMix(rng.normal(size=(3, 2)))
    net = network(mix)
    x = rng.normal(size=(3, 2, 24, 24))
    dense = net.jacobian(x, windowed=False)
    assert all(s[0] in (1, 3) and s[2:] == (2, 24, 24) for s in mix.calls)
    # the whole conv prefix is windowed: both new layers have rules
    assert len(windows_of(net, net.shapes(x.shape[1:]))) == 6
    mix.calls.clear()

    def no_dense(self, *args, **kwargs):
        raise AssertionError("Softsign fell back to its dense jvp/vjp")

    # forward mode: the first Softsign is fused into the max-pool, the second is scaled
    # as a window; neither takes the dense path
    monkeypatch.setattr(Softsign, "jvp", no_dense)
    windowed = net.jacobian(x)
    # the linear layer in front ran once, on the shared windowed seed (batch 1, channels
    # last: (1, H*W*C0, C, 1, 1)), not on a dense (N, D, C, H, W) tangent
    assert mix.calls == [(1, 24 * 24 * 2, 2, 1, 1)]
    np.testing.assert_allclose(windowed, dense, rtol=1e-12, atol=1e-15)
    # reverse mode: the Softsign before the max-pool is pulled back inside its scatter
    seen = []
    original = slope_pool.pool_scatter

    def spy(cache, gy, slope=None, weights=None):
        seen.append(slope is not None)
        return original(cache, gy, slope, weights)

    monkeypatch.setattr(slope_pool, "pool_scatter", spy)
    calls = []
    monkeypatch.setattr(Softsign, "vjp", lambda self, c, g: calls.append(1) or c[:, None] * g)
    reverse = net.jacobian(x, mode="reverse")
    np.testing.assert_allclose(reverse, dense, rtol=1e-12, atol=1e-15)
    assert seen == [True] and len(calls) == 1       # only the second Softsign pulls back


def test_new_layers_agree_with_finite_differences():
    rng = np.random.default_rng(1)
    net = network(ChannelMix(rng.normal(size=(3, 2))))
    x = rng.normal(size=(2, 2, 24, 24))
    J = net.jacobian(x)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)
    # the trace comes from the same (windowed) loop and agrees with a dense one, node by node
    windowed, dense = (net.jacobian(x, intermediates=True, windowed=w) for w in (True, False))
    assert len(windowed) == len(net.layers) + 1
    np.testing.assert_array_equal(windowed.jacobian, net.jacobian(x))
    for a, b in zip(windowed.jacobians, dense.jacobians):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_elementwise_kinks_are_counted_from_kink_points():
    class Step(Softsign):
        kink_points = (0.5,)
    net = fd.Sequential([fd.Flatten(), Step()])
    x = np.array([[[0.5, 0.2, 0.5 + 1e-9]]])
    from fwdderiv.core.kinks import kink_census
    assert kink_census(net, x) == [(1, "Step()", 2)]


def test_the_runner_names_no_concrete_layer():
    core = pathlib.Path(fd.__file__).parent / "core"
    for path in core.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith(("layers", "fwdderiv.layers")) and \
                    not (node.level and (node.module or "").startswith("layers")), path
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert not names & set(fd.layers.LAYER_TYPES), (path, names & set(fd.layers.LAYER_TYPES))
