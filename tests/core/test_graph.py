"""Graphs: random DAGs with residual additions, concatenations, products, slices and
padding; forward mode = reverse mode = central differences; errors that name the node."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fwdderiv as fd

C, S = 2, 6                      # every value of the random graphs is (C, S, S)

SMOOTH = {
    "conv": lambda r: fd.Conv2d(C, C, 3, padding=1, seed=int(r.integers(1000))),
    "tanh": lambda r: fd.Tanh(),
    "sigmoid": lambda r: fd.Sigmoid(),
    "scale": lambda r: fd.Scale(float(r.uniform(-2, 2))),
    "avgpool": lambda r: fd.AvgPool2d(3, stride=1, padding=1),
    "bn": lambda r: fd.models.zoo._batchnorm(C, r),
    "gelu": lambda r: fd.GELU(approximate=str(r.choice(["none", "tanh"]))),
    "silu": lambda r: fd.SiLU(), "mish": lambda r: fd.Mish(), "softplus": lambda r: fd.Softplus(),
    "elu": lambda r: fd.ELU(), "identity": lambda r: fd.Identity(),
    "groupnorm": lambda r: fd.GroupNorm(2, C), "layernorm": lambda r: fd.LayerNorm([S, S]),
    "reflect": lambda r: fd.Conv2d(C, C, 3, padding=1, padding_mode="reflect", seed=3),
}
KINKED = {"relu": lambda r: fd.ReLU(), "maxpool": lambda r: fd.MaxPool2d(3, stride=1, padding=1),
          "leaky": lambda r: fd.LeakyReLU(0.1), "hardtanh": lambda r: fd.Hardtanh(),
          "relu6": lambda r: fd.ReLU6(), "hardswish": lambda r: fd.Hardswish(),
          "adaptivemax": lambda r: fd.AdaptiveMaxPool2d(S)}


@st.composite
def graphs(draw, kinks):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    ops = {**SMOOTH, **(KINKED if kinks else {})}
    nodes, values, used = [], ["input"], {"input"}
    for i in range(draw(st.integers(2, 9))):
        kind = draw(st.sampled_from(sorted(ops) + ["add", "mul", "cat", "shortcut"]))
        name, src = f"n{i}", draw(st.sampled_from(values))
        if kind in ("add", "mul"):
            other = draw(st.sampled_from(values))
            nodes.append((name, fd.Add() if kind == "add" else fd.Mul(), [src, other]))
            used |= {src, other}
        elif kind == "cat":                  # concatenate, then a 1x1 conv back to C
            other = draw(st.sampled_from(values))
            nodes.append((name + "c", fd.Concat(1), [src, other]))
            nodes.append((name, fd.Conv2d(2 * C, C, 1, seed=i), name + "c"))
            used |= {src, other}
        elif kind == "shortcut":             # option A: subsample, pad back (here spatially)
            nodes.append((name + "s", fd.Slice([0, 0], [S, S], [2, 3], [2, 2]), src))
            nodes.append((name, fd.Pad((0, S // 2, S // 2, 0)), name + "s"))
            used.add(src)
        else:
            nodes.append((name, ops[kind](rng), src))
            used.add(src)
        values.append(name)
    leaves = [v for v in values if v not in used]
    if len(leaves) > 1:
        nodes.append(("sum", fd.Add(), leaves))
    nodes += [("flat", fd.Flatten(), nodes[-1][0]), ("fc", fd.Linear(C * S * S, 3, seed=7), "flat")]
    if draw(st.booleans()):
        nodes.append(("out", fd.Softmax(), "fc"))
    return fd.Graph(nodes), rng.normal(size=(2, C, S, S))


@settings(max_examples=25, deadline=None)
@given(graphs(kinks=False))
def test_smooth_graphs_match_central_differences(case):
    net, x = case
    J = net.jacobian(x)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(net.jacobian(x, mode="reverse"), J, rtol=1e-10, atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(graphs(kinks=True))
def test_forward_reverse_dense_and_trace_agree(case):
    net, x = case
    J = net.jacobian(x)
    np.testing.assert_allclose(net.jacobian(x, mode="reverse"), J, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net.jacobian(x, windowed=False), J, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net.jacobian(x, max_memory=80_000), J, rtol=1e-10, atol=1e-13)
    trace = net.jacobian(x, intermediates=True)
    # the trace records every node, so it runs without the fusions (a BatchNorm folded
    # into its convolution rounds differently): equal to float64 rounding, not bit for bit
    np.testing.assert_allclose(trace.jacobian, J, rtol=1e-13, atol=1e-15)
    # jvp and vjp are the same linear map
    rng = np.random.default_rng(0)
    v, u = rng.normal(size=(2, 3) + x.shape[1:]), rng.normal(size=(2, 4) + J.shape[1:-3])
    _, dy = net.jvp(x, v)
    _, gx = net.vjp(x, u)
    np.testing.assert_allclose(np.sum(u[:, :, None] * dy[:, None]),
                               np.sum(gx[:, :, None] * v[:, None]), rtol=1e-10)


def test_backward_gives_parameter_gradients_of_every_node():
    rng = np.random.default_rng(0)
    net = fd.models.resnet20(shortcut="B", seed=0)
    x = rng.random((2, 3, 32, 32))
    y, caches = net.forward_cached(x)
    gy = rng.normal(size=y.shape)
    gx, grads = net.backward(caches, gy)
    assert len(grads) == len(net.layers)
    k = [name for name, _, _ in net.nodes].index("layer2.0.shortcut")
    # d<gy, F>/dW by a central difference along a random direction of one weight
    layer, eps = net.layers[k], 1e-6
    d = rng.normal(size=layer.weight.shape)
    w = layer.weight.astype(np.float64)
    layer.weight = w + eps * d
    up = np.sum(gy * net.forward(x))
    layer.weight = w - eps * d
    down = np.sum(gy * net.forward(x))
    layer.weight = w
    np.testing.assert_allclose(np.sum(grads[k]["weight"] * d), (up - down) / (2 * eps),
                               rtol=1e-5)
    np.testing.assert_allclose(gx, net.vjp(x, gy[:, None])[1][:, 0], rtol=1e-10, atol=1e-15)


def relu_block():
    return [("a", fd.Conv2d(1, 1, 3, padding=1), "input"), ("b", fd.ReLU(), "a")]


@pytest.mark.parametrize("nodes, match", [
    (relu_block() + [("c", fd.Add(), ["b", "z"])], "node 'c' reads 'z', which is not an earlier node"),
    (relu_block() + [("b", fd.ReLU(), "a")], "node name 'b' is used twice"),
    (relu_block() + [("c", fd.ReLU(), ["a", "b"])], "takes one input, got 2"),
    (relu_block() + [("c", fd.ReLU(), "a")], r"node\(s\) b do not reach the output"),
    ([("a", fd.Conv2d(1, 1, 3), "input"), ("b", object(), "a")], "is not a layer"),
    ([], "has no nodes"),
])
def test_construction_errors_name_the_node(nodes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fd.Graph(nodes)


def test_a_layer_with_parameters_cannot_sit_in_two_nodes_but_a_relu_can():
    conv, relu = fd.Conv2d(1, 1, 3, padding=1), fd.ReLU()
    with pytest.raises(ValueError, match="share one layer with parameters"):
        fd.Graph([("a", conv, "input"), ("b", conv, "a")])
    net = fd.Graph([("a", relu, "input"), ("b", fd.Conv2d(1, 1, 1), "a"), ("c", relu, "b")])
    assert net.forward(np.ones((1, 1, 2, 2))).shape == (1, 1, 2, 2)


def test_shape_errors_name_the_node_and_output_must_be_last():
    net = fd.Graph([("a", fd.Conv2d(1, 2, 3), "input"), ("b", fd.Conv2d(1, 2, 3), "input"),
                    ("c", fd.Slice([0], [2], [3]), "b"), ("d", fd.Add(), ["a", "c"])])
    with pytest.raises(ValueError, match="Graph node 'd'.*Add.. expected two or more inputs "
                                         "of one shape"):
        net.forward(np.ones((1, 1, 5, 5)))
    with pytest.raises(ValueError, match="must be the last node"):
        fd.Graph(relu_block(), output="a")


def test_zero_size_axes_give_empty_jacobians():
    net = fd.Sequential([fd.Flatten(), fd.Linear(3, 2)])
    assert net.jacobian(np.ones((0, 1, 3))).shape == (0, 2, 1, 3)
    empty = fd.Sequential([fd.Flatten()])
    assert empty.jacobian(np.ones((2, 0, 3))).shape == (2, 0, 0, 3)
    for bad in ("1e6", 0, -5, 2.5):
        with pytest.raises((TypeError, ValueError), match="max_memory must be a positive int"):
            net.jacobian(np.ones((1, 1, 3)), max_memory=bad)


def test_a_jacobian_larger_than_the_machine_fails_before_allocating(monkeypatch):
    from fwdderiv.core import jacobian as jacobian_driver
    monkeypatch.setattr(jacobian_driver, "physical_memory", lambda: 2**20)
    net = fd.Sequential([fd.Flatten(), fd.Linear(300, 300)])
    with pytest.raises(ValueError, match=r"needs 0.1 GiB, more than this machine's"):
        net.jacobian(np.ones((200, 1, 300)))
    assert net.jacobian(np.ones((1, 1, 300))).shape == (1, 300, 1, 300)


def test_pullback_of_a_cached_pass_equals_vjp():
    net = fd.models.digits_net(seed=1)
    rng = np.random.default_rng(2)
    x, g = rng.normal(size=(3, 1, 8, 8)), rng.normal(size=(3, 4, 10))
    y, caches = net.forward_cached(x)
    _, expected = net.vjp(x, g)
    np.testing.assert_array_equal(net.pullback(caches, g), expected)
    with pytest.raises(ValueError, match="pullback expected the .* caches"):
        net.pullback(caches[:-1], g)
    with pytest.raises(ValueError, match=r"add a cotangent axis with gy\[:, None\]"):
        net.pullback(caches, g[:, 0, 0])
