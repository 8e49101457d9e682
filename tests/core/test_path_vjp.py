"""``path_vjp``: reverse mode summed along straight paths (integrated gradients) equals
the weighted sum of plain VJPs at the points, on random graphs and on a LeNet-like chain
whose leading linear layers run at the ends of the paths only."""
import numpy as np
import pytest
from hypothesis import given, settings

import fwdderiv as fd
from fwdderiv.core.jacobian import linear_head
from fwdderiv.fusions import slope_pool
from fwdderiv.attribution import IntegratedGradients

from .test_graph import graphs


def reference(net, a, b, alphas, weights, gy):
    """The sum over the points, one plain vjp each."""
    return sum(w * net.vjp(a + al * (b - a), gy)[1] for al, w in zip(alphas, weights))


@settings(max_examples=25, deadline=None)
@given(graphs(kinks=True))
def test_random_graphs_equal_the_sum_of_vjps_at_the_points(case):
    net, x = case
    rng = np.random.default_rng(0)
    a = rng.normal(size=x.shape)
    alphas, weights = rng.random(5), rng.random(5)
    gy = rng.normal(size=(len(x), 2) + net.output_shape(x.shape[1:]))
    ref = reference(net, a, x, alphas, weights, gy)
    np.testing.assert_allclose(net.path_vjp(a, x, alphas, weights, gy), ref,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(net.path_vjp(a, x, alphas, weights, gy, steps=2), ref,
                               rtol=1e-9, atol=1e-12)


def lenet_like():
    return fd.Sequential([fd.Pad2d(1), fd.Conv2d(1, 3, 3, seed=1), fd.ReLU(),
                          fd.MaxPool2d(2), fd.Conv2d(3, 4, 3, seed=2), fd.ReLU(),
                          fd.Flatten(), fd.Linear(4 * 2 * 2, 5, seed=3), fd.Softmax()])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_linear_head_runs_at_the_ends_and_pulls_back_once(monkeypatch, dtype):
    net = lenet_like()
    rng = np.random.default_rng(1)
    x = rng.random((3, 1, 8, 8)).astype(dtype)
    b = (0.2 * rng.random((3, 1, 8, 8))).astype(dtype)
    alphas, weights = np.linspace(0.05, 0.95, 7), rng.random(7)
    gy = np.broadcast_to(np.eye(5, dtype=dtype), (3, 5, 5))
    ref = reference(net, b, x, alphas, weights, gy)
    conv, pool = net[1], net[3]
    seen, reduced = [], []
    forward, scatter = type(conv).forward, slope_pool.pool_scatter
    monkeypatch.setattr(conv, "forward", lambda h: seen.append(len(h)) or forward(conv, h),
                        raising=False)
    monkeypatch.setattr(slope_pool, "pool_scatter", lambda cache, gy, slope=None, weights=None:
                        (weights is not None and reduced.append(1)) or
                        scatter(cache, gy, slope, weights))
    got = net.path_vjp(b, x, alphas, weights, gy, steps=3)
    assert seen == [3, 3]            # the first conv saw the two ends, not 7 x 3 points
    assert len(reduced) == 3         # the pool summed each pass's points itself
    assert got.dtype == dtype
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(got, ref, **tol)


def test_integrated_gradients_through_path_vjp_equal_the_point_by_point_sum():
    # a network without path_vjp takes the point-by-point route: same attributions
    class Plain:
        def __init__(self, net):
            self.net = net

        def __getattr__(self, name):
            if name == "path_vjp":
                raise AttributeError(name)
            return getattr(self.net, name)

    net = lenet_like()
    x = np.random.default_rng(2).random((4, 1, 8, 8))
    for target in ("all", [0, 4, 2, 1]):
        np.testing.assert_allclose(
            IntegratedGradients(net).attribute(x, target=target, internal_batch_size=8),
            IntegratedGradients(Plain(net)).attribute(x, target=target),
            rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("kw, match", [
    (dict(end=np.zeros((2, 1, 8, 7))), "end of the shape of start"),
    (dict(weights=np.ones(3)), "alphas and weights"),
    (dict(alphas=[], weights=[]), "length >= 1"),
    (dict(steps=0), "steps"),
    (dict(gy=np.ones((2, 5, 4))), "gy"),
])
def test_bad_arguments_are_named(kw, match):
    net = lenet_like()
    args = dict(start=np.zeros((2, 1, 8, 8)), end=np.ones((2, 1, 8, 8)),
                alphas=np.ones(2), weights=np.ones(2), gy=np.ones((2, 1, 5)))
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        net.path_vjp(**args)


def test_a_batch_norm_in_training_form_ends_the_linear_start():
    # with batch statistics the layer is not affine per example: the points run through
    # it as a batch, as the point-by-point sum does with one batch of all points
    bn = fd.models.zoo._batchnorm(3, np.random.default_rng(3))
    net = fd.Sequential([fd.Conv2d(1, 3, 3, seed=1), bn, fd.ReLU(), fd.Flatten(),
                         fd.Linear(3 * 4 * 4, 2, seed=2)])
    assert linear_head(net) == 2
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 1, 6, 6)), rng.random((2, 1, 6, 6))
    alphas, weights = np.array([0.2, 0.7]), np.array([0.5, 0.5])
    gy = np.ones((2, 1, 2))
    bn.training = True
    try:
        points = np.concatenate([a + al * (b - a) for al in alphas])
        _, gx = net.vjp(points, np.concatenate([gy, gy]))
        ref = sum(w * gx[2 * s:2 * s + 2] for s, w in enumerate(weights))
        np.testing.assert_allclose(net.path_vjp(a, b, alphas, weights, gy), ref,
                                   rtol=1e-10, atol=1e-13)
    finally:
        del bn.training
