"""jacobian_norm: exact = sum of squares of the Jacobian; both estimators unbiased, with the
variance the theory gives divided by n_proj; on="logits"; bad input."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.layers.heads import logits_net
from fwdderiv.regularization import jacobian_norm, jacobian_penalty


def small_net(seed=0):
    layers = [fd.Conv2d(1, 3, 3, seed=seed), fd.Tanh(), fd.MaxPool2d(2), fd.Flatten(),
              fd.Linear(12, 5, seed=seed + 1), fd.Sigmoid(), fd.Linear(5, 4, seed=seed + 2),
              fd.Softmax()]
    for layer in layers:
        for name, value in layer.params.items():
            setattr(layer, name, value.astype(np.float64) * 2)
    return fd.Sequential(layers)


def test_exact_is_the_sum_of_squares_of_the_logit_jacobian():
    net, x = small_net(), np.random.default_rng(0).normal(size=(3, 1, 6, 6))
    J = fd.numeric.jacobian_fd(net[:-1], x)
    np.testing.assert_allclose(jacobian_norm(net, x), np.sum(J ** 2, axis=(1, 2, 3, 4)),
                               rtol=1e-7)
    Jp = net.jacobian(x)
    np.testing.assert_allclose(jacobian_norm(net, x, on="output"),
                               np.sum(Jp ** 2, axis=(1, 2, 3, 4)), rtol=1e-12)


def test_exact_uses_forward_mode_when_outputs_outnumber_inputs():
    net = fd.Sequential([fd.Linear(2, 7, seed=3), fd.Tanh(), fd.Linear(7, 6, seed=4)])
    x = np.random.default_rng(1).normal(size=(4, 2))
    J = net.jacobian(x, mode="reverse")
    np.testing.assert_allclose(jacobian_norm(net, x), np.sum(J ** 2, axis=(1, 2)), rtol=1e-5)
    value, _ = jacobian_penalty(net, x, method="exact")
    assert value == pytest.approx(0.5 * np.mean(np.sum(J.astype(float) ** 2, axis=(1, 2))),
                                  rel=1e-5)


def test_logits_net_drops_a_final_softmax_of_a_graph():
    net = fd.Graph([("fc", fd.Linear(3, 4), "input"), ("t", fd.Tanh(), "fc"),
                    ("fc2", fd.Linear(4, 3, seed=1), "t"), ("add", fd.Add(), ["fc2", "fc2"]),
                    ("sm", fd.LogSoftmax(), "add")])
    body = logits_net(net)
    assert isinstance(body, fd.Graph) and [n[0] for n in body.nodes] == ["fc", "t", "fc2", "add"]
    x = np.random.default_rng(0).normal(size=(2, 3))
    np.testing.assert_allclose(fd.LogSoftmax()(body(x)), net(x), rtol=1e-12)
    assert logits_net(body) is body


def _theory(J):
    """Per-example (exact, Var output estimator, Var input estimator) for n_proj = 1."""
    J = J.reshape(J.shape[0], J.shape[1], -1)
    C = J.shape[1]
    B = J @ J.transpose(0, 2, 1)                        # (N, C, C)
    tr, tr2 = np.trace(B, axis1=1, axis2=2), np.sum(B * B, axis=(1, 2))
    # v uniform on the C-sphere: E[(v'Bv)^2] = (tr(B)^2 + 2 tr(B^2)) / (C (C + 2))
    var_out = (2 * C * tr2 - 2 * tr ** 2) / (C + 2)
    var_in = 2 * tr2                                    # u ~ N(0, I): Var u'Au = 2 tr(A^2)
    return tr, var_out, var_in


@pytest.mark.parametrize("method", ["output", "input"])
def test_estimators_are_unbiased_and_their_variance_falls_as_one_over_n_proj(method):
    net, x = small_net(), np.random.default_rng(2).normal(size=(1, 1, 6, 6))
    exact, var_out, var_in = _theory(net[:-1].jacobian(x))
    var = (var_out if method == "output" else var_in)[0]
    M = 4000                        # independent draws: one example repeated M times
    xs = np.repeat(x, M, axis=0)
    for n_proj in (1, 4):
        est = jacobian_norm(net, xs, method=method, n_proj=n_proj, seed=n_proj)
        se = est.std(ddof=1) / np.sqrt(M)
        assert abs(est.mean() - exact[0]) < 4 * se
        # the sample variance of M draws is within ~10% of var / n_proj here
        assert est.var(ddof=1) == pytest.approx(var / n_proj, rel=0.2)


def test_same_seed_same_estimate_and_penalty_is_half_the_mean():
    net, x = small_net(), np.random.default_rng(3).normal(size=(4, 1, 6, 6))
    for method in ("output", "input"):
        a = jacobian_norm(net, x, method=method, n_proj=3, seed=7)
        np.testing.assert_array_equal(a, jacobian_norm(net, x, method=method, n_proj=3, seed=7))
        value, _ = jacobian_penalty(net, x, method=method, n_proj=3, seed=7)
        assert value == pytest.approx(0.5 * a.mean(), rel=1e-12)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n_proj=0), ValueError, "n_proj must be an integer >= 1"),
    (dict(n_proj=1.5), ValueError, "n_proj"),
    (dict(method="hutchinson"), ValueError, "method must be one of 'exact', 'output', 'input'"),
    (dict(on="probs"), ValueError, "on must be 'logits'"),
])
def test_bad_arguments(kwargs, error, match):
    net, x = small_net(), np.zeros((1, 1, 6, 6))
    for f in (jacobian_norm, jacobian_penalty):
        with pytest.raises(error, match=match):
            f(net, x, **kwargs)


def test_network_without_a_class_axis():
    net = fd.Sequential([fd.Conv2d(1, 2, 3), fd.ReLU()])
    with pytest.raises(ValueError, match=r"vector of C class scores, got output shape "
                                         r"\(N, 2, 4, 4\); end the network with fd.Flatten"):
        jacobian_norm(net, np.zeros((1, 1, 6, 6)))
    with pytest.raises(TypeError, match="fwdderiv.Sequential or fwdderiv.Graph"):
        jacobian_penalty(lambda x: x, np.zeros((1, 3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        jacobian_norm(small_net(), np.zeros((1, 1, 6, 6), dtype=np.int64))
