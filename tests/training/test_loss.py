"""Softmax cross-entropy: value, gradient against finite differences, stability."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fwdderiv.numeric import gradient_fd
from fwdderiv.training import log_softmax, softmax_cross_entropy


def naive_loss(z, y):
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


logits = arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(2, 6)),
                elements=st.floats(-8, 8))


@given(logits, st.data())
@settings(max_examples=40, deadline=None)
def test_gradient_matches_central_differences(z, data):
    y = np.array(data.draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=len(z),
                                    max_size=len(z))))
    loss, g = softmax_cross_entropy(z, y)
    g_fd = gradient_fd(lambda zz: softmax_cross_entropy(zz, y)[0], z)
    np.testing.assert_allclose(g, g_fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(loss, naive_loss(z, y), rtol=1e-12)


@given(logits, st.floats(-1e3, 1e3))
@settings(max_examples=25, deadline=None)
def test_invariant_to_a_shift_of_the_logits(z, c):
    y = np.zeros(len(z), dtype=np.int64)
    l0, g0 = softmax_cross_entropy(z, y)
    l1, g1 = softmax_cross_entropy(z + c, y)
    np.testing.assert_allclose(l1, l0, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g1, g0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite_and_exact(dtype):
    z = np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    y = np.array([0, 1, 2])
    loss, g = softmax_cross_entropy(z, y)
    # row 0: log p = 0; row 1: log p = -1e4; row 2: uniform, log p = -log 3
    assert loss == pytest.approx((0 + 1e4 + np.log(3)) / 3, rel=1e-6)
    assert g.dtype == dtype
    assert np.all(np.isfinite(g))
    expected = np.array([[0, 0, 0], [1, -1, 0], [1 / 3, 1 / 3, -2 / 3]]) / 3
    np.testing.assert_allclose(g, expected, atol=1e-7)
    np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-7)


def test_log_softmax_of_huge_logits_float32():
    lp = log_softmax(np.array([[3e4, 3e4 - 1, -3e4]], dtype=np.float32))
    assert lp.dtype == np.float32
    np.testing.assert_allclose(lp[0, :2], [-np.log1p(np.exp(-1)), -1 - np.log1p(np.exp(-1))],
                               rtol=1e-5)
    assert lp[0, 2] < -5e4 and np.isfinite(lp[0, 2])


def test_shape_errors_name_the_loss():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy expected logits of shape \(N, C\)"):
        softmax_cross_entropy(np.zeros((2, 3, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="labels of shape"):
        softmax_cross_entropy(np.zeros((2, 3)), np.zeros(3, dtype=int))
