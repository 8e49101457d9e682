"""Max-pool forward/argmax, gather and scatter against plain NumPy references."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fwdderiv.kernels import pool as K
from fwdderiv.kernels.conv import im2col


def maxpool_reference(x, k, s, p):
    """Window columns with -inf padding; np.argmax keeps the first maximum."""
    M, C, H, W = x.shape
    cols = im2col(x.reshape(M * C, 1, H, W), k, s, p, (1, 1), fill=-np.inf)
    arg = cols.argmax(axis=2)
    Ho, Wo = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    oy, ox = np.divmod(np.arange(Ho * Wo), Wo)
    ky, kx = np.divmod(arg, k[1])
    flat = (oy * s[0] - p[0] + ky) * W + (ox * s[1] - p[1] + kx)
    return cols.max(axis=2).reshape(M, C, Ho, Wo), flat.reshape(M, C, Ho * Wo)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 7), st.integers(2, 7),
       st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.integers(0, 3))
def test_maxpool_matches_reference_including_ties(M, C, H, W, k, s, p, levels):
    k = max(k, 2 * p, 1)
    if k > H + 2 * p or k > W + 2 * p:
        return
    rng = np.random.default_rng(levels)
    x = rng.integers(0, levels + 1, size=(M, C, H, W)).astype(np.float64)   # ties
    y, arg = K.maxpool_forward(x, (k, k), (s, s), (p, p))
    y_ref, arg_ref = maxpool_reference(x, (k, k), (s, s), (p, p))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)


def test_gather_and_scatter_match_numpy():
    rng = np.random.default_rng(0)
    N, D, C, HW, P = 2, 3, 4, 9, 5
    dx = rng.normal(size=(N, D, C, HW))
    arg = rng.integers(0, HW, size=(N, C, P))
    ref = np.take_along_axis(dx, arg[:, None].repeat(D, axis=1), axis=3)
    np.testing.assert_array_equal(K.gather(dx, arg), ref)
    gy = rng.normal(size=(N, D, C, P))
    out = np.zeros((N, D, C, HW))
    n, d, c, p = np.indices(gy.shape)
    np.add.at(out, (n, d, c, arg[n, c, p]), gy)
    np.testing.assert_allclose(K.scatter(gy, arg, HW), out, rtol=1e-14)


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    (2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2)])
def test_maxpool_nan_and_ties_match_pytorch(kernel, stride, padding, dilation):
    # A NaN in a window wins (the last one, as PyTorch's CPU kernel picks), ties keep the
    # first maximum: the values and the argmax indices equal PyTorch's.
    import torch
    from fwdderiv.kernels.pool import maxpool_forward
    rng = np.random.default_rng(kernel + stride)
    x = rng.integers(0, 3, size=(2, 3, 7, 8)).astype(np.float64)
    x[rng.random(x.shape) < 0.08] = np.nan
    y, argmax = maxpool_forward(x, (kernel,) * 2, (stride,) * 2, (padding,) * 2,
                                (dilation,) * 2)
    ty, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding,
                                            dilation, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(argmax, ti.numpy().reshape(argmax.shape))


@given(st.integers(1, 2), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9),
       st.integers(0, 3), st.sampled_from([np.float32, np.float64]))
def test_two_by_two_kernel_picks_what_the_general_kernel_picks(M, C, H, W, levels, dtype):
    # the 2 x 2, stride 2 pool has a kernel of its own; it must choose the same entry as
    # the general loop, ties (few levels) and NaN (the last one wins) included
    rng = np.random.default_rng(levels + H * W)
    x = rng.integers(0, levels + 1, size=(M, C, H, W)).astype(dtype)
    x[rng.random(x.shape) < 0.1] = np.nan
    Ho, Wo = H // 2, W // 2
    y, arg = K.maxpool_forward(x, (2, 2), (2, 2), (0, 0))
    y_ref = np.empty_like(y)
    arg_ref = np.empty_like(arg)
    K._maxpool_forward(x, 2, 2, 2, 2, 0, 0, 1, 1, Ho, Wo, y_ref, arg_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_scatter_reduced_is_the_weighted_sum_of_the_blocks(T, M, K_, C, with_slope, dtype):
    # rows in T blocks of M examples, summed over the blocks with weights: the same as
    # scattering every row and summing after (integrated gradients' path points)
    rng = np.random.default_rng(T * 100 + M * 10 + K_)
    HW, P = 9, 4
    gy = rng.normal(size=(T * M, K_, C, P)).astype(dtype)
    arg = rng.integers(0, HW, size=(T * M, C, P))
    slope = (rng.random((T * M, C, HW)) < 0.6).astype(dtype) if with_slope else None
    w = rng.random(T)
    full = K.scatter(gy, arg, HW, slope)
    ref = np.einsum("t,tm...->m...", w.astype(dtype), full.reshape((T, M) + full.shape[1:]))
    out = K.scatter_reduced(gy, arg, HW, w, slope)
    assert out.shape == (M, K_, C, HW) and out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-6 if dtype == np.float32 else 1e-15)
