"""Whole graphs: forward mode, reverse mode and finite differences give one Jacobian."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import fwdderiv as fd
from fwdderiv.core.jacobian import memory_steps
from fwdderiv.core.memory import plan_chunks
from fwdderiv.numeric import jacobian_fd

KINK_MARGIN = 1e-4




def build(draw_data):
    rng = np.random.default_rng(draw_data.draw(st.integers(0, 2**31 - 1), label="seed"))
    c0 = draw_data.draw(st.integers(1, 2), label="channels")
    size = draw_data.draw(st.integers(5, 8), label="size")
    shape = (c0, size, size)
    layers = []
    for i in range(draw_data.draw(st.integers(1, 4), label="depth")):
        c, h, w = fd.Sequential(layers).output_shape((c0, size, size)) if layers else shape
        options = ["act", "pad", "bn", "drop"] + (["conv", "avgpool"] if min(h, w) >= 3 else []) \
            + (["maxpool"] if min(h, w) >= 4 else [])
        kind = draw_data.draw(st.sampled_from(options), label=f"layer{i}")
        if kind == "conv":
            k = int(rng.integers(1, 4))
            layers.append(fd.Conv2d(c, int(rng.integers(1, 4)), k, stride=int(rng.integers(1, 3)),
                                    padding=int(rng.integers(0, 2)), seed=int(rng.integers(99))))
        elif kind == "pad":
            layers.append(fd.Pad2d(int(rng.integers(0, 2))))
        elif kind == "maxpool":
            layers.append(fd.MaxPool2d(2))
        elif kind == "avgpool":
            layers.append(fd.AvgPool2d(2, stride=1))
        elif kind == "bn":
            bn = fd.BatchNorm2d(c)
            bn.running_mean, bn.running_var = rng.normal(size=c), rng.uniform(0.5, 2, size=c)
            bn.weight, bn.bias = rng.normal(size=c), rng.normal(size=c)
            layers.append(bn)
        elif kind == "act":
            layers.append([fd.ReLU, fd.Sigmoid, fd.Tanh][int(rng.integers(3))]())
        else:
            layers.append(fd.Dropout(0.5))
    flat = int(np.prod(fd.Sequential(layers).output_shape(shape) if layers else shape))
    hidden = int(rng.integers(2, 6))
    layers += [fd.Flatten(), fd.Linear(flat, hidden, seed=int(rng.integers(99))),
               [fd.ReLU, fd.Tanh][int(rng.integers(2))](), fd.Linear(hidden, 4, seed=1)]
    head = draw_data.draw(st.sampled_from(["softmax", "logsoftmax", "none"]), label="head")
    layers += {"softmax": [fd.Softmax()], "logsoftmax": [fd.LogSoftmax()], "none": []}[head]
    x = rng.normal(size=(int(rng.integers(1, 3)),) + shape)
    return fd.Sequential(layers), x


def off_kinks(net, x):
    """True if no ReLU input is within KINK_MARGIN of 0 and no max-pool window has a
    near-tie, so finite differences see a smooth function."""
    h = x
    for layer in net.layers:
        if isinstance(layer, fd.ReLU) and np.abs(h).min() < KINK_MARGIN:
            return False
        if isinstance(layer, fd.MaxPool2d):
            M, C, H, W = h.shape
            win = h[:, :, :H // 2 * 2, :W // 2 * 2].reshape(M, C, H // 2, 2, W // 2, 2)
            win = np.sort(win.transpose(0, 1, 2, 4, 3, 5).reshape(M, C, H // 2, W // 2, 4), -1)
            if (win[..., -1] - win[..., -2]).min() < KINK_MARGIN:
                return False
        h = layer(h)
    return True


@given(st.data())
def test_random_stacks_forward_reverse_and_fd_agree(data):
    net, x = build(data)
    Jf = net.jacobian(x, mode="forward")
    Jr = net.jacobian(x, mode="reverse")
    scale = max(np.abs(Jf).max(), 1e-300)
    assert np.abs(Jf - Jr).max() <= 1e-12 * scale + 1e-300
    assume(off_kinks(net, x))
    Jd = jacobian_fd(net, x)
    assert np.abs(Jf - Jd).max() <= 1e-6 * scale + 1e-9


def test_lenet5_answers_the_seed_question():
    net = fd.models.lenet5()
    x = np.random.default_rng(0).random((3, 1, 32, 32))
    F, J = net.jacobian(x, return_output=True)
    assert F.shape == (3, 10) and J.shape == (3, 10, 1, 32, 32)
    np.testing.assert_allclose(F, net(x), rtol=1e-14)
    np.testing.assert_allclose(F.sum(axis=1), 1, rtol=1e-12)
    # softmax outputs sum to one, so their derivatives sum to zero
    np.testing.assert_allclose(J.sum(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(J, net.jacobian(x, mode="reverse"), rtol=1e-9, atol=1e-17)
    Jd = jacobian_fd(net, x[:1])
    assert np.abs(J[:1] - Jd).max() <= 1e-6 * np.abs(J).max()


def test_jvp_and_vjp_match_jacobian():
    net = fd.models.lenet5(in_size=28)
    rng = np.random.default_rng(1)
    x = rng.random((2, 1, 28, 28))
    J = net.jacobian(x).reshape(2, 10, -1)
    dx = rng.normal(size=(2, 3, 1, 28, 28))
    y, dy = net.jvp(x, dx)
    np.testing.assert_allclose(dy, np.einsum("nkd,nsd->nsk", J, dx.reshape(2, 3, -1)), rtol=1e-10, atol=1e-15)
    gy = rng.normal(size=(2, 4, 10))
    y2, gx = net.vjp(x, gy)
    np.testing.assert_allclose(gx.reshape(2, 4, -1), np.einsum("nkd,nsk->nsd", J, gy), rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_chunking_by_max_memory_changes_nothing(mode):
    net = fd.models.lenet5()
    x = np.random.default_rng(2).random((5, 1, 32, 32))
    J = net.jacobian(x, mode=mode)
    budget = 1_200_000
    plan = plan_chunks(memory_steps(net, net.shapes((1, 32, 32))), net.shapes((1, 32, 32)), 5, 1024 if mode == "forward" else 10,
                       8, budget)
    assert len(plan.example_chunks) > 1
    if mode == "forward":
        assert len(plan.direction_chunks) > 1
    small = net.jacobian(x, mode=mode, max_memory=budget)
    # equal up to float rounding (BLAS blocks differently for other sizes)
    np.testing.assert_allclose(small, J, rtol=1e-12, atol=1e-18)


def test_max_memory_too_small_names_the_minimum():
    net = fd.models.lenet5()
    with pytest.raises(ValueError, match=r"max_memory=1000 bytes is too small.*at least \d+ bytes"):
        net.jacobian(np.zeros((1, 1, 32, 32)), max_memory=1000)


def test_float32_jacobian_is_float32_and_close_to_float64():
    net = fd.models.lenet5()
    x = np.random.default_rng(3).random((4, 1, 32, 32))
    J64 = net.jacobian(x)
    J32 = net.jacobian(x.astype(np.float32))
    assert J32.dtype == np.float32
    np.testing.assert_allclose(J32, J64, rtol=1e-3, atol=1e-4 * np.abs(J64).max())
    np.testing.assert_allclose(net.jacobian(x.astype(np.float32), mode="reverse"), J32,
                               rtol=1e-3, atol=1e-5 * np.abs(J64).max())


def test_intermediates_unfold_equation_6():
    net = fd.models.lenet5()
    x = np.random.default_rng(4).random((2, 1, 32, 32))
    trace = net.jacobian(x, intermediates=True)
    assert len(trace) == len(net) + 1
    np.testing.assert_array_equal(trace.jacobians[0].reshape(2, 1024, 1024), np.broadcast_to(np.eye(1024), (2, 1024, 1024)))
    np.testing.assert_allclose(trace.jacobian, net.jacobian(x), rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(trace.output, net(x), rtol=1e-14)
    for k, layer in enumerate(net.layers, start=1):
        assert trace.jacobians[k].shape == (2,) + trace.shapes[k] + (1, 32, 32)
        # dH_k/dx = f_k'(.) (W_k dH_{k-1}/dx): one layer's JVP applied to the previous Jacobian
        prev = np.moveaxis(trace.jacobians[k - 1].reshape(2, -1, 1024), 2, 1)
        _, cache = layer.forward(trace.outputs[k - 1])
        step = layer.jvp(cache, prev.reshape((2, 1024) + trace.shapes[k - 1]))
        np.testing.assert_allclose(np.moveaxis(step.reshape(2, 1024, -1), 1, 2).reshape(trace.jacobians[k].shape),
                                   trace.jacobians[k], rtol=1e-12,
                                   atol=1e-14 * np.abs(trace.jacobians[k]).max())
    assert "Conv2d(1, 6, 5)" in trace.summary()


def test_slicing_gives_logits_sharing_layers():
    net = fd.models.lenet5()
    logits = net[:-1]
    assert logits.layers[0] is net.layers[0] and len(logits) == len(net) - 1
    x = np.random.default_rng(5).random((2, 1, 32, 32))
    z = logits(x)
    np.testing.assert_allclose(fd.Softmax()(z), net(x), rtol=1e-14)


def test_backward_gives_parameter_gradients_matching_vjp_of_input():
    net = fd.models.lenet5()
    x = np.random.default_rng(6).random((2, 1, 32, 32))
    y, caches = net.forward_cached(x)
    gy = np.random.default_rng(7).normal(size=y.shape)
    gx, grads = net.backward(caches, gy)
    # vjp scatters conv -> ReLU -> pool in one pass, backward layer by layer: the same sum
    # in another order
    np.testing.assert_allclose(gx, net.vjp(x, gy[:, None])[1][:, 0], rtol=1e-12,
                               atol=1e-14 * np.abs(gx).max())
    assert [set(g) for g in grads] == [set(p) for p in net.params]
    for g, p in zip(grads, net.params):
        for name in p:
            assert g[name].shape == p[name].shape


def test_float64_calls_of_a_float32_model_cast_each_weight_once_per_call():
    from fwdderiv.core import layer as layer_module
    net = fd.models.mlp()
    x = np.random.default_rng(8).random((3, 784))
    shapes = [(256, 784), (256, 256), (10, 256)]
    casts = []
    original = np.ndarray.astype

    class Counting(np.ndarray):       # a weight that counts its casts
        def astype(self, *args, **kwargs):
            if self.shape in shapes:
                casts.append(self.shape)
            return original(self, *args, **kwargs)

    for lin in (net[1], net[3], net[5]):
        lin.weight = lin.weight.view(Counting)
    logits = net[:-1]
    J = logits.jacobian(x, mode="reverse")
    assert sorted(casts) == sorted(shapes)      # once per call, not once per pass
    # a weight changed in place between calls is seen by the next call
    net[5].weight *= 2
    casts.clear()
    np.testing.assert_allclose(logits.jacobian(x, mode="reverse"), 2 * J, rtol=1e-12)
    assert sorted(casts) == sorted(shapes) and layer_module._casts.cache is None
