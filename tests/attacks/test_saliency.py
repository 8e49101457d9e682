"""Saliency maps (eqs. 8 and 9) and the adversarial distance, from the forward derivative."""
import numpy as np
import pytest

from fwdderiv.attacks import (adversarial_distance, adversarial_distance_from_map,
                              forward_derivative, saliency_from_jacobian, saliency_map,
                              target_terms)


def _eq8_eq9_loops(J, t, increasing):
    n, k, m = J.shape
    S = np.zeros((n, m))
    for s in range(n):
        for i in range(m):
            a = J[s, t[s], i]
            b = sum(J[s, j, i] for j in range(k) if j != t[s])
            if increasing and not (a < 0 or b > 0):
                S[s, i] = a * abs(b)
            if not increasing and not (a > 0 or b < 0):
                S[s, i] = abs(a) * b
    return S


@pytest.mark.parametrize("increasing", [True, False])
def test_maps_match_the_equations_written_as_loops(increasing):
    rng = np.random.default_rng(0)
    J = rng.standard_normal((3, 4, 7))
    t = np.array([0, 3, 1])
    S = saliency_from_jacobian(J, t, increasing)
    np.testing.assert_allclose(S, _eq8_eq9_loops(J, t, increasing), rtol=1e-12)
    assert (S >= 0).all() and (S > 0).any()


def test_target_terms_split_target_and_others():
    J = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    alpha, beta = target_terms(J, [1, 2])
    np.testing.assert_array_equal(alpha, [J[0, 1], J[1, 2]])
    np.testing.assert_array_equal(beta, [J[0, 0] + J[0, 2], J[1, 0] + J[1, 1]])


def test_softmax_output_gives_beta_equal_minus_alpha(digits, digits_net):
    x = digits.x_test[:3].astype(np.float64)
    _, J = forward_derivative(digits_net, x)
    alpha, beta = target_terms(J, [1, 2, 3])
    np.testing.assert_allclose(beta, -alpha, atol=1e-12)


def test_map_from_network_is_shaped_like_input_and_uses_forward_mode(digits, digits_net):
    x = digits.x_test[:4].astype(np.float64)
    t = np.array([0, 1, 2, 3])
    S = saliency_map(digits_net, x, t)
    assert S.shape == x.shape
    J = digits_net.jacobian(x).reshape(4, 10, -1)
    np.testing.assert_allclose(S.reshape(4, -1), saliency_from_jacobian(J, t, softmax=True),
                               rtol=1e-12)


def test_logits_option_differentiates_net_without_softmax(digits, digits_net):
    x = digits.x_test[:2].astype(np.float64)
    z, J = forward_derivative(digits_net, x, logits=True)
    np.testing.assert_allclose(z, digits_net[:-1](x))
    np.testing.assert_allclose(J, digits_net[:-1].jacobian(x).reshape(2, 10, -1))
    with pytest.raises(ValueError, match="ending in Softmax"):
        forward_derivative(digits_net[:-1], x, logits=True)


def test_adversarial_distance_counts_zero_saliency_features(digits, digits_net):
    S = np.array([[0.0, 1.0, 0.0, 2.0]])
    assert adversarial_distance_from_map(S)[0] == 0.5
    x = digits.x_test[:2].astype(np.float64)
    A = adversarial_distance(digits_net, x, [4, 5])
    S = saliency_map(digits_net, x, [4, 5])
    np.testing.assert_array_equal(A, 1 - (S.reshape(2, -1) > 0).mean(1))
    assert ((A > 0) & (A < 1)).all()


def test_target_errors():
    J = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"targets in \[0, 3\)"):
        target_terms(J, [0, 3])
    with pytest.raises(TypeError, match="integer class"):
        target_terms(J, [0.0, 1.0])
    with pytest.raises(ValueError, match="one target per sample"):
        target_terms(J, [0, 1, 2])


@pytest.mark.parametrize("logits", [False, True])
def test_two_vjps_give_the_same_terms_as_the_forward_derivative(digits, digits_net, logits):
    from fwdderiv.attacks import target_terms_vjp
    x = digits.x_test[:5].astype(np.float64)
    t = np.array([0, 3, 5, 7, 9])
    y, J = forward_derivative(digits_net, x, logits=logits)
    y2, alpha, beta = target_terms_vjp(digits_net, x, t, logits=logits)
    a_ref, b_ref = target_terms(J, t)
    np.testing.assert_allclose(y2, y, rtol=1e-12)
    np.testing.assert_allclose(alpha, a_ref, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(beta, b_ref, rtol=1e-9, atol=1e-12)
