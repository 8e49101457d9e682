"""Every fusion rule against the steps it replaces: on random weights and inputs (float64),
the network's Jacobian with the rule equals the one planned without it, and the rule's
step really is in the plan."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fwdderiv as fd
from fwdderiv.core.plan import without


def _bn(c, rng):
    bn = fd.BatchNorm2d(c)
    bn.weight, bn.bias = rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    bn.running_mean, bn.running_var = rng.normal(size=c), rng.uniform(0.5, 2, c)
    return bn


def networks(rng, c, size):
    """rule name -> (network, input shape, modes in which the rule applies)."""
    pool_net = fd.Sequential([fd.Conv2d(c, 4, 3, seed=1), fd.ReLU(), fd.MaxPool2d(2),
                              fd.Flatten(), fd.Linear(4 * ((size - 2) // 2) ** 2, 3, seed=2)])
    head = (size - 2) // 2
    lenet_like = fd.Sequential([fd.Conv2d(c, 3, 3, seed=1), fd.ReLU(), fd.MaxPool2d(2),
                                fd.Conv2d(3, 6, head, seed=2), fd.ReLU(), fd.Flatten(),
                                fd.Linear(6, 5, seed=3), fd.ReLU(), fd.Linear(5, 3, seed=4)])
    return {
        "conv + pool": (pool_net, (c, size, size), ("forward", "reverse")),
        "slope into pool": (fd.Sequential([fd.ReLU(), fd.MaxPool2d(2), fd.Flatten()]),
                            (c, size, size), ("forward", "reverse")),
        "windows into head": (lenet_like, (c, size, size), ("forward",)),
        "slope into linear": (fd.models.mlp((c, size, size), hidden=(7, 6), seed=3)[:-1],
                              (c, size, size), ("forward",)),
        "batchnorm into conv": (fd.Sequential([fd.Conv2d(c, 4, 3, padding=1, seed=1),
                                               _bn(4, rng), fd.Tanh(), fd.Flatten()]),
                                (c, size, size), ("forward-dense", "reverse")),
    }


RULES = ["conv + pool", "slope into pool", "windows into head", "slope into linear",
         "batchnorm into conv"]


def _jacobian(net, x, mode):
    if mode == "forward-dense":
        return net.jacobian(x, windowed=False)
    return net.jacobian(x, mode=mode)


def _plan_rules(net, shape, mode):
    plan = net.plan(shape, mode="reverse" if mode == "reverse" else "forward",
                    windowed=mode != "forward-dense", dtype=np.float64)
    return {step.rule for step in plan.steps}


@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), c=st.integers(1, 3), size=st.sampled_from([8, 10]),
       n=st.integers(1, 3))
def test_fused_equals_unfused(rule, seed, c, size, n):
    rng = np.random.default_rng(seed)
    net, shape, modes = networks(rng, c, size)[rule]
    x = rng.normal(size=(n,) + shape)
    for mode in modes:
        assert any(r.startswith(rule) for r in _plan_rules(net, shape, mode)), (rule, mode)
        fused = _jacobian(net, x, mode)
        with without(rule):
            assert not any(r.startswith(rule) for r in _plan_rules(net, shape, mode))
            plain = _jacobian(net, x, mode)
        scale = max(np.abs(plain).max(), 1e-300)
        np.testing.assert_allclose(fused, plain, rtol=1e-11, atol=1e-13 * scale)


def test_the_path_sum_rule_equals_summing_the_points():
    """Integrated gradients' path: a max-pool reading the first linear run's value sums
    the points' rows in its own scatter."""
    rng = np.random.default_rng(0)
    net = fd.Sequential([fd.Conv2d(1, 3, 3, seed=1), fd.MaxPool2d(2), fd.Flatten(),
                         fd.Linear(27, 4, seed=2)])
    a, b = rng.normal(size=(2, 1, 8, 8)), rng.normal(size=(2, 1, 8, 8))
    alphas, weights = np.linspace(0.1, 0.9, 5), rng.random(5)
    gy = np.broadcast_to(np.eye(4), (2, 4, 4))
    fused = net.path_vjp(a, b, alphas, weights, gy)
    with without("slope into pool"):
        plain = net.path_vjp(a, b, alphas, weights, gy)
    np.testing.assert_allclose(fused, plain, rtol=1e-12, atol=1e-14)


def test_explain_names_the_fused_steps_of_lenet5():
    text = fd.models.lenet5().plan((1, 32, 32)).explain()
    assert text.count("conv + pool (windows)") == 2
    assert "windows into head, live columns" in text
    assert "windowed" in text and "dense" in text
    reverse = fd.models.lenet5().plan((1, 32, 32), mode="reverse").explain()
    assert reverse.count("conv + pool (scatter)") == 2


def test_explain_says_where_a_layer_without_a_window_rule_ends_the_windowed_run():
    net = fd.Sequential([fd.Conv2d(1, 4, 3), fd.ReLU(), fd.LayerNorm([4, 10, 10]),
                         fd.Conv2d(4, 2, 3), fd.Flatten()])
    plan = net.plan((1, 12, 12))
    assert "before node '2' (LayerNorm): it has no window rule" in plan.explain()
    assert [s.windowed for s in plan.steps if s.nodes][:3] == [True, True, False]


class _Weighted(fd.Layer):
    """y = w * x with a parameter w, but neither param_vjp nor jvp_grad."""
    linear = True
    param_names = ("weight",)

    def __init__(self):
        self.weight = np.ones(1)

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return x * self.weight, None

    def jvp(self, cache, dx):
        return dx * self.weight

    def vjp(self, cache, gy):
        return gy * self.weight


def test_a_layer_with_parameters_and_no_param_vjp_or_jvp_grad_cannot_be_registered():
    for build in (lambda: fd.Sequential([_Weighted()]),
                  lambda: fd.Graph([("w", _Weighted(), "input")])):
        with pytest.raises(TypeError, match="does not implement param_vjp and jvp_grad"):
            build()
