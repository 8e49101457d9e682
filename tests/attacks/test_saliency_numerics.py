"""Saliency terms at tiny target probabilities, against exact (mpmath) arithmetic.

With a softmax output beta = -alpha exactly; summing the other rows cancels once F_t is
tiny, and -A * B underflows in float64 below F_t ~ 1e-154. The pair chosen from
fwdderiv's alpha and beta must be the pair that exact arithmetic chooses by the paper's
rule (Algorithm 3, beta summed over the other classes explicitly).
"""
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.attacks import best_pairs, forward_derivative, jsma, target_terms, target_terms_vjp

M, H, K = 10, 6, 4
#: Digits of the exact reference: beta cancels to F_t ~ 1e-300 from rows of order 1.
DPS = 340


def _net(seed, log10_ft, target):
    """Flatten -> Linear -> Tanh -> Linear -> Softmax whose output at x0 has
    F_target = 10**log10_ft (set through the target's bias)."""
    rng = np.random.default_rng(seed)
    l1, l2 = fd.Linear(M, H, seed=seed), fd.Linear(H, K, seed=seed + 1)
    l1.weight = rng.standard_normal((H, M))
    l1.bias = rng.standard_normal(H) * 0.1
    l2.weight = rng.standard_normal((K, H)) * 2
    l2.bias = np.zeros(K)
    net = fd.Sequential([fd.Flatten(), l1, fd.Tanh(), l2, fd.Softmax()])
    x0 = rng.random((1, 1, M))
    z = net[:-1](x0)[0]
    others = np.delete(z, target)
    lse = others.max() + np.log(np.exp(others - others.max()).sum())
    l2.bias[target] = lse + log10_ft * np.log(10) - z[target]
    return net, x0


def _exact_terms(net, x0, t):
    """alpha and beta in DPS-digit arithmetic, beta summed over the other rows."""
    with mpmath.workdps(DPS):
        return _exact_terms_body(net, x0, t)


def _exact_terms_body(net, x0, t):
    l1, l2 = net[1], net[3]
    x = [mpmath.mpf(float(v)) for v in x0.ravel()]
    pre = [mpmath.fsum(mpmath.mpf(float(l1.weight[h, i])) * x[i] for i in range(M))
           + mpmath.mpf(float(l1.bias[h])) for h in range(H)]
    a = [mpmath.tanh(p) for p in pre]
    z = [mpmath.fsum(mpmath.mpf(float(l2.weight[k, h])) * a[h] for h in range(H))
         + mpmath.mpf(float(l2.bias[k])) for k in range(K)]
    e = [mpmath.exp(v) for v in z]
    total = mpmath.fsum(e)
    F = [v / total for v in e]
    # dz_k/dx_i = sum_h W2[k,h] (1 - a_h^2) W1[h,i]; dF_j/dx_i = F_j (dz_j - sum_k F_k dz_k)
    dz = [[mpmath.fsum(mpmath.mpf(float(l2.weight[k, h])) * (1 - a[h] ** 2)
                       * mpmath.mpf(float(l1.weight[h, i])) for h in range(H))
           for i in range(M)] for k in range(K)]
    J = [[F[j] * (dz[j][i] - mpmath.fsum(F[k] * dz[k][i] for k in range(K)))
          for i in range(M)] for j in range(K)]
    alpha = J[t]
    beta = [mpmath.fsum(J[j][i] for j in range(K) if j != t) for i in range(M)]
    return F[t], alpha, beta


def _exact_pair(alpha, beta):
    """Algorithm 3 in exact arithmetic: best pair and the relative gap to the runner-up."""
    scores = []
    for p in range(M):
        for q in range(p + 1, M):
            A, B = alpha[p] + alpha[q], beta[p] + beta[q]
            if A > 0 and B < 0:
                scores.append((-(A * B), p, q))
    if not scores:
        return (-1, -1), mpmath.inf
    scores.sort(key=lambda s: -s[0])
    if len(scores) == 1:
        return scores[0][1:], mpmath.inf
    return scores[0][1:], (scores[0][0] - scores[1][0]) / scores[0][0]


@pytest.mark.parametrize("log10_ft", [-2, -20, -100, -200, -250, -300])
def test_pair_matches_exact_arithmetic_down_to_tiny_target_probability(log10_ft):
    compared = 0
    for seed in range(12):
        t = seed % K
        net, x0 = _net(seed, log10_ft, t)
        ft, a_ex, b_ex = _exact_terms(net, x0, t)
        assert abs(mpmath.log10(ft) - log10_ft) < 0.01
        with mpmath.workdps(DPS):
            (p_ex, q_ex), gap = _exact_pair(a_ex, b_ex)
        if gap < 1e-9:          # a near-tie float64 alpha cannot resolve: not a fair case
            continue
        compared += 1
        tt = np.array([t])
        dom = np.ones((1, M), bool)
        _, J = forward_derivative(net, x0)
        for alpha, beta in (target_terms(J, tt, softmax=True),
                            target_terms_vjp(net, x0, tt)[1:]):
            np.testing.assert_array_equal(beta, -alpha)
            p, q, _ = best_pairs(alpha, beta, dom)
            assert (p[0], q[0]) == (p_ex, q_ex), (seed, log10_ft)
        # The whole attack takes that pair first (a budget of one pair).
        if p_ex >= 0:
            for mode in ("forward", "vjp"):
                res = jsma(net, x0, tt, upsilon=2 / M, clip=(0.0, 2.0), mode=mode)
                moved = np.flatnonzero(res.x_adv.ravel() != x0.ravel())
                assert list(moved) == [p_ex, q_ex]
    assert compared >= 9


def test_explicit_sum_loses_the_pair_at_tiny_probability():
    """The failure the exact terms fix: at F_t = 1e-300 the explicit row sum of a float64
    Jacobian is noise (relative to alpha) and -A * B underflows."""
    net, x0 = _net(3, -300, 3)
    _, J = forward_derivative(net, x0)
    alpha = J[0, 3]
    naive = J[0, [0, 1, 2]].sum(axis=0)
    assert np.max(np.abs(naive + alpha)) > 1e3 * np.max(np.abs(alpha))
    a64 = np.float64(1e-300)
    assert -(a64 * -a64) == 0.0      # the score the pair search would compare


def _exact_sum(rows):
    return float(sum((Fraction(float(v)) for v in rows), Fraction(0)))


def test_non_softmax_beta_is_a_compensated_sum():
    rng = np.random.default_rng(0)
    n, k, m = 3, 6, 40
    J = rng.standard_normal((n, k, m)) * 10.0 ** rng.integers(-8, 16, (n, k, m))
    # Make the rows cancel: the last other row takes minus the sum of the rest, plus 1.
    t = np.array([0, 2, 5])
    for s in range(n):
        others = [j for j in range(k) if j != t[s]]
        J[s, others[-1]] = -J[s, others[:-1]].sum(axis=0) + rng.standard_normal(m)
    alpha, beta = target_terms(J, t)
    naive_err = compensated_err = 0.0
    for s in range(n):
        others = [j for j in range(k) if j != t[s]]
        for i in range(m):
            exact = _exact_sum(J[s, others, i])
            compensated_err = max(compensated_err, abs(beta[s, i] - exact) / abs(exact))
            naive_err = max(naive_err, abs(J[s, others, i].sum() - exact) / abs(exact))
    assert compensated_err < 1e-14
    assert naive_err > 1e-6          # the explicit sum does lose it on these rows
    assert not math.isnan(compensated_err)
