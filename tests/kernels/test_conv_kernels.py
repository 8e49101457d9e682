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


@pytest.mark.parametrize("groups, stride, prepad", [(1, 1, 0), (2, 3, 0), (1, 2, 1)])
def test_vjp_of_a_kernel_covering_its_input_is_the_adjoint_of_the_jvp(groups, stride,
                                                                       prepad):
    # One window that is the whole input (LeNet-5's 16 x 5 x 5 -> 120 layer): the VJP
    # reshapes the product's columns instead of adding them up with col2im. It must stay
    # the adjoint of the JVP, <gy, J dx> = <J^T gy, dx>, and equal the col2im path.
    from fwdderiv.layers import Conv2d
    rng = np.random.default_rng(groups + stride)
    in_shape = (2 * groups, 4, 3)
    padding_mode = "zeros" if not prepad else "reflect"
    conv = Conv2d(2 * groups, 3 * groups, (4 + 2 * prepad, 3 + 2 * prepad), stride=stride,
                  padding=prepad, padding_mode=padding_mode, groups=groups, seed=groups)
    assert conv.output_shape(in_shape)[1:] == (1, 1)
    x = rng.normal(size=(2,) + in_shape)
    _, cache = conv.forward(x)
    dx = rng.normal(size=(2, 5) + in_shape)
    gy = rng.normal(size=(2, 4) + conv.output_shape(in_shape))
    jdx = conv.jvp(cache, dx)
    gx = conv.vjp(cache, gy)
    lhs = np.einsum("nka,nda->nkd", gy.reshape(2, 4, -1), jdx.reshape(2, 5, -1))
    rhs = np.einsum("nka,nda->nkd", gx.reshape(2, 4, -1), dx.reshape(2, 5, -1))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)
    if not prepad:
        cols = (gy.reshape(8, 3 * groups, 1) * 1.0).transpose(0, 2, 1)
        W = conv.weight.reshape(3 * groups, -1)
        Cog, Kg = 3, W.shape[1]
        gcols = np.concatenate([cols[:, :, i * Cog:(i + 1) * Cog] @ W[i * Cog:(i + 1) * Cog]
                                for i in range(groups)], axis=2)
        ref = col2im(gcols, in_shape, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation)
        np.testing.assert_allclose(gx.reshape(ref.shape), ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("N, K, dtype", [(1, 10, np.float64), (6, 10, np.float64),
                                         (5, 5, np.float64), (7, 10, np.float32)])
@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 2), (2, 1)])
@pytest.mark.parametrize("Ci, nhwc", [(1, False), (3, True), (6, False), (9, True)])
def test_pooled_scatter_of_a_few_channel_conv_equals_the_unpooled_one(N, K, dtype, stride,
                                                                      padding, Ci, nhwc):
    # Through a max-pool, the K cotangent rows of an example share argmax and slope: a
    # conv of up to ROWS_LAST_CHANNELS input channels accumulates them together, rows
    # last (_scatter_rows_last, from 4 rows per task; even if channels-last was asked),
    # the others row by row. Either way the result is the plain scatter of the conv's
    # output cotangent, unpooled by hand.
    from fwdderiv.kernels.conv import ROWS_LAST_CHANNELS, ROWS_LAST_MIN, conv_vjp_scatter
    from fwdderiv.kernels.pool import maxpool_forward
    from fwdderiv.layers import Conv2d
    assert (Ci <= ROWS_LAST_CHANNELS) == (Ci < 9)
    rng = np.random.default_rng(N * K + stride + padding + Ci)
    conv = Conv2d(Ci, 3, 3, stride=stride, padding=padding, seed=K)
    in_shape = (Ci, 9, 10)
    Co, Ho, Wo = conv.output_shape(in_shape)
    z = rng.normal(size=(N, Co, Ho, Wo))
    slope = (z > 0).astype(dtype) * rng.uniform(0.5, 2.0, size=z.shape).astype(dtype)
    _, argmax = maxpool_forward(z, (2, 2), (2, 2), (0, 0))
    P = argmax.shape[2]
    gy = (rng.normal(size=(N * K, Co, P)) * (rng.random((N * K, Co, P)) < 0.7)).astype(dtype)
    gy[:, 0, 0] = 0.0                          # an entry dead in every row
    pooled = conv_vjp_scatter(gy.reshape(N * K, Co, Ho // 2, Wo // 2), conv.weight,
                              in_shape, conv.stride, conv.padding, conv.dilation, 1,
                              nhwc=nhwc, pool=(argmax, Wo), slope=slope)
    g = np.zeros((N * K, Co, Ho * Wo), dtype)
    rows = np.arange(N * K)[:, None, None]
    np.add.at(g, (rows, np.arange(Co)[None, :, None], argmax[np.arange(N * K) // K]), gy)
    g *= slope.reshape(N, 1, Co, -1).repeat(K, axis=1).reshape(N * K, Co, -1)
    plain = conv_vjp_scatter(g.reshape(N * K, Co, Ho, Wo), conv.weight, in_shape,
                             conv.stride, conv.padding, conv.dilation, 1)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(pooled, plain, rtol=tol, atol=tol)
    assert K < ROWS_LAST_MIN or N == 1 or np.abs(pooled).max() > 0


@pytest.mark.parametrize("Ci, Co, kernel, padding, dilation, taken", [
    (4, 4, 3, 1, 1, True), (3, 3, 3, 2, 2, True), (2, 2, (3, 5), (1, 2), 1, True),
    (5, 2, 3, 1, 1, True), (2, 4, 3, 1, 1, False), (3, 3, 3, 3, 1, False)])
def test_stride_one_vjp_as_a_convolution_matches_pytorch(Ci, Co, kernel, padding,
                                                         dilation, taken):
    # A stride-1 conv's input cotangent, computed as a convolution of the cotangent with
    # the flipped kernel where that gathers no more than col2im would add, equals
    # PyTorch's conv2d backward in float64; elsewhere (more output channels, padding past
    # the kernel's reach) the col2im path runs.
    import torch
    from fwdderiv.layers import Conv2d
    rng = np.random.default_rng(Ci * Co)
    conv = Conv2d(Ci, Co, kernel, padding=padding, dilation=dilation, seed=Ci)
    x = rng.normal(size=(2, Ci, 7, 8))
    y, cache = conv.forward(x)
    gy = rng.normal(size=(2, 3) + y.shape[1:])
    W = conv.weight.reshape(Co, -1)
    assert (conv._vjp_as_conv(gy.reshape((6,) + y.shape[1:]), cache[1], W) is not None) \
        == taken
    gx = conv.vjp(cache, gy)
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.conv2d(tx, torch.from_numpy(np.asarray(conv.weight, float)),
                                    padding=conv.padding, dilation=conv.dilation)
    ref = np.stack([torch.autograd.grad(ty, tx, torch.from_numpy(gy[:, j]),
                                        retain_graph=True)[0].numpy() for j in range(3)], 1)
    np.testing.assert_allclose(gx, ref, rtol=1e-12, atol=1e-13)
