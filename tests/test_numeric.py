"""The finite-difference oracle itself, on functions with known derivatives."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fwdderiv.numeric import gradient_fd, jacobian_fd


@given(st.integers(0, 1000), st.sampled_from(["central", "forward"]))
def test_jacobian_of_a_linear_map_is_its_matrix(seed, method):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, 4))
    x = rng.normal(size=(2, 4))
    J = jacobian_fd(lambda v: v @ A.T, x, method=method)
    tol = 1e-8 if method == "central" else 1e-6
    np.testing.assert_allclose(J, np.broadcast_to(A, (2, 3, 4)), atol=tol)


def test_central_is_second_order_and_forward_first_order():
    x = np.array([[0.7]])
    exact = np.cos(0.7)
    central = jacobian_fd(np.sin, x, method="central")[0, 0, 0]
    forward = jacobian_fd(np.sin, x, method="forward")[0, 0, 0]
    assert abs(central - exact) < 1e-10
    assert 1e-10 < abs(forward - exact) < 1e-7


def test_image_shapes_and_float32_input_is_computed_in_float64():
    x = np.random.default_rng(0).random((2, 1, 3, 3)).astype(np.float32)
    J = jacobian_fd(lambda v: (v ** 2).reshape(v.shape[0], -1)[:, :2], x)
    assert J.shape == (2, 2, 1, 3, 3) and J.dtype == np.float64
    np.testing.assert_allclose(J[0, 1, 0, 0, 1], 2 * float(x[0, 0, 0, 1]), rtol=1e-8)


def test_gradient_of_a_scalar_function():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    g = gradient_fd(lambda v: float((v ** 3).sum()), x)
    np.testing.assert_allclose(g, 3 * x ** 2, rtol=1e-8)
    assert x.tolist() == [[1.0, -2.0], [0.5, 3.0]]   # the input is not modified


def test_unknown_method():
    with pytest.raises(ValueError, match="'central' or 'forward'"):
        jacobian_fd(np.sin, np.zeros((1, 1)), method="backward")
