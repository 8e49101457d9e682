"""The penalty's parameter gradient while BatchNorm trains: the per-example Jacobian holds
the minibatch's statistics fixed, and the gradient follows them as they move with the
parameters (fwdderiv.regularization.batch_stats.add_statistics_path)."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.regularization import jacobian_penalty
from fwdderiv.regularization.batch_stats import add_statistics_path, frozen_batch_statistics
from fwdderiv.training.loop import _jacobian_step


def net_with_batchnorms(seed=0, eps=1e-5):
    rng = np.random.default_rng(seed)
    net = fd.Sequential([fd.Conv2d(1, 3, 3, seed=seed), fd.BatchNorm2d(3, eps=eps), fd.Tanh(),
                         fd.Conv2d(3, 2, 3, seed=seed + 1), fd.BatchNorm2d(2, eps=eps),
                         fd.Flatten(), fd.Linear(8, 6, seed=seed + 2),
                         fd.BatchNorm1d(6, eps=eps), fd.Tanh(), fd.Linear(6, 3, seed=seed + 3),
                         fd.Softmax()])
    for layer in net.layers:
        for name, value in layer.params.items():
            setattr(layer, name, value.astype(np.float64) + 0.3 * rng.normal(size=value.shape))
        for name, value in layer.buffers.items():
            setattr(layer, name, value.astype(np.float64))
    return net


def penalty(net, x):
    """theta -> F(theta, S(theta)): the exact penalty, statistics of this batch."""
    with frozen_batch_statistics(net, x):
        return jacobian_penalty(net, x, method="exact", on="logits")[0]


def test_gradient_through_the_statistics_matches_central_differences():
    net = net_with_batchnorms()
    x = np.random.default_rng(1).normal(size=(5, 1, 6, 6))
    _, grads = _jacobian_step(net, x, "exact", 1, np.random.default_rng(0))
    rng = np.random.default_rng(2)
    checked = 0
    for k, layer in enumerate(net.layers):
        for name, value in layer.params.items():
            for i in rng.choice(value.size, size=min(3, value.size), replace=False):
                h = 1e-6
                old = value.flat[i]
                value.flat[i] = old + h
                up = penalty(net, x)
                value.flat[i] = old - h
                down = penalty(net, x)
                value.flat[i] = old
                fd_ = (up - down) / (2 * h)
                assert grads[k][name].flat[i] == pytest.approx(fd_, rel=1e-5, abs=1e-8), \
                    (k, name, i)
                checked += 1
    assert checked >= 20


def test_rescaling_the_weights_before_a_batchnorm_does_not_move_the_penalty():
    """The collapse this path prevents: with the statistics held fixed in the gradient too,
    <grad, W> for the conv before a BatchNorm is far from zero, though scaling W (and its
    bias) changes nothing the network computes; with the path it is zero (up to eps)."""
    net = net_with_batchnorms(eps=1e-12)
    x = np.random.default_rng(3).normal(size=(6, 1, 6, 6))
    with frozen_batch_statistics(net, x):
        _, frozen = jacobian_penalty(net, x, method="exact", on="logits")
        frozen = [dict(g) for g in frozen]
    _, full = _jacobian_step(net, x, "exact", 1, np.random.default_rng(0))
    conv = net.layers[0]
    radial = lambda g: sum(float(np.sum(g[n] * getattr(conv, n))) for n in ("weight", "bias"))  # noqa: E731
    scale = float(np.sqrt(sum(np.sum(g * g) for g in full[0].values())))
    assert abs(radial(frozen[0])) > 0.1 * scale         # the frozen gradient shrinks W
    assert abs(radial(full[0])) < 1e-6 * scale


def test_without_batchnorm_nothing_is_added():
    net = fd.Sequential([fd.Linear(4, 3), fd.Tanh(), fd.Linear(3, 2)])
    x = np.random.default_rng(4).normal(size=(3, 4))
    _, grads = jacobian_penalty(net, x, method="exact")
    before = [{k: v.copy() for k, v in g.items()} for g in grads]
    after = add_statistics_path(net, x, grads)
    for a, b in zip(after, before):
        for key in b:
            np.testing.assert_array_equal(a[key], b[key])


def test_the_training_step_pulls_both_terms_back_in_one_pass():
    """fit's step (one reverse pass for the cross-entropy and the statistics path) gives
    the cross-entropy's gradient plus lambda times the penalty's, computed apart."""
    from fwdderiv.training.loop import _penalised_step, loss_and_grads, train_mode
    net = net_with_batchnorms(seed=4)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 1, 6, 6)), rng.integers(0, 3, 6)
    state = [(b.running_mean.copy(), b.running_var.copy())
             for b in net.layers if hasattr(b, "running_var")]
    loss, z, value, grads = _penalised_step(net, x, y, 0.7, "output", 2,
                                            np.random.default_rng(9))
    for b, (m, v) in zip([b for b in net.layers if hasattr(b, "running_var")], state):
        assert not np.allclose(b.running_mean, m)        # one training step's update
        b.running_mean, b.running_var = m, v
    with train_mode(net):
        loss2, ce = loss_and_grads(net, x, y)
    jac, jgrads = _jacobian_step(net, x, "output", 2, np.random.default_rng(9))
    assert loss == pytest.approx(loss2, rel=1e-12) and value == pytest.approx(jac, rel=1e-12)
    for k, layer in enumerate(net.layers):
        for name in layer.params:
            np.testing.assert_allclose(grads[k][name], ce[k][name] + 0.7 * jgrads[k][name],
                                       rtol=1e-9, atol=1e-12, err_msg=f"{k} {name}")
