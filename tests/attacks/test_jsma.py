"""Invariants of the JSMA crafting algorithm (Papernot et al. 2016, Algorithm 2)."""
import importlib
import math

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.attacks import expand_targets, jsma, jsma_untargeted
from .jsma_reference import naive_jsma


@pytest.fixture(scope="module")
def batch(digits, digits_net):
    x = digits.x_test[:24].astype(np.float64)
    t = (digits.y_test[:24] + 1 + np.arange(24) % 9) % 10
    return x, t


def _check_invariants(x, res, theta, clip, upsilon):
    lo, hi = clip
    n = x.shape[0]
    x0 = x.reshape(n, -1)
    xa = res.x_adv.reshape(n, -1)
    changed = xa != x0
    # Only features in the initial search domain move, each by theta (clipped) per pick.
    start_domain = x0 < hi if theta > 0 else x0 > lo
    assert not (changed & ~start_domain).any()
    steps = (xa - x0)[changed] / theta
    k = np.ceil(steps - 1e-9)
    np.testing.assert_allclose(xa[changed], np.clip(x0[changed] + k * theta, lo, hi))
    assert (k >= 1).all()
    assert ((xa >= lo) & (xa <= hi)).all()
    # The distortion budget holds and the counts are consistent.
    budget = math.floor(upsilon * x0.shape[1] + 1e-9)
    np.testing.assert_array_equal(res.n_changed, changed.sum(1))
    assert (res.n_changed <= budget).all() and res.budget == budget
    np.testing.assert_allclose(res.distortion, res.n_changed / x0.shape[1])
    assert (res.n_changed <= 2 * res.iterations).all()


@pytest.mark.parametrize("theta, clip, policy", [
    (1.0, (0.0, 1.0), "saturated"), (-1.0, (0.0, 1.0), "saturated"),
    (0.3, (0.0, 1.0), "saturated"), (0.3, (0.0, 1.0), "picked"),
    (-0.4, (0.0, 1.0), "saturated"), (1.0, (0.0, 0.8), "saturated")])
def test_invariants_hold(digits_net, batch, theta, clip, policy):
    x, t = batch
    x = np.clip(x, *clip)
    res = jsma(digits_net, x, t, theta=theta, clip=clip, domain_policy=policy, upsilon=0.3)
    _check_invariants(x, res, theta, clip, 0.3)
    pred = digits_net(res.x_adv).argmax(1)
    np.testing.assert_array_equal(res.predictions, pred)
    np.testing.assert_array_equal(res.success, pred == t)
    assert res.success.any()
    if policy == "picked":
        # A picked feature leaves the domain: it moved exactly once.
        d = (res.x_adv - x).reshape(len(x), -1)
        moved = d != 0
        np.testing.assert_allclose(d[moved], np.clip(x.reshape(len(x), -1) + theta, *clip)[moved]
                                   - x.reshape(len(x), -1)[moved])
        assert (res.n_changed == 2 * res.iterations).all()


def test_saturated_policy_matches_its_loop_written_out(digits_net, batch):
    x, t = batch
    x, t = x[:8], t[:8]
    for logits in (False, True):
        res = jsma(digits_net, x, t, logits=logits)
        for s in range(len(x)):
            ref, it = naive_jsma(digits_net, x[s:s + 1], t[s], logits=logits)
            np.testing.assert_array_equal(res.x_adv[s:s + 1], ref)
            assert res.iterations[s] == it


def test_sample_already_classified_as_target_is_returned_unchanged(digits_net, batch):
    x, _ = batch
    pred = digits_net(x).argmax(1)
    res = jsma(digits_net, x, pred)
    np.testing.assert_array_equal(res.x_adv, x)
    assert res.success.all() and (res.iterations == 0).all() and (res.n_changed == 0).all()
    np.testing.assert_array_equal(res.original, pred)


def test_budget_stops_crafting(digits_net, batch):
    x, t = batch
    res = jsma(digits_net, x, t, upsilon=4 / 64)  # two pairs at most
    assert res.budget == 4 and (res.iterations <= 2).all() and (res.n_changed <= 4).all()
    hit_budget = ~res.success & (res.n_changed == 4)
    assert hit_budget.any()
    res0 = jsma(digits_net, x, t, upsilon=1 / 64)  # not even one pair fits
    np.testing.assert_array_equal(res0.x_adv, x)


def test_empty_domain_stops_crafting(digits_net):
    x = np.ones((2, 1, 8, 8))  # every feature saturated: nothing can increase
    res = jsma(digits_net, x, [0, 1], theta=1.0)
    np.testing.assert_array_equal(res.x_adv, x)
    assert (res.iterations == 0).all()


@pytest.mark.parametrize("pair_method", ["numba", "numpy"])
def test_batched_equals_one_by_one(digits_net, batch, pair_method):
    x, t = batch
    res = jsma(digits_net, x, t, batch_size=len(x), pair_method=pair_method,
               max_memory=2**16)
    for s in range(0, len(x), 5):
        one = jsma(digits_net, x[s:s + 1], t[s:s + 1], pair_method=pair_method)
        np.testing.assert_array_equal(one.x_adv[0], res.x_adv[s])
        assert one.iterations[0] == res.iterations[s]
    res3 = jsma(digits_net, x, t, batch_size=7)
    np.testing.assert_array_equal(res3.x_adv, res.x_adv)


def test_runs_on_a_3x64x64_input_with_a_memory_budget():
    # 12,288 features: one float32 pair-score matrix would take 604 MB.
    net = fd.Sequential([fd.Conv2d(3, 2, 8, stride=8, seed=0), fd.Tanh(), fd.Flatten(),
                         fd.Linear(128, 10, seed=1), fd.Softmax()])
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, 64, 64)).astype(np.float32) * 0.5
    t = (net(x).argmax(1) + 1) % 10
    res = jsma(net, x, t, upsilon=4 / 12288, pair_method="numpy", max_memory=32 * 2**20,
               compute_dtype=None)
    _check_invariants(x, res, 1.0, (0.0, 1.0), 4 / 12288)
    assert res.budget == 4 and res.iterations[0] == 2 and res.n_changed[0] == 4


def test_progress_callback_sees_every_sample(digits_net, batch):
    x, t = batch
    calls = []
    res = jsma(digits_net, x, t, batch_size=10, progress=lambda *a: calls.append(a))
    done = [c[0] for c in calls]
    assert done == sorted(set(done)) and done[-1] == 24 and len(done) > 3
    assert all(c[1] == 24 for c in calls)
    wins = [c[2] for c in calls]
    assert wins == sorted(wins) and wins[-1] == res.success.sum() > 0


def test_expand_targets_and_untargeted_choice_are_explicit(digits_net, batch):
    x, _ = batch
    x = x[:3]
    src = digits_net(x).argmax(1)
    xr, sr, tr, idx = expand_targets(x, src, 10)
    assert xr.shape == (27,) + x.shape[1:]
    np.testing.assert_array_equal(idx, np.repeat([0, 1, 2], 9))
    assert not (sr == tr).any() and all(len(set(tr[idx == i])) == 9 for i in range(3))
    res = jsma_untargeted(digits_net, x, src, upsilon=0.3)
    full = jsma(digits_net, xr, tr, upsilon=0.3)
    for i in range(3):
        ok = full.success[idx == i]
        if ok.any():
            best = full.n_changed[idx == i][ok].min()
            assert res.success[i] and res.n_changed[i] == best
            assert res.targets[i] == tr[idx == i][ok][full.n_changed[idx == i][ok] == best][0]


def test_input_errors(digits_net, batch):
    x, t = batch
    with pytest.raises(TypeError, match="float ndarray"):
        jsma(digits_net, (x * 16).astype(np.int64), t)
    with pytest.raises(ValueError, match="theta as a finite nonzero number"):
        jsma(digits_net, x, t, theta=0)
    with pytest.raises(ValueError, match="inside clip"):
        jsma(digits_net, x + 2, t)
    with pytest.raises(ValueError, match="domain_policy"):
        jsma(digits_net, x, t, domain_policy="never")
    with pytest.raises(ValueError, match="upsilon"):
        jsma(digits_net, x, t, upsilon=14.5)


@pytest.mark.parametrize("mode", ["reverse", "vjp"])
def test_jacobian_modes_craft_the_same_samples(digits_net, batch, mode):
    x, t = batch
    ref = jsma(digits_net, x, t)
    res = jsma(digits_net, x, t, mode=mode)
    np.testing.assert_array_equal(res.x_adv, ref.x_adv)
    np.testing.assert_array_equal(res.iterations, ref.iterations)


def _recording_picks(monkeypatch):
    """Record the pairs jsma picks: one list of (p, q) per call of the pair search."""
    module = importlib.import_module("fwdderiv.attacks.jsma")
    calls, search = [], module.best_pairs

    def spy(*args, **kwargs):
        p, q, score = search(*args, **kwargs)
        calls.append(list(zip(p.tolist(), q.tolist())))
        return p, q, score

    monkeypatch.setattr(module, "best_pairs", spy)
    return calls


@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_paper_domain_policy_matches_algorithm_2_as_printed(digits_net, batch, theta,
                                                            monkeypatch):
    from .jsma_reference import paper_algorithm_2
    x, t = batch
    bound = 1.0 if theta > 0 else 0.0
    assert ((x.reshape(len(x), -1) == bound).sum(1) > 0).sum() >= 20  # saturated features
    calls = _recording_picks(monkeypatch)
    idle_picks, stops = 0, set()
    # M = 64: max_iter = floor(64 * Upsilon / 2) = 2 and 4.
    for upsilon, max_iter in ((0.07, 2), (0.145, 4)):
        res = jsma(digits_net, x, t, theta=theta, upsilon=upsilon, domain_policy="paper")
        for s in range(len(x)):
            calls.clear()
            one = jsma(digits_net, x[s:s + 1], t[s:s + 1], theta=theta, upsilon=upsilon,
                       domain_policy="paper")
            ref, it, picks = paper_algorithm_2(digits_net, x[s:s + 1], t[s], theta=theta,
                                               upsilon=upsilon)
            # Pick by pick (a search finding no pair ends both loops) and at the stop.
            assert [c[0] for c in calls if c[0][0] >= 0] == picks
            assert one.iterations[0] == res.iterations[s] == it == len(picks)
            np.testing.assert_array_equal(one.x_adv[0], ref[0])
            np.testing.assert_array_equal(res.x_adv[s], ref[0])
            idle_picks += sum(x[s].reshape(-1)[i] == bound for pq in picks for i in pq)
            stops.add("target" if res.success[s] else
                      "max_iter" if it == max_iter else "no pair")
        assert (res.n_changed <= 2 * res.iterations).all()
        assert (res.iterations <= max_iter).all()
        _check_invariants(x, res, theta, (0.0, 1.0), upsilon)
    # Picks of features already at the bound happened (charged as iterations, changing
    # nothing); runs stopped both at the target and at max_iter.
    assert idle_picks > 0 and {"target", "max_iter"} <= stops
