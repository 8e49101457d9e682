"""Winograd's F(2x2, 3x3) convolution against im2col's product, and its use by Conv2d."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fwdderiv as fd
from fwdderiv import threads
from fwdderiv.kernels import winograd
from fwdderiv.kernels.conv import im2col_t
from fwdderiv.layers import conv as conv_module


def im2col_conv(x, w, padding):
    M, _, H, W = x.shape
    cols = im2col_t(x, (3, 3), (1, 1), padding, (1, 1))
    return np.matmul(w.reshape(w.shape[0], -1), cols).reshape(
        M, w.shape[0], H + 2 * padding[0] - 2, W + 2 * padding[1] - 2)


@settings(deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.integers(1, 9),
       st.integers(1, 9), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2**31 - 1),
       st.booleans())
def test_equals_im2col_in_float64(M, Ci, Co, H, W, ph, pw, seed, small_blocks):
    if H + 2 * ph < 3 or W + 2 * pw < 3:
        return                               # no output: the layer refuses such input
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=(M, Ci, H, W)), rng.normal(size=(Co, Ci, 3, 3))
    if small_blocks:                          # blocks of one image, odd sides included
        old, winograd.BLOCK_BYTES = winograd.BLOCK_BYTES, 1
    try:
        got = winograd.conv3x3(x, w, (ph, pw))
    finally:
        if small_blocks:
            winograd.BLOCK_BYTES = old
    want = im2col_conv(x, w, (ph, pw))
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * max(1, np.abs(want).max()))


def test_float32_stays_float32_and_agrees():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 5, 12, 10)).astype(np.float32)
    w = rng.normal(size=(6, 5, 3, 3)).astype(np.float32)
    got = winograd.conv3x3(x, w, (1, 1))
    assert got.dtype == np.float32
    want = im2col_conv(x.astype(np.float64), w.astype(np.float64), (1, 1))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_split_across_the_cores_gives_the_same_numbers(monkeypatch):
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(9, 3, 8, 8)), rng.normal(size=(4, 3, 3, 3))
    alone = winograd.conv3x3(x, w, (1, 1))
    cuts, idents = [], set()
    real = threads.run
    monkeypatch.setattr(threads, "SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(threads, "_cores", lambda: 2)

    def spy(parts, piece):
        def watched(i, j):
            cuts.append((i, j))
            idents.add(threading.get_ident())
            piece(i, j)
        real(parts, watched)

    monkeypatch.setattr(threads, "run", spy)
    with threads.blas_limited(True):
        split = winograd.conv3x3(x, w, (1, 1))
    assert sorted(cuts) == [(0, 4), (4, 9)] and len(idents) == 2
    np.testing.assert_array_equal(split, alone)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_16_planes_start_on_different_cache_lines_of_a_page(dtype):
    for rows, cols in [(32, 8 * 64), (64, 16 * 16), (16, 256), (3, 5)]:
        V = winograd._planes(rows, cols, dtype)
        assert V.shape == (16, rows, cols)
        starts = {(V.strides[0] * k) % 4096 // 64 for k in range(16)}
        assert len(starts) == 16


def conv_jvp_both_ways(monkeypatch, layer, dx):
    x = np.zeros((dx.shape[0],) + dx.shape[2:])
    _, cache = layer.forward(x)
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_POSITIONS", 0)
    fast = layer.jvp(cache, dx)
    assert calls, "the Winograd path was not taken"
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_POSITIONS", 1 << 60)
    calls.clear()
    plain = layer.jvp(cache, dx)
    assert not calls
    return fast, plain


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(padding=0), dict(padding=(2, 1)),
                                    dict(padding="same", padding_mode="reflect"),
                                    dict(padding=1, padding_mode="circular", bias=False)])
def test_conv2d_jvp_by_winograd_equals_im2col(monkeypatch, kwargs):
    layer = fd.Conv2d(3, 4, 3, seed=3, **kwargs)
    dx = np.random.default_rng(4).normal(size=(2, 5, 3, 7, 6))
    fast, plain = conv_jvp_both_ways(monkeypatch, layer, dx)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-13 * np.abs(plain).max())


def test_conv2d_vjp_by_winograd_equals_im2col(monkeypatch):
    # (the VJP goes as a convolution of the cotangent when it gathers no more than
    # col2im would add: here 3 output channels for 4 input channels)
    layer = fd.Conv2d(4, 3, 3, padding=1, seed=5)
    x = np.random.default_rng(6).normal(size=(2, 4, 9, 8))
    _, cache = layer.forward(x)
    gy = np.random.default_rng(7).normal(size=(2, 5, 3, 9, 8))
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_POSITIONS", 0)
    fast = layer.vjp(cache, gy)
    assert calls
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_POSITIONS", 1 << 60)
    plain = layer.vjp(cache, gy)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-13 * np.abs(plain).max())


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1), dict(dilation=2, padding=2),
                                    dict(groups=3, padding=1)])
def test_other_3x3_convolutions_keep_im2col(monkeypatch, kwargs):
    layer = fd.Conv2d(3, 3, 3, seed=8, **kwargs)
    x = np.zeros((1, 3, 9, 9))
    _, cache = layer.forward(x)
    monkeypatch.setattr(conv_module, "WINOGRAD_MIN_POSITIONS", 0)
    monkeypatch.setattr(winograd, "conv3x3", lambda *a: pytest.fail("Winograd taken"))
    layer.jvp(cache, np.ones((1, 2, 3, 9, 9)))


def test_weight_transform_is_g_w_gt_and_its_adjoint_the_turned_transpose():
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    w = np.random.default_rng(9).normal(size=(5, 3, 3, 3))
    U = winograd.transform_weights(w, np.float64)
    want = np.einsum("ak,oikl,bl->aboi", G, w, G).reshape(16, 5, 3)
    np.testing.assert_allclose(U, want, rtol=0, atol=1e-15 * np.abs(want).max())
    turned = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(winograd.transform_weights(w, np.float64, adjoint=True),
                                  winograd.transform_weights(turned, np.float64))
    x = np.random.default_rng(10).normal(size=(2, 5, 6, 7))
    np.testing.assert_array_equal(winograd.conv3x3(x, w, (1, 1), adjoint=True),
                                  winograd.conv3x3(x, turned, (1, 1)))
