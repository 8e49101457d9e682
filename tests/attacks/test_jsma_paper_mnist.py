"""``domain_policy="paper"`` against Algorithm 2 written out line by line, on real data:
LeNet-5 trained on 9,000 MNIST images, 20 held-out sources x 9 targets, theta = +1 and -1,
matched pick by pick and at the stop. Marked slow (about three minutes); CI runs it."""
import numpy as np
import pytest

from fwdderiv.attacks import expand_targets, jsma
from fwdderiv.commands.reproduce import select_sources
from fwdderiv.datasets import load_dataset
from fwdderiv.models.trained import pretrained

from .jsma_reference import all_pairs_at_once, brute_force_pair, paper_algorithm_2
from .test_jsma import _recording_picks

#: Held-out sources (x 9 targets each).
N_SOURCES = 20


def test_the_fast_pair_search_is_the_double_loop():
    rng = np.random.default_rng(3)
    for trial in range(200):
        m = int(rng.integers(2, 12))
        alpha = np.round(rng.normal(size=m), 1)          # ties on purpose
        beta = np.round(rng.normal(size=m), 1)
        domain = rng.random(m) < 0.8
        for increasing in (True, False):
            assert all_pairs_at_once(alpha, beta, domain, increasing) == \
                brute_force_pair(alpha, beta, domain, increasing)


@pytest.mark.slow
@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_paper_policy_is_algorithm_2_on_mnist(mnist_dir, theta, monkeypatch):
    ds = load_dataset("mnist", data_dir=mnist_dir)
    net = pretrained("lenet5", "mnist", data_dir=mnist_dir, progress=False)
    x64 = ds.x_test.astype(np.float64)
    idx = select_sources(ds.y_test, net(x64).argmax(axis=1), N_SOURCES)
    x, _, tgt, _ = expand_targets(x64[idx], ds.y_test[idx], 10)
    calls = _recording_picks(monkeypatch)
    stops = set()
    for s in range(len(x)):
        calls.clear()
        one = jsma(net, x[s:s + 1], tgt[s:s + 1], theta=theta, domain_policy="paper")
        ref, it, picks = paper_algorithm_2(net, x[s:s + 1], tgt[s], theta=theta,
                                           pair=all_pairs_at_once)
        assert [c[0] for c in calls if c[0][0] >= 0] == picks, f"row {s}"
        assert one.iterations[0] == it == len(picks)
        np.testing.assert_array_equal(one.x_adv[0], ref[0])
        stops.add("target" if one.success[0] else "max_iter" if it == 784 * 0.145 // 2
                  else "no pair")
    assert "target" in stops
