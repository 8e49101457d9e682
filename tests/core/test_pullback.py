"""The reverse pass's fused paths (conv -> [elementwise] -> max-pool pulled back in one
scatter) against the layer-by-layer pullback, on every geometry and layout."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fwdderiv as fd
from fwdderiv.fusions import conv_pool as conv_pool_fusion
from fwdderiv.kernels import conv as conv_module
from fwdderiv.layers import conv as conv_layer_module


@st.composite
def conv_pool(draw):
    groups = draw(st.integers(1, 2))
    cin = groups * draw(st.sampled_from([1, 2, 5]))       # 5 per group: the channels-last path
    conv = fd.Conv2d(cin, groups * draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                     stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
                     dilation=draw(st.integers(1, 2)), groups=groups,
                     seed=draw(st.integers(0, 99)))
    k = draw(st.integers(2, 3))
    pool = fd.MaxPool2d(k, stride=draw(st.integers(1, k)), padding=draw(st.integers(0, k // 2)))
    act = draw(st.sampled_from([None, fd.ReLU, fd.Tanh]))
    size = draw(st.integers(7, 10))
    n, K = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return conv, act, pool, (n, cin, size, size), K, draw(st.integers(0, 2**31 - 1))


@given(conv_pool(), st.sampled_from(["nchw", "nhwc"]))
def test_vjp_through_pool_matches_layer_by_layer(case, layout):
    conv, act, pool, shape, K, seed = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    h, conv_cache = conv.forward(x)
    slope = None
    if act is not None:
        h, slope = act().forward(h)
    try:
        y, pool_cache = pool.forward(h)
    except ValueError:          # the conv's output is smaller than the pool window
        return
    size = (shape[0], K) + y.shape[1:]
    gy = rng.normal(size=size) * (rng.random(size) < 0.7)
    g = pool.vjp(pool_cache, gy)
    if slope is not None:
        g = g * slope[:, None]
    expected = conv.vjp(conv_cache, g + 1e-300 * (g == 0))       # dense GEMM path
    got = conv_module.conv_vjp_scatter(gy.reshape((-1,) + gy.shape[2:]), conv.weight, shape[1:],
                                       conv.stride, conv.padding, conv.dilation, conv.groups,
                                       nhwc=layout == "nhwc", pool=(pool_cache[0], h.shape[3]),
                                       slope=slope)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", ["gemm", "nchw", "nhwc"])
def test_reverse_jacobian_is_the_same_on_every_path(monkeypatch, path):
    # LeNet-5-like stacks with 1 and 6 input channels: force each VJP path in turn
    if path == "gemm":
        monkeypatch.setattr(conv_module, "SCATTER_DENSITY", -1.0)
        monkeypatch.setattr(conv_module, "SCATTER_NHWC_DENSITY", -1.0)
        monkeypatch.setattr(conv_module, "THIN_DENSITY", -1.0)
        monkeypatch.setattr(conv_module, "SCATTER_ANY_DENSITY_GROUPS", 10**9)
    else:
        monkeypatch.setattr(conv_module, "SCATTER_DENSITY", 2.0)
        monkeypatch.setattr(conv_module, "SCATTER_NHWC_DENSITY", 2.0)
        monkeypatch.setattr(conv_module, "THIN_DENSITY", 2.0)
        monkeypatch.setattr(conv_module, "SCATTER_MAX_WORK", 10**9)
        monkeypatch.setattr(conv_module, "SCATTER_NHWC_CHANNELS", 10**9 if path == "nchw" else 1)
    net = fd.models.lenet5()
    x = np.random.default_rng(3).random((2, 1, 32, 32))
    Jf = net.jacobian(x, mode="forward")
    Jr = net.jacobian(x, mode="reverse")
    np.testing.assert_allclose(Jr, Jf, rtol=1e-10, atol=1e-12 * np.abs(Jf).max())


def test_fused_pullback_is_taken_where_it_pays(monkeypatch):
    # LeNet-5's conv -> ReLU -> max-pool pairs are pulled back from the pool's output
    calls = []
    original = conv_pool_fusion.conv_vjp_scatter

    def spy(g, weight, in_shape, *args, nhwc=False, pool=None, slope=None):
        calls.append((in_shape[0], "nhwc" if nhwc else "nchw", pool is not None,
                      slope is not None))
        return original(g, weight, in_shape, *args, nhwc=nhwc, pool=pool, slope=slope)

    monkeypatch.setattr(conv_pool_fusion, "conv_vjp_scatter", spy)
    net = fd.models.lenet5()
    net.jacobian(np.random.default_rng(0).random((4, 1, 32, 32)), mode="reverse")
    assert (6, "nhwc", True, True) in calls and (1, "nchw", True, True) in calls


def test_thread_count_does_not_change_the_jacobians():
    # the kernels' per-thread scratch is indexed by thread id: any thread count must give
    # the same numbers (rows of the scatter never share an accumulator)
    import numba
    net = fd.models.mnist_convnet()
    x = np.random.default_rng(5).random((3, 1, 28, 28))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = net.jacobian(x, mode="reverse"), net.jacobian(x)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = net.jacobian(x, mode="reverse"), net.jacobian(x)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])


def test_the_unfused_conv_vjp_chooses_its_path_by_shape():
    layout = conv_module.conv_vjp_layout
    assert layout((16, 8, 1, 1), 1, (1, 1), 0, 1000) is None          # 1x1: one GEMM
    assert layout((16, 8, 1, 1), 1, (2, 2), 0, 1000) == "nhwc"        # strided: col2im
    assert layout((32, 1, 3, 3), 32, (1, 1), 1000, 1000) == "nchw"    # depthwise, dense
    assert layout((8, 1, 3, 3), 8, (1, 1), 1000, 1000) is None        # few groups
    assert layout((8, 8, 3, 3), 1, (1, 1), 100, 1000) == "nhwc"       # thin, at 10%
    assert layout((8, 8, 3, 3), 1, (1, 1), 101, 1000) is None
    assert layout((64, 32, 3, 3), 1, (1, 1), 400, 1000) == "nhwc"     # wide: up to 40%
    assert layout((16, 6, 5, 5), 1, (1, 1), 400, 1000) == "nhwc"      # thin 5x5: too


@pytest.mark.parametrize("stride", [1, 2])
def test_a_depthwise_conv_scatters_at_full_density_with_the_gemms_numbers(monkeypatch,
                                                                          stride):
    conv = fd.Conv2d(16, 16, 3, stride=stride, padding=1, groups=16, seed=1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 16, 6, 6))
    _, cache = conv.forward(x)
    gy = rng.normal(size=(2, 3) + conv.output_shape(x.shape[1:]))
    calls = []
    original = conv_module.conv_vjp_scatter
    monkeypatch.setattr(conv_layer_module, "conv_vjp_scatter",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    scattered = conv.vjp(cache, gy)
    monkeypatch.setattr(conv_module, "SCATTER_ANY_DENSITY_GROUPS", 10**9)
    dense = conv.vjp(cache, gy)
    assert len(calls) == 1
    np.testing.assert_allclose(scattered, dense, rtol=1e-12, atol=1e-14)
