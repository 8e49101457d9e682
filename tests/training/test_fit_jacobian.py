"""fit(..., jacobian_reg=...): one step is exactly SGD on cross-entropy + lambda * penalty;
training with the penalty lowers the Jacobian norm; bad arguments."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.datasets import load_dataset
from fwdderiv.regularization import jacobian_norm, jacobian_penalty
from fwdderiv.training import fit, loss_and_grads
from fwdderiv.training.loop import limited_threads


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds.x_train[:300], ds.y_train[:300], ds.x_test[:200]


def net64(seed=0):
    return fd.models.mlp(in_shape=(1, 8, 8), hidden=(16,), seed=seed)


@pytest.mark.parametrize("method", ["output", "input", "exact"])
def test_one_step_is_sgd_on_the_regularised_loss(digits, method):
    x, y = digits[0][:20], digits[1][:20]
    lam, lr = 0.7, 0.1
    net, ref = net64(), net64()
    fit(net, x, y, epochs=1, batch_size=20, lr=lr, momentum=0.0, seed=5, progress=False,
        num_threads=1, jacobian_reg=lam, jacobian_method=method, jacobian_proj=2)
    order = np.random.default_rng(5).permutation(20)
    xb, yb = x[order], y[order]
    _, g_ce = loss_and_grads(ref, xb, yb)
    with limited_threads(1):
        _, g_j = jacobian_penalty(ref, xb, method=method, n_proj=2,
                                  seed=np.random.default_rng([5, 12]))
    for k, params in enumerate(ref.params):
        for name, w in params.items():
            expected = w - lr * (g_ce[k][name] + lam * g_j[k][name])
            np.testing.assert_allclose(net.params[k][name], expected, rtol=1e-5, atol=1e-6)


def test_penalty_lowers_the_jacobian_norm_and_is_reported(digits):
    x, y, xt = digits
    nets = {}
    for lam in (0.0, 1.0):
        net = net64()
        hist = fit(net, x, y, epochs=3, batch_size=20, lr=0.05, seed=1, progress=False,
                   num_threads=1, jacobian_reg=lam)
        nets[lam] = net
        assert len(hist.jacobian) == (3 if lam else 0)
    with limited_threads(1):
        ref, reg = (jacobian_norm(nets[lam], xt).mean() for lam in (0.0, 1.0))
    assert reg < 0.7 * ref, (reg, ref)


@pytest.mark.parametrize("kwargs, match", [
    (dict(jacobian_reg=-1.0), r"jacobian_reg \(lambda\) as a finite number >= 0, got -1.0"),
    (dict(jacobian_reg=1.0, jacobian_method="frob"), "jacobian_method in 'exact'"),
    (dict(jacobian_reg=1.0, jacobian_proj=0), "jacobian_proj as an integer >= 1, got 0"),
])
def test_bad_arguments(digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(net64(), digits[0][:4], digits[1][:4], epochs=1, progress=False, **kwargs)
