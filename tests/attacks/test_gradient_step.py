"""FGSM/FGM and PGD: invariants, ART on the same weights, and bad input."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.attacks import (clip_eta, fast_gradient_method, optimize_linear,
                              projected_gradient_descent)


@pytest.fixture(scope="module")
def case():
    net = fd.models.digits_net(seed=3)
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 8, 8))
    return net, x


def _norms(d):
    flat = d.reshape(len(d), -1)
    return np.abs(flat).max(1), np.abs(flat).sum(1), np.sqrt((flat ** 2).sum(1))


def test_fgsm_step_has_norm_eps_where_not_clipped_and_respects_bounds(case):
    net, x = case
    eps = 0.25
    x_adv = fast_gradient_method(net, x, eps, np.inf, clip_min=0.0, clip_max=1.0)
    d = x_adv - x
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    g = fd.loss_gradient(net, x, net(x).argmax(1))
    free = (x + eps <= 1) & (x - eps >= 0) & (g != 0)
    np.testing.assert_allclose(np.abs(d[free]), eps, rtol=0, atol=4e-16)
    assert (np.sign(d[free]) == np.sign(g[free])).all()      # ascends the loss
    unclipped = fast_gradient_method(net, x, eps, np.inf)
    np.testing.assert_allclose(_norms(unclipped - x)[0], eps, rtol=1e-15)


@pytest.mark.parametrize("norm, k", [(2, 2), (1, 1)])
def test_fgm_l2_and_l1_steps_have_norm_eps(case, norm, k):
    net, x = case
    d = fast_gradient_method(net, x, 0.7, norm) - x
    np.testing.assert_allclose(_norms(d)[k], 0.7, rtol=1e-12)


def test_fgm_increases_the_loss_and_targeted_decreases_the_target_loss(case):
    net, x = case
    y = net(x).argmax(1)
    _, before = fd.loss_gradient(net, x, y, return_loss=True)
    _, after = fd.loss_gradient(net, fast_gradient_method(net, x, 0.05, 2), y,
                                return_loss=True)
    assert after > before
    t = (y + 1) % 10
    _, tb = fd.loss_gradient(net, x, t, return_loss=True)
    _, ta = fd.loss_gradient(net, fast_gradient_method(net, x, 0.05, 2, y=t, targeted=True),
                             t, return_loss=True)
    assert ta < tb


def test_optimize_linear_l1_splits_ties_and_l2_of_zero_is_zero():
    g = np.array([[3.0, -3.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(optimize_linear(g, 2.0, 1), [[1.0, -1.0, 0.0], [0, 0, 0]])
    np.testing.assert_array_equal(optimize_linear(g[1:], 2.0, 2), [[0.0, 0.0, 0.0]])


@pytest.mark.parametrize("norm", [np.inf, 2, 1])
def test_clip_eta_is_the_projection_onto_the_ball(norm):
    rng = np.random.default_rng(norm if norm != np.inf else 7)
    eta = rng.normal(size=(20, 5))
    p = clip_eta(eta, norm, 0.5)
    lengths = np.linalg.norm(p, ord=norm, axis=1)
    assert (lengths <= 0.5 + 1e-12).all()
    inside = np.linalg.norm(eta, ord=norm, axis=1) <= 0.5
    np.testing.assert_array_equal(p[inside], eta[inside])
    # a projection: no other point of the ball is closer (random points of the ball)
    for i in np.nonzero(~inside)[0][:5]:
        q = clip_eta(rng.normal(size=(200, 5)) * 3, norm, 0.5)
        assert (np.linalg.norm(q - eta[i], axis=1) >= np.linalg.norm(p[i] - eta[i]) - 1e-12).all()


@pytest.mark.parametrize("norm, eps, eps_iter", [(np.inf, 0.1, 0.03), (2, 0.8, 0.3),
                                                 (1, 2.0, 1.0)])
def test_pgd_stays_in_the_ball_and_the_clip_range(case, norm, eps, eps_iter):
    net, x = case
    x_adv = projected_gradient_descent(net, x, eps, eps_iter, 5, norm, clip_min=0.0,
                                       clip_max=1.0, seed=0)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (np.linalg.norm((x_adv - x).reshape(len(x), -1), ord=norm, axis=1)
            <= eps * (1 + 1e-12)).all()
    y = net(x).argmax(1)
    _, before = fd.loss_gradient(net, x, y, return_loss=True)
    _, after = fd.loss_gradient(net, x_adv, y, return_loss=True)
    assert after > before
    same = projected_gradient_descent(net, x, eps, eps_iter, 5, norm, clip_min=0.0,
                                      clip_max=1.0, seed=0)
    np.testing.assert_array_equal(x_adv, same)


def test_pgd_without_steps_or_random_start_returns_x(case):
    net, x = case
    np.testing.assert_array_equal(projected_gradient_descent(net, x, 0.1, 0.01, 0, np.inf,
                                                             rand_init=False), x)


def _art_classifier(net, x):
    import torch
    from art.estimators.classification import PyTorchClassifier
    from benchmarks.peers import to_torch

    # ART computes in float32 whatever it is given; logits, as its cross-entropy expects
    model = to_torch(net[:-1], "float32")
    return PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(),
                             input_shape=x.shape[1:], nb_classes=10, clip_values=(0.0, 1.0))


def _agree_float32(net, x, t, ours, got):
    """Both in float32: equal to rounding, except that a sign step may differ where the
    float32 gradients of the two libraries round to opposite signs (|g| near 0)."""
    assert ours.dtype == np.float32
    diff = np.abs(ours - got)
    assert (diff > 1e-6).mean() < 0.002
    np.testing.assert_allclose(np.median(diff), 0, atol=1e-7)


@pytest.mark.parametrize("norm", [np.inf, 2])
@pytest.mark.parametrize("targeted", [False, True])
def test_fgm_equals_art(case, norm, targeted):
    from art.attacks.evasion import FastGradientMethod

    net, x = case
    clf = _art_classifier(net, x)
    t = (net(x).argmax(1) + 3) % 10 if targeted else None
    art = FastGradientMethod(clf, norm=norm, eps=0.2, targeted=targeted, batch_size=64)
    onehot = None if t is None else np.eye(10)[t]
    x = x.astype(np.float32)
    got = art.generate(x, y=onehot)
    ours = fast_gradient_method(net, x, 0.2, norm, y=t, targeted=targeted, clip_min=0.0,
                                clip_max=1.0)
    _agree_float32(net, x, t, ours, got)


@pytest.mark.parametrize("norm, eps, eps_iter", [(np.inf, 0.1, 0.02), (2, 0.6, 0.2)])
def test_pgd_equals_art_without_random_start(case, norm, eps, eps_iter):
    from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_numpy \
        import ProjectedGradientDescentNumpy

    net, x = case
    clf = _art_classifier(net, x)
    art = ProjectedGradientDescentNumpy(clf, norm=norm, eps=eps, eps_step=eps_iter,
                                        max_iter=6, num_random_init=0, batch_size=64,
                                        verbose=False)
    x = x.astype(np.float32)
    got = art.generate(x)
    ours = projected_gradient_descent(net, x, eps, eps_iter, 6, norm, rand_init=False,
                                      clip_min=0.0, clip_max=1.0)
    _agree_float32(net, x, None, ours, got)


@pytest.mark.parametrize("call, err, match", [
    (lambda n, x: fast_gradient_method(n, x, -0.1, np.inf), ValueError,
     "fast_gradient_method expected eps as a finite number >= 0"),
    (lambda n, x: fast_gradient_method(n, x, 0.1, 3), ValueError,
     "fast_gradient_method expected norm np.inf, 1 or 2"),
    (lambda n, x: fast_gradient_method(n, x, 0.1, np.inf, y=np.array([0, 12])), ValueError,
     r"expected y in \[0, 10\)"),
    (lambda n, x: fast_gradient_method(n, x, 0.1, np.inf, targeted=True), ValueError,
     "targeted=True needs y"),
    (lambda n, x: fast_gradient_method(n, x, 0.1, np.inf, clip_min=1, clip_max=0),
     ValueError, "clip_min <= clip_max"),
    (lambda n, x: projected_gradient_descent(n, x, 0.1, -1, 3, np.inf), ValueError,
     "projected_gradient_descent expected eps_iter"),
    (lambda n, x: projected_gradient_descent(n, x, 0.1, 0.01, 2.5, np.inf), ValueError,
     "expected nb_iter as an integer"),
    (lambda n, x: fast_gradient_method(n, x.astype(int), 0.1, np.inf), TypeError,
     "float32 or float64"),
])
def test_bad_input(case, call, err, match):
    net, x = case
    with pytest.raises(err, match=match):
        call(net, x[:2])


def test_nan_image(case):
    net, x = case
    x = x[:2].copy()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="projected_gradient_descent expected finite values"):
        projected_gradient_descent(net, x, 0.1, 0.01, 2, np.inf)


def test_untargeted_fgsm_labels_and_differentiates_from_one_forward_pass(case):
    net, x = case
    first = net.layers[0]
    calls = []
    plain = first.forward

    def counted(*args):
        calls.append(1)
        return plain(*args)

    first.forward = counted
    try:
        got = fast_gradient_method(net, x, 0.1, np.inf)
        assert len(calls) == 1      # the predictions come from the gradient's own pass
    finally:
        del first.forward
    y = np.argmax(net.forward(x), axis=1)
    np.testing.assert_array_equal(got, fast_gradient_method(net, x, 0.1, np.inf, y=y))
