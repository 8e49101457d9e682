"""The pair search against Algorithm 3 written out pair by pair."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from fwdderiv.attacks import best_pairs
from .jsma_reference import brute_force_pair


def _problem(draw, n_max=3, m_max=12):
    n = draw(st.integers(1, n_max))
    m = draw(st.integers(2, m_max))
    # A coarse grid of values makes ties and sign-boundary cases (A == 0) common.
    vals = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 3.0])
    a = draw(arrays(np.float64, (n, m), elements=vals))
    b = draw(arrays(np.float64, (n, m), elements=vals))
    d = draw(arrays(bool, (n, m)))
    return a, b, d


@st.composite
def problems(draw):
    return _problem(draw)


@settings(max_examples=150, deadline=None)
@given(problems(), st.booleans(), st.sampled_from(["numba", "numpy"]),
       st.sampled_from([None, 1, 200, 5000]))
def test_matches_brute_force(prob, increasing, method, max_memory):
    a, b, d = prob
    p, q, score = best_pairs(a, b, d, increasing, method=method, max_memory=max_memory)
    for s in range(a.shape[0]):
        ref = brute_force_pair(a[s], b[s], d[s], increasing)
        assert (p[s], q[s]) == ref
        if ref[0] >= 0:
            A = a[s, ref[0]] + a[s, ref[1]]
            B = b[s, ref[0]] + b[s, ref[1]]
            assert score[s] == -(A * B) > 0
        else:
            assert score[s] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("increasing", [True, False])
def test_random_real_values_all_methods_agree(dtype, increasing):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 60)).astype(dtype)
    b = rng.standard_normal((4, 60)).astype(dtype)
    d = rng.random((4, 60)) > 0.2
    ref = np.array([brute_force_pair(a[s], b[s], d[s], increasing) for s in range(4)])
    for method, mem in [("numba", None), ("numpy", None), ("numpy", 1), ("numpy", 3000)]:
        p, q, _ = best_pairs(a, b, d, increasing, method=method, max_memory=mem)
        np.testing.assert_array_equal(np.stack([p, q], 1), ref)


def test_ties_go_to_first_pair_and_signs_are_strict():
    a = np.array([[1.0, 1.0, 1.0, 1.0]])
    b = -a
    p, q, _ = best_pairs(a, b, np.ones((1, 4), bool))
    assert (p[0], q[0]) == (0, 1)
    # alpha sums to exactly 0 for every pair: no admissible pair.
    a0 = np.array([[1.0, -1.0]])
    for method in ("numba", "numpy"):
        p, q, s = best_pairs(a0, -a0, np.ones((1, 2), bool), method=method)
        assert (p[0], q[0], s[0]) == (-1, -1, 0)


def test_decreasing_uses_flipped_signs():
    # Feature 0 and 1 lower the target when increased: the decreasing search wants them.
    a = np.array([[-2.0, -1.0, 3.0]])
    b = np.array([[2.0, 1.0, -3.0]])
    p, q, _ = best_pairs(a, b, np.ones((1, 3), bool), increasing=False)
    assert (p[0], q[0]) == (0, 1)
    p, q, _ = best_pairs(a, b, np.ones((1, 3), bool), increasing=True)
    # (0, 2): A = 1, B = -1, score 1; (1, 2): A = 2, B = -2, score 4; (0, 1) fails A > 0.
    assert (p[0], q[0]) == (1, 2)


def test_numpy_search_stays_within_memory_budget_on_a_12288_feature_input():
    rng = np.random.default_rng(0)
    m = 3 * 64 * 64
    a = rng.standard_normal((1, m)).astype(np.float32)
    b = rng.standard_normal((1, m)).astype(np.float32)
    d = np.ones((1, m), bool)
    budget = 16 * 2**20
    full = m * m * 4  # one float32 score matrix: 604 MB
    tracemalloc.start()
    try:
        p, q, _ = best_pairs(a, b, d, method="numpy", max_memory=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * budget < full
    p2, q2, _ = best_pairs(a, b, d, method="numba")
    assert (p[0], q[0]) == (p2[0], q2[0])


def test_errors_name_the_problem():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match="one shape"):
        best_pairs(a, a[:, :2], np.ones((2, 3), bool))
    with pytest.raises(TypeError, match="boolean domain"):
        best_pairs(a, a, np.ones((2, 3)))
    with pytest.raises(ValueError, match="method"):
        best_pairs(a, a, np.ones((2, 3), bool), method="torch")
