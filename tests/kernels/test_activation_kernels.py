"""The one-pass rectifier kernel against NumPy: values, slopes, NaN, infinities, signed
zeros, non-contiguous and empty inputs, both float types."""
import numpy as np
import pytest

from fwdderiv.kernels.activation import relu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_equals_numpy_on_special_values_and_strided_input(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 6, 5)).astype(dtype)
    x.flat[:6] = [np.nan, -0.0, 0.0, -np.inf, np.inf, 1e-45]
    x = x[:, ::2, :, 1:]                                   # not contiguous
    y, slope = relu(x)
    assert y.shape == slope.shape == x.shape and y.dtype == slope.dtype == dtype
    np.testing.assert_array_equal(y, np.maximum(x, 0))     # NaN stays NaN
    # PyTorch's convention: relu'(0) = 0, a NaN passes the derivative through
    np.testing.assert_array_equal(slope, np.where(x > 0, 1, np.where(np.isnan(x), 1, 0)))
    assert not np.signbit(y[x == 0]).any()                 # -0.0 comes out as 0.0


def test_relu_of_an_empty_array():
    y, slope = relu(np.zeros((2, 0, 3)))
    assert y.shape == slope.shape == (2, 0, 3)
