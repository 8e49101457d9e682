"""im2col / col2im against plain NumPy references."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fwdderiv.kernels.conv import col2im, col2im_t, im2col, im2col_t, out_size


def im2col_reference(x, k, s, p, d):
    """Obvious loops over output positions and window offsets."""
    M, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    Ho, Wo = out_size(H, k[0], s[0], p[0], d[0]), out_size(W, k[1], s[1], p[1], d[1])
    cols = np.zeros((M, Ho * Wo, C * k[0] * k[1]), x.dtype)
    for oy in range(Ho):
        for ox in range(Wo):
            patch = xp[:, :, oy * s[0]:oy * s[0] + d[0] * (k[0] - 1) + 1:d[0],
                       ox * s[1]:ox * s[1] + d[1] * (k[1] - 1) + 1:d[1]]
            cols[:, oy * Wo + ox] = patch.reshape(M, -1)
    return cols


geometry = st.tuples(
    st.integers(1, 3), st.integers(1, 3), st.integers(4, 8), st.integers(4, 8),   # M C H W
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1),  # kh kw s p
    st.integers(1, 2))                                                          # d


@given(geometry, st.sampled_from([np.float32, np.float64]))
def test_im2col_and_its_transpose_match_reference(g, dtype):
    M, C, H, W, kh, kw, s, p, d = g
    x = np.random.default_rng(0).normal(size=(M, C, H, W)).astype(dtype)
    args = ((kh, kw), (s, s), (p, p), (d, d))
    got, got_t = im2col(x, *args), im2col_t(x, *args)
    assert got.dtype == got_t.dtype == dtype
    np.testing.assert_array_equal(got, im2col_reference(x, *args))
    np.testing.assert_array_equal(got_t, got.transpose(0, 2, 1))     # one row per tap


@given(geometry)
def test_col2im_is_the_adjoint_of_im2col(g):
    M, C, H, W, kh, kw, s, p, d = g
    rng = np.random.default_rng(1)
    x = rng.normal(size=(M, C, H, W))
    args = ((kh, kw), (s, s), (p, p), (d, d))
    cols = rng.normal(size=im2col(x, *args).shape)
    lhs = np.vdot(im2col(x, *args), cols)
    rhs = np.vdot(x, col2im(cols, (C, H, W), *args))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    cols_t = np.ascontiguousarray(cols.transpose(0, 2, 1))      # and the transposed pair
    assert np.vdot(im2col_t(x, *args), cols_t) == pytest.approx(
        np.vdot(x, col2im_t(cols_t, (C, H, W), *args)), rel=1e-12)


def test_im2col_fill_value_for_padding():
    x = np.zeros((1, 1, 2, 2))
    cols = im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), fill=-np.inf)
    assert np.isneginf(cols[0, 0, 0]) and cols[0, 0, 4] == 0


@given(geometry, st.integers(1, 2), st.floats(0.0, 1.0), st.booleans())
def test_conv_vjp_scatter_matches_gemm_path(g, groups, density, nhwc):
    from fwdderiv.kernels.conv import conv_vjp_scatter
    from fwdderiv.layers import Conv2d
    M, C, H, W, kh, kw, s, p, d = g
    conv = Conv2d(C * groups, 2 * groups, (kh, kw), stride=s, padding=p, dilation=d,
                  groups=groups, seed=M)
    in_shape = (C * groups, H, W)
    try:
        out = conv.output_shape(in_shape)
    except ValueError:
        return
    rng = np.random.default_rng(2)
    gy = rng.normal(size=(M,) + out) * (rng.random((M,) + out) < density)
    x = rng.normal(size=(M,) + in_shape)
    _, cache = conv.forward(x)
    # the layer's GEMM + col2im path (dense input forces it) against the scatter kernel
    dense = conv.vjp(cache, (gy + 0.0)[:, None] + 1e-300 * (gy == 0)[:, None])[:, 0]
    scat = conv_vjp_scatter(gy, conv.weight, in_shape, conv.stride, conv.padding,
                            conv.dilation, conv.groups, nhwc=nhwc)
    np.testing.assert_allclose(scat, dense, rtol=1e-10, atol=1e-12)
