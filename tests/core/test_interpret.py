"""The interpreter's hooks that the second-order pass, the batch-statistics path and the
kink census run on: every value of a primal pass, a visit per node (forward and reverse),
extra cotangents entering inner values, and a reverse pass that nothing reaches."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.core.plan import without


def small_net(seed=0):
    return fd.Sequential([fd.Conv2d(1, 2, 3, seed=seed), fd.Tanh(), fd.MaxPool2d(2),
                          fd.Flatten(), fd.Linear(8, 3, seed=seed + 1)])


def data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 1, 6, 6)), rng


def test_every_value_and_visit_see_what_the_nodes_compute():
    net, (x, _) = small_net(), data()
    seen = []
    values, caches = net._primal(x, keep=True, every=True,
                                 visit=lambda k, node, xs: seen.append((k, xs[0])))
    assert len(values) == len(net) + 1 and len(caches) == len(net)
    np.testing.assert_array_equal(values[-1], net(x))
    for k, h in seen:
        np.testing.assert_array_equal(h, values[k])          # a chain: node k reads value k
    assert [k for k, _ in seen] == list(range(len(net)))


def test_extra_cotangent_of_an_inner_value_without_an_output_cotangent():
    """Only ``extra`` enters, at the Tanh's output: the nodes after it get no gradient,
    those before it the gradient of <g, tanh(conv(x))>."""
    net, (x, rng) = small_net(), data()
    _, caches = net.forward_cached(x)
    g = rng.normal(size=net[:2](x).shape)
    gx, grads = net.backward(caches, None, extra={"1": g})
    gx2, grads2 = net[:2].backward(net[:2].forward_cached(x)[1], g)
    np.testing.assert_allclose(gx, gx2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads[0]["weight"], grads2[0]["weight"], rtol=1e-12)
    assert grads[4] == {} and grads[2] == {}


def test_extra_cotangents_add_to_the_output_cotangent():
    net, (x, rng) = small_net(), data()
    y, caches = net.forward_cached(x)
    gy, g = rng.normal(size=y.shape), rng.normal(size=net[:1](x).shape)
    gx, grads = net.backward(caches, gy, extra={"0": g})
    gx_y, grads_y = net.backward(caches, gy)
    gx_g, grads_g = net.backward(caches, None, extra={"0": g})
    np.testing.assert_allclose(gx, gx_y + gx_g, rtol=1e-12, atol=1e-14)
    for k, params in enumerate(grads):
        for name, value in params.items():
            np.testing.assert_allclose(value, grads_y[k][name] + grads_g[k].get(name, 0),
                                       rtol=1e-5, atol=1e-6)      # float32 parameters


def test_extra_cotangent_inside_a_fused_step_runs_its_nodes_one_by_one():
    """Training fuses the Tanh into the max-pool's pull-back; a cotangent entering the
    Tanh's output (inside that step) still gets pulled back, as without the fusion."""
    net, (x, rng) = small_net(), data()
    y, caches = net.forward_cached(x)
    assert any(len(s.nodes) > 1 and 1 in s.nodes for s in net._reverse_plan(len(net),
                                                                            grads=True))
    gy, g = rng.normal(size=y.shape), rng.normal(size=net[:2](x).shape)
    gx, grads = net.backward(caches, gy, extra={"1": g})
    with without():
        gx_ref, grads_ref = net.backward(caches, gy, extra={"1": g})
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads[0]["weight"], grads_ref[0]["weight"], rtol=1e-12)


def test_extra_names_a_node():
    net, (x, _) = small_net(), data()
    _, caches = net.forward_cached(x)
    with pytest.raises(ValueError, match="extra names \\['conv'\\]"):
        net.backward(caches, None, extra={"conv": np.zeros((3, 2, 4, 4))})


def test_reverse_visit_sees_every_node_without_fusions():
    net, (x, rng) = small_net(), data()
    y, caches = net.forward_cached(x)
    seen = []
    net._pull(caches, rng.normal(size=(3, 2) + y.shape[1:]), fuse=False,
              visit=lambda k, node, g: seen.append(k))
    assert seen == list(range(len(net) - 1, -1, -1))
