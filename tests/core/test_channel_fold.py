"""A per-channel scaling after a layer (BatchNorm's inference form after a convolution)
folded into that layer's weights, in both modes: the same numbers as node by node."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.core.graph import Graph
from fwdderiv.core.plan import without
from fwdderiv.fusions import batchnorm_fold


def bn(c, seed):
    rng = np.random.default_rng(seed)
    layer = fd.BatchNorm2d(c)
    layer.weight = rng.normal(size=c).astype(np.float32)
    layer.bias = rng.normal(size=c).astype(np.float32)
    layer.running_mean = rng.normal(size=c).astype(np.float32)
    layer.running_var = rng.uniform(0.5, 2, size=c).astype(np.float32)
    return layer


def block(shared_output=False):
    # the conv "c" after the 7x7 windows' end runs on dense tangents; its BatchNorm "d"
    nodes = [("a", fd.Conv2d(2, 3, 7, padding=3, seed=1), "input"),
             ("b", fd.ReLU(), "a"),
             ("c", fd.Conv2d(3, 4, 3, padding=1, seed=2), "b"),
             ("d", bn(4, 3), "c"),
             ("e", fd.Tanh(), "d")]
    if shared_output:           # "c" read twice: nothing to fold
        nodes += [("f", fd.Add(), ["e", "c"])]
    return Graph(nodes + [("g", fd.Flatten(), nodes[-1][0]),
                          ("h", fd.Linear(4 * 9 * 9, 3, seed=4), "g")])


class Spy:
    """Records BatchNorm's own JVP/VJP calls, and ``"fold"`` where the fusion folds the
    factors into the convolution's weights."""

    def __init__(self, monkeypatch):
        self.calls = []
        for name in ("jvp", "vjp"):
            real = getattr(fd.BatchNorm2d, name)
            monkeypatch.setattr(fd.BatchNorm2d, name, self.wrap("BatchNorm2d." + name, real))
        monkeypatch.setattr(batchnorm_fold, "scaled_weight",
                            self.wrap("fold", batchnorm_fold.scaled_weight))

    def wrap(self, label, real):
        def spy(layer, *args, **kwargs):
            self.calls.append(label)
            return real(layer, *args, **kwargs)
        return spy


def unfused():
    """The plan without the fold: BatchNorm's own JVP/VJP after the convolution's."""
    return without("batchnorm into conv")


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_folded_equals_node_by_node(monkeypatch, mode):
    net = block()
    x = np.random.default_rng(5).normal(size=(2, 2, 9, 9))
    spy = Spy(monkeypatch)
    J = net.jacobian(x, mode=mode)
    kind = "jvp" if mode == "forward" else "vjp"
    assert "fold" in spy.calls
    assert f"BatchNorm2d.{kind}" not in spy.calls
    with unfused():
        spy.calls.clear()
        J0 = net.jacobian(x, mode=mode)
        assert f"BatchNorm2d.{kind}" in spy.calls
    np.testing.assert_allclose(J, J0, rtol=1e-12, atol=1e-14 * np.abs(J0).max())
    np.testing.assert_allclose(J, net.jacobian(x, mode="forward", windowed=False),
                               rtol=1e-11, atol=1e-14 * np.abs(J0).max())


def test_a_value_read_twice_is_not_folded(monkeypatch):
    net = block(shared_output=True)
    x = np.random.default_rng(6).normal(size=(2, 2, 9, 9))
    spy = Spy(monkeypatch)
    Jf, Jr = net.jacobian(x), net.jacobian(x, mode="reverse")
    assert "fold" not in spy.calls
    np.testing.assert_allclose(Jf, Jr, rtol=1e-11, atol=1e-14 * np.abs(Jr).max())


def test_batch_statistics_are_not_folded(monkeypatch):
    # the training form's derivative mixes the batch: channel_scale says None and the
    # runner takes the layers one by one
    net = block()
    net["d"].training = True
    x = np.random.default_rng(7).normal(size=(3, 2, 9, 9))
    spy = Spy(monkeypatch)
    dx = np.random.default_rng(8).normal(size=(1, 2) + x.shape[1:])
    y, dy = net.jvp(x, np.broadcast_to(dx, (3, 2) + x.shape[1:]))
    assert "fold" not in spy.calls and "BatchNorm2d.jvp" in spy.calls
    with unfused():
        _, dy0 = net.jvp(x, np.broadcast_to(dx, (3, 2) + x.shape[1:]))
    np.testing.assert_array_equal(dy, dy0)


def test_training_gradients_are_not_folded(monkeypatch):
    # parameter gradients need the conv's own output cotangent
    net = block()
    x = np.random.default_rng(9).normal(size=(2, 2, 9, 9))
    _, caches = net.forward_cached(x)
    spy = Spy(monkeypatch)
    grads = net.backward(caches, np.ones((2, 3)))
    assert "fold" not in spy.calls
    assert grads is not None
