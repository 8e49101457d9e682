"""The paper's measures on hand-made crafting results."""
import numpy as np
import pytest

from fwdderiv.attacks import (PAPER_HARDNESS_UPSILONS, hardness, hardness_budget_approximation,
                              hardness_matrix, hardness_matrix_budget_approximation,
                              mean_distortion, source_target_matrices, source_target_matrix,
                              success_curve, success_rate, wilson_interval)

SRC = np.array([0, 0, 0, 1, 1, 2])
TGT = np.array([1, 1, 2, 0, 0, 1])
OK = np.array([True, False, True, True, True, False])
DIST = np.array([0.02, 0.145, 0.04, 0.01, 0.03, 0.14])


def test_rates_and_means():
    assert success_rate(OK) == pytest.approx(4 / 6)
    assert mean_distortion(DIST) == pytest.approx(DIST.mean())
    assert mean_distortion(DIST, OK) == pytest.approx((0.02 + 0.04 + 0.01 + 0.03) / 4)
    assert np.isnan(success_rate([])) and np.isnan(mean_distortion(DIST, np.zeros(6, bool)))


def test_source_target_matrices():
    M = source_target_matrices(SRC, TGT, OK, DIST, 3)
    np.testing.assert_array_equal(M["count"], [[0, 2, 1], [2, 0, 0], [0, 1, 0]])
    sr = M["success_rate"]
    assert sr[0, 1] == 0.5 and sr[0, 2] == 1 and sr[1, 0] == 1 and sr[2, 1] == 0
    assert np.isnan(sr[0, 0]) and np.isnan(sr[1, 2])
    assert M["distortion_all"][0, 1] == pytest.approx((0.02 + 0.145) / 2)
    assert M["distortion_successful"][0, 1] == pytest.approx(0.02)
    assert np.isnan(M["distortion_successful"][2, 1])
    # The overall rate is the count-weighted mean of the matrix.
    w = M["count"]
    assert np.nansum(sr * w) / w.sum() == pytest.approx(success_rate(OK))
    with pytest.raises(ValueError, match="classes in"):
        source_target_matrix(SRC, TGT, OK, 2)


def test_success_curve_counts_successes_within_each_budget():
    tau = success_curve(OK, DIST, [0.0, 0.015, 0.03, 0.145])
    np.testing.assert_allclose(tau, [0, 1 / 6, 3 / 6, 4 / 6])


def test_budget_approximation_is_the_trapezoid_area_of_budget_against_success():
    u = np.array([0.0, 0.02, 0.04])
    ok = np.array([True, True, False, True])
    d = np.array([0.01, 0.03, 0.04, 0.02])
    tau = np.array([0.0, 0.5, 0.75])
    expected = ((tau[1] - tau[0]) * (u[1] + u[0]) / 2 + (tau[2] - tau[1]) * (u[2] + u[1]) / 2
                + (1 - tau[2]) * u[2])  # the failure is charged the largest budget
    assert hardness_budget_approximation(ok, d, u) == pytest.approx(expected)
    # Integration by parts: Upsilon_max minus the area under tau(Upsilon).
    assert hardness_budget_approximation(ok, d, u) == pytest.approx(u[-1] - np.trapezoid(tau, u))
    # Needing more distortion for the same success makes a pair harder.
    assert hardness_budget_approximation(ok, d * 1.9, u) > hardness_budget_approximation(ok, d, u)
    H = hardness_matrix_budget_approximation(SRC, TGT, OK, DIST, 3, np.linspace(0, 0.145, 11))
    assert np.isnan(H[0, 0]) and H[2, 1] == pytest.approx(0.145)  # never succeeded
    assert 0 < H[1, 0] < H[0, 1] < 0.145
    with pytest.raises(ValueError, match="increasing"):
        hardness_budget_approximation(ok, d, [0.1, 0.05])


def test_paper_hardness_from_runs_at_a_grid_of_budgets_by_hand():
    """Three runs (Upsilon 1%, 2%, 4%) of pair (0 -> 1) with 4 rows and pair (1 -> 0) with
    2 rows; distortions are measured per run, as the paper's Sec. V-B uses them."""
    src = np.array([0, 0, 0, 0, 1, 1])
    tgt = np.array([1, 1, 1, 1, 0, 0])
    ok = np.array([[1, 0, 0, 0, 0, 0],
                   [1, 1, 0, 0, 1, 0],
                   [1, 1, 1, 0, 1, 1]], bool)
    dist = np.array([[0.010, 0.010, 0.010, 0.010, 0.005, 0.010],
                     [0.010, 0.020, 0.020, 0.020, 0.015, 0.020],
                     [0.010, 0.020, 0.040, 0.040, 0.015, 0.030]])
    # Pair (0, 1): tau = 1/4, 2/4, 3/4; eps = 0.01, 0.015, (0.01 + 0.02 + 0.04) / 3.
    e3 = 0.07 / 3
    inner01 = 0.25 * (0.01 + 0.015) / 2 + 0.25 * (0.015 + e3) / 2
    h01 = 0.25 * 0.01 + inner01 + 0.25 * e3          # closed at tau = 0 and tau = 1
    # Pair (1, 0): no success in run 1 (left out); tau = 1/2, 1; eps = 0.015, 0.0225.
    inner10 = 0.5 * (0.015 + 0.0225) / 2
    h10 = 0.5 * 0.015 + inner10
    hm = hardness_matrix(src, tgt, ok, dist, 2, min_success=0.5)
    assert hm.matrix[0, 1] == pytest.approx(h01, rel=1e-12)
    assert hm.matrix[1, 0] == pytest.approx(h10, rel=1e-12)
    assert np.isnan(hm.matrix[0, 0]) and np.isnan(hm.distortion[0, 1, 0])
    np.testing.assert_allclose(hm.success_rate[:, 0, 1], [0.25, 0.5, 0.75])
    np.testing.assert_allclose([hm.reached_low[0, 1], hm.reached_high[0, 1]], [0.25, 0.75])
    np.testing.assert_allclose([hm.reached_low[1, 0], hm.reached_high[1, 0]], [0.0, 1.0])
    # The sum over the measured runs only (closed=False) is the paper's sum as printed.
    assert hardness([0.25, 0.5, 0.75], [0.01, 0.015, e3], closed=False) == \
        pytest.approx(inner01)
    assert hardness([0.25, 0.5, 0.75], [0.01, 0.015, e3]) == pytest.approx(h01)
    assert np.isnan(hardness([0.5], [0.01], closed=False))
    assert hardness([0.5], [0.01]) == pytest.approx(0.01)
    # With the default 90% threshold pair (0, 1), which reached 75%, is masked.
    default = hardness_matrix(src, tgt, ok, dist, 2)
    assert default.masked[0, 1] and np.isnan(default.matrix[0, 1])
    assert default.unmasked[0, 1] == pytest.approx(h01)
    assert not default.masked[1, 0] and default.matrix[1, 0] == pytest.approx(h10)
    # The paper's grid: seven increasing budgets below Upsilon = 14.5%.
    assert len(PAPER_HARDNESS_UPSILONS) == 7 and max(PAPER_HARDNESS_UPSILONS) < 0.145
    assert np.all(np.diff(PAPER_HARDNESS_UPSILONS) > 0)
    with pytest.raises(ValueError, match="one entry per run"):
        hardness([0.1, 0.2], [0.01])
    with pytest.raises(ValueError, match="min_success"):
        hardness_matrix(src, tgt, ok, dist, 2, min_success=0)


def _runs(*pairs):
    """Rows and per-run outcomes for synthetic pairs: each pair is (source, target,
    success of shape (R, n), distortion of shape (R, n))."""
    src = np.concatenate([np.full(np.shape(ok)[1], s) for s, _, ok, _ in pairs])
    tgt = np.concatenate([np.full(np.shape(ok)[1], t) for _, t, ok, _ in pairs])
    ok = np.concatenate([np.asarray(ok, bool) for *_, ok, _ in pairs], axis=1)
    dist = np.concatenate([np.asarray(d, float) for *_, d in pairs], axis=1)
    return src, tgt, ok, dist


def test_hardness_cannot_rank_a_rarely_successful_pair_as_easy():
    """Five budgets, ten rows per pair. (0 -> 1) succeeds on every row from the first
    budget at 3% distortion; (0 -> 2) succeeds on 4 of 10 rows at every budget, at 1%;
    (1 -> 0) fails at every budget; (1 -> 2) jumps from 0% to 100% between the first two
    budgets, at 2%."""
    R, n = 5, 10
    easy_ok = np.ones((R, n))
    rare_ok = np.tile(np.arange(n) < 4, (R, 1))
    jump_ok = np.vstack([np.zeros((1, n)), np.ones((R - 1, n))])
    src, tgt, ok, dist = _runs(
        (0, 1, easy_ok, np.full((R, n), 0.03)), (0, 2, rare_ok, np.full((R, n), 0.01)),
        (1, 0, np.zeros((R, n)), np.full((R, n), 0.05)),
        (1, 2, jump_ok, np.full((R, n), 0.02)))
    hm = hardness_matrix(src, tgt, ok, dist, 3)
    # The sum over measured runs alone would call the rare pair (and the jump) easiest.
    assert hardness(hm.success_rate[:, 0, 2], hm.distortion[:, 0, 2], closed=False) == 0
    assert hardness(hm.success_rate[:, 1, 2], hm.distortion[:, 1, 2], closed=False) == 0
    # Closed and masked: the rare pair is masked, shows its 40%, and is not ranked.
    assert hm.masked[0, 2] and np.isnan(hm.matrix[0, 2])
    assert hm.reached_high[0, 2] == pytest.approx(0.4)
    # A pair that fails at every budget: masked, no value at all, reached 0%.
    assert hm.masked[1, 0] and np.isnan(hm.matrix[1, 0]) and np.isnan(hm.unmasked[1, 0])
    assert hm.reached_high[1, 0] == 0
    # The jump scores its distortion, not zero; the easy pair its 3%.
    assert hm.matrix[1, 2] == pytest.approx(0.02)
    assert hm.matrix[0, 1] == pytest.approx(0.03)
    # Pairs without rows are neither masked nor valued.
    assert not hm.masked[2, 0] and np.isnan(hm.matrix[2, 0]) and np.isnan(hm.reached_high[2, 0])


def test_hardness_grows_with_the_distortion_needed_at_every_success_level():
    """Two pairs with the same success curve; one needs twice the distortion at every
    run, so it is twice as hard; adding 1% at every run adds 1% (H averages the
    distortion over success levels)."""
    tau = np.array([0.1, 0.5, 0.95])
    eps = np.array([0.01, 0.02, 0.04])
    assert hardness(tau, 2 * eps) == pytest.approx(2 * hardness(tau, eps))
    assert hardness(tau, eps + 0.01) == pytest.approx(hardness(tau, eps) + 0.01)


@pytest.mark.parametrize("k, n, low, high", [
    # scipy.stats.binomtest(k, n).proportion_ci(method="wilson"), z = 1.959963984540054
    (0, 10, 0.0, 0.27753279986288926), (5, 10, 0.236593090512564, 0.7634069094874361),
    (10, 10, 0.7224672001371109, 1.0), (97, 100, 0.9154806357094724, 0.9897454759759611),
    (1, 3, 0.06149194472039626, 0.7923403991979523)])
def test_wilson_interval_known_values(k, n, low, high):
    got = wilson_interval(k, n, z=1.959963984540054)
    assert got == pytest.approx((low, high), abs=1e-12)
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-4)   # z = 1.96


def test_wilson_interval_arrays_empty_cells_and_errors():
    low, high = wilson_interval(np.array([[0, 5], [3, 0]]), np.array([[10, 10], [3, 0]]))
    assert low.shape == (2, 2) and np.isnan(low[1, 1]) and np.isnan(high[1, 1])
    assert low[0, 1] == pytest.approx(0.2366, abs=1e-4) and high[1, 0] == 1.0
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(11, 10)
