"""The one-pass row kernels behind the layer norm's and the softmax's tangents equal the
NumPy formulas they replace, in both dtypes, rows of any length, directions of any
count; and the layers that use them keep their derivatives (checked in tests/layers)."""
import numpy as np
import pytest

from fwdderiv.kernels.rows import softmax_jvp, standardise_jvp


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-14), (np.float32, 2e-6)])
@pytest.mark.parametrize("shape", [(3,), (4, 7), (2, 3, 5)])
def test_standardise_jvp_is_the_formula(dtype, tol, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2,) + shape).astype(dtype)
    dx = rng.standard_normal((2, 5) + shape).astype(dtype)
    xc = x - x.mean(axis=-1, keepdims=True)
    r = (1 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + dtype(1e-5))).astype(dtype)
    xhat = xc * r
    xh = xhat[:, None]
    expected = r[:, None] * (dx - dx.mean(axis=-1, keepdims=True)
                             - xh * (xh * dx).mean(axis=-1, keepdims=True))
    np.testing.assert_allclose(standardise_jvp(xhat, r, dx), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-14), (np.float32, 2e-6)])
@pytest.mark.parametrize("shape", [(1,), (4, 7), (2, 3, 5)])
def test_softmax_jvp_is_the_formula(dtype, tol, shape):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2,) + shape)
    y = (np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)).astype(dtype)
    dx = rng.standard_normal((2, 3) + shape).astype(dtype)
    expected = y[:, None] * (dx - (y[:, None] * dx).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(softmax_jvp(y, dx), expected, rtol=tol, atol=tol)
