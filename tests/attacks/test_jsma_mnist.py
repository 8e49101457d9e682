"""The paper's result on real data: JSMA against LeNet-5 trained on 9,000 MNIST images.

Issue 5's target: success rate at least 95% and mean distortion at most 5% (the paper:
97.10% and 4.02%, Upsilon = 14.5%). The full 1,000 x 9 run is `fwdderiv reproduce
--data-dir ... --samples 1000`; here a class-balanced subset of the held-out 1,000 keeps
the test to a couple of minutes.
"""
import numpy as np

from fwdderiv.attacks import expand_targets, jsma, mean_distortion, success_rate
from fwdderiv.commands.reproduce import select_sources
from fwdderiv.datasets import load_dataset
from fwdderiv.models.trained import pretrained

#: Held-out sources (x 9 targets each).
N_SOURCES = 30
#: The paper's forward derivative (tests/attacks/test_jsma.py checks that the "reverse"
#: and "vjp" modes craft the same samples).
MODE = "forward"


def test_lenet5_mnist_meets_the_paper_targets(mnist_dir):
    ds = load_dataset("mnist", data_dir=mnist_dir)
    assert ds.x_train.shape[0] == 9000 and ds.x_test.shape[0] == 1000
    net = pretrained("lenet5", "mnist", data_dir=mnist_dir, progress=False)
    pred = net(ds.x_test).argmax(axis=1)
    assert (pred == ds.y_test).mean() > 0.95
    idx = select_sources(ds.y_test, pred, N_SOURCES)
    x, src, tgt, _ = expand_targets(ds.x_test[idx], ds.y_test[idx], 10)
    res = jsma(net, x, tgt, theta=1.0, upsilon=0.145, mode=MODE)
    rate = success_rate(res.success)
    dist = mean_distortion(res.distortion, res.success)
    assert rate >= 0.95, f"success rate {rate:.4f}"
    assert dist <= 0.05, f"mean distortion of successful samples {dist:.4f}"
    assert res.n_changed.max() <= 113 and res.budget == 113
    # Every change saturates a pixel at 1 (theta = +1), nothing else moves.
    diff = res.x_adv != x
    assert np.all(res.x_adv[diff] == 1.0)
    np.testing.assert_array_equal(net(res.x_adv).argmax(1) == tgt, res.success)
