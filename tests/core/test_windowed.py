"""Windowed tangents (fwdderiv.core.local) against the dense forward mode they replace."""
import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fwdderiv as fd
from fwdderiv.core.jacobian import memory_steps, window_elements, windows_of
from fwdderiv.fusions import window_head
from fwdderiv.core import local


def both(net, x):
    return net.jacobian(x, windowed=True), net.jacobian(x, windowed=False)


def windowed_layers(net, x):
    return local.plan(net.layers, net.shapes(x.shape[1:]))[0]


@pytest.mark.parametrize("layers", [
    [fd.Conv2d(2, 4, 3, stride=2, padding=1, seed=1), fd.ReLU()],
    [fd.Conv2d(2, 4, 3, dilation=2, padding=2, seed=2), fd.Tanh()],
    [fd.Conv2d(2, 4, 3, groups=2, seed=3), fd.Sigmoid(), fd.Conv2d(4, 4, 2, groups=4)],
    [fd.Conv2d(2, 3, 2, seed=4), fd.MaxPool2d(3, stride=2, padding=1)],      # shared window into a pool
    [fd.Pad2d((2, 0, 1, 3)), fd.Conv2d(2, 3, 3, seed=5), fd.AvgPool2d(3, stride=2, padding=1)],
    [fd.Conv2d(2, 3, 3, seed=6), fd.BatchNorm2d(3), fd.Dropout(0.1), fd.ReLU(), fd.MaxPool2d(2)],
    [fd.AvgPool2d(2), fd.Conv2d(2, 2, 1, seed=7)],
], ids=["strided", "dilated", "groups", "shared-pool", "pad-avgpool", "bn-drop", "pool-first"])
def test_every_windowed_rule_matches_dense(layers):
    bn = [l for l in layers if isinstance(l, fd.BatchNorm2d)]
    for b in bn:
        b.running_var = np.array([0.5, 2.0, 1.5], np.float32)
        b.weight = np.array([1.0, -2.0, 0.5], np.float32)
    net = fd.Sequential(layers + [fd.Flatten()])
    net = fd.Sequential(net.layers + [fd.Linear(int(np.prod(net.output_shape((2, 13, 13)))), 3)])
    x = np.random.default_rng(0).normal(size=(3, 2, 13, 13))
    assert windowed_layers(net, x) == len(layers)
    Jw, Jd = both(net, x)
    np.testing.assert_allclose(Jw, Jd, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("model,side", [("lenet5", 32), ("mnist_convnet", 28), ("lenet_mnist", 28),
                                        ("digits_net", 8)])
def test_zoo_models_windowed_equals_dense(model, side):
    net = getattr(fd.models, model)()
    x = np.random.default_rng(1).random((2, 1, side, side))
    assert windowed_layers(net, x) > 0
    Jw, Jd = both(net, x)
    np.testing.assert_allclose(Jw, Jd, rtol=1e-11, atol=1e-16 * max(1, np.abs(Jd).max()))


def test_float32_windowed_path_stays_float32():
    net = fd.models.lenet5()
    x = np.random.default_rng(2).random((3, 1, 32, 32)).astype(np.float32)
    Jw, Jd = both(net, x)
    assert Jw.dtype == np.float32
    np.testing.assert_allclose(Jw, Jd, rtol=1e-4, atol=1e-6 * np.abs(Jd).max())


def test_windows_stop_before_they_cover_the_input():
    net = fd.models.lenet5()
    k, windows = local.plan(net.layers, net.shapes((1, 32, 32)))
    # conv 5, pool 2, conv 5, pool 2: receptive fields 5, 6, 14, 16; conv3 would cover 32
    assert k == 6 and [w.size[0] for w in windows] == [5, 5, 6, 14, 14, 16]
    assert windows[-1].stride == (4, 4)


def test_multichannel_input_and_budget_fallback():
    net = fd.Sequential([fd.Conv2d(3, 4, 3, padding=1, seed=8), fd.ReLU(), fd.MaxPool2d(2),
                         fd.Flatten(), fd.Linear(4 * 5 * 5, 2)])
    x = np.random.default_rng(3).normal(size=(4, 3, 10, 10))
    Jw, Jd = both(net, x)
    np.testing.assert_allclose(Jw, Jd, rtol=1e-12, atol=1e-15)
    # a budget too small for one example's windows falls back to dense direction chunks
    small = net.jacobian(x, max_memory=200_000)
    np.testing.assert_allclose(small, Jd, rtol=1e-12, atol=1e-15)


@given(st.integers(0, 2**31 - 1))
def test_random_conv_stacks(seed):
    rng = np.random.default_rng(seed)
    c, size = int(rng.integers(1, 3)), int(rng.integers(8, 12))
    layers = []
    for _ in range(int(rng.integers(1, 4))):
        out = int(rng.integers(1, 4))
        layers += [fd.Conv2d(c, out, int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)),
                             padding=int(rng.integers(0, 2)), seed=int(rng.integers(99))),
                   [fd.ReLU, fd.Tanh, fd.Dropout][int(rng.integers(3))]()]
        c = out
        if min(fd.Sequential(layers).output_shape((layers[0].in_channels, size, size))[1:]) < 3:
            break
    net = fd.Sequential(layers + [fd.Flatten()])
    x = rng.normal(size=(2, layers[0].in_channels, size, size))
    Jw, Jd = both(net, x)
    np.testing.assert_allclose(Jw, Jd, rtol=1e-12, atol=1e-15)


def test_windowed_direction_chunks_match_dense():
    from fwdderiv.core.memory import plan_windowed
    net = fd.models.lenet5()
    x = np.random.default_rng(4).random((3, 1, 32, 32))
    shapes = net.shapes(x.shape[1:])
    k, windows = local.plan(net.layers, shapes)
    budget = 12_000_000
    plan = plan_windowed(memory_steps(net, shapes), shapes, 3, 8, budget, k,
                         local.elements_per_example(shapes, windows))
    assert plan is not None and len(plan.direction_chunks) > 1
    np.testing.assert_allclose(net.jacobian(x, max_memory=budget),
                               net.jacobian(x, windowed=False), rtol=1e-12, atol=1e-18)


def test_mnist_lenet5_keeps_its_last_pool_windowed():
    # 16x16 is a quarter of 32x32 but a third of 28x28: both stay windowed
    net = fd.models.lenet5(in_size=28)
    k, windows = local.plan(net.layers, net.shapes((1, 28, 28)))
    assert k == 7 and windows[-1].size == (16, 16)


class _Spy:
    """Counts the window head's dense tangents from windows that did not decline."""

    def __init__(self, monkeypatch):
        self.used = 0
        real = window_head.dense_from_windows

        def spy(*args, **kwargs):
            out = real(*args, **kwargs)
            self.used += out is not None
            return out
        monkeypatch.setattr(window_head, "dense_from_windows", spy)


@pytest.mark.parametrize("side,n", [(28, 1), (28, 3), (32, 2)])
def test_whole_input_conv_takes_the_windows_itself(monkeypatch, side, n):
    net = fd.models.lenet5(in_size=side, seed=2)
    x = np.random.default_rng(5).random((n, 1, side, side))
    spy = _Spy(monkeypatch)
    Jw = net.jacobian(x)
    assert spy.used == 1                 # the third conv read the windows, no dense copy
    np.testing.assert_allclose(Jw, net.jacobian(x, windowed=False), rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(Jw, net.jacobian(x, mode="reverse"), rtol=1e-12, atol=1e-18)


@given(st.integers(0, 2**31 - 1))
def test_window_dense_jvp_on_random_heads_and_direction_chunks(seed):
    rng = np.random.default_rng(seed)
    c, size = int(rng.integers(1, 3)), int(rng.integers(9, 13))
    conv = fd.Conv2d(c, int(rng.integers(1, 4)), 3, stride=int(rng.integers(1, 3)),
                     seed=int(rng.integers(99)))
    body = fd.Sequential([conv, fd.ReLU(), fd.MaxPool2d(2)])
    co, h, w = body.output_shape((c, size, size))
    # a kernel over the whole input (declares), or with padding / groups (declines)
    head = [fd.Conv2d(co, 5, (h, w), seed=3), fd.Conv2d(co, 5, (h, w), padding=1, seed=3),
            fd.Conv2d(co, 2 * co, (h, w), groups=co, seed=3)][int(rng.integers(3))]
    net = fd.Sequential(body.layers + [head, fd.Tanh(), fd.Flatten()])
    x = rng.normal(size=(int(rng.integers(1, 4)), c, size, size))
    dense = net.jacobian(x, windowed=False)
    np.testing.assert_allclose(net.jacobian(x), dense, rtol=1e-12, atol=1e-15)
    budget = 16_000                    # the smallest that runs: many direction chunks
    while True:
        try:
            chunked = net.jacobian(x, max_memory=budget)
            break
        except ValueError:
            budget *= 2
    np.testing.assert_allclose(chunked, dense, rtol=1e-12, atol=1e-15)


def test_windows_run_once_for_every_direction_chunk(monkeypatch):
    # a residual graph whose windowed run ends with a value that two later nodes read
    # ("b": the 5x5 conv would outgrow the windows, the add reads it again): the windows
    # are computed once per example chunk and sliced to each chunk of directions
    from fwdderiv.core.memory import plan_windowed
    net = fd.Graph([("a", fd.Conv2d(2, 3, 3, padding=1, seed=1), "input"),
                    ("b", fd.ReLU(), "a"),
                    ("c", fd.Conv2d(3, 3, 5, padding=2, seed=2), "b"),
                    ("d", fd.Add(), ["c", "b"]),
                    ("e", fd.Tanh(), "d"),
                    ("f", fd.Flatten(), "e"),
                    ("g", fd.Linear(3 * 12 * 12, 4, seed=3), "f")])
    x = np.random.default_rng(5).normal(size=(2, 2, 12, 12))
    shapes = net.shapes(x.shape[1:])
    windows = windows_of(net, shapes)
    assert len(windows) == 2
    budget = 4_000_000
    plan = plan_windowed(memory_steps(net, shapes), shapes, 2, 8, budget, len(windows),
                         window_elements(net, shapes, windows))
    assert len(plan.example_chunks) == 2 and len(plan.direction_chunks) > 2
    calls = []
    real = fd.Conv2d.window_jvp
    monkeypatch.setattr(fd.Conv2d, "window_jvp",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    J = net.jacobian(x, max_memory=budget)
    assert len(calls) == len(plan.example_chunks)          # not times the direction chunks
    np.testing.assert_allclose(J, net.jacobian(x, windowed=False), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("N", [1, 3])
def test_window_conv_kernels_for_few_and_many_examples_agree(N):
    # conv_window runs fewer examples than threads position by position
    # (_conv_window_few), more example by example (_conv_window): the same sums
    from fwdderiv.kernels import local as kern
    rng = np.random.default_rng(9)
    layer = fd.Conv2d(3, 5, 3, stride=2, padding=1, groups=1, seed=4)
    T = rng.normal(size=(N, 6, 7, 2, 3, 3, 3)) * (rng.random((N, 6, 7, 2, 3, 3, 3)) < 0.6)
    out_hw, window = (3, 4), local.Window((3, 3), (1, 1), (1, 1))
    new = local.grow(window, (3, 3), (2, 2), (1, 1))
    shape = (N,) + out_hw + (2,) + new.size + (5,)
    Wt = np.ascontiguousarray(layer.weight.transpose(2, 3, 1, 0), dtype=T.dtype)
    args = (T, Wt, 2, 2, 1, 1, 1, 1, 1, 1, 1)
    HW, block = 42, 2 * 3 * 3 * 3
    many, few = np.empty(shape), np.empty(shape)
    t = numba.config.NUMBA_NUM_THREADS              # one scratch slab per thread id
    kern._conv_window(*args, many, np.empty((t, HW, block)), np.empty((t, 2, HW, block), np.int64),
                      np.empty((t, HW), np.int64))
    kern._conv_window_few(*args, few, np.empty((N * HW, block)),
                          np.empty((2, N * HW, block), np.int64), np.empty(N * HW, np.int64))
    np.testing.assert_array_equal(few, many)
    assert np.abs(many).max() > 0
