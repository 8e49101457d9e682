"""The peers compute the same function as fwdderiv: converters and central differences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fwdderiv as fd
from benchmarks import cases, peers


def _every_layer_net():
    bn = fd.BatchNorm2d(4)
    rng = np.random.default_rng(1)
    bn.running_mean[:] = rng.normal(size=4)
    bn.running_var[:] = rng.uniform(0.5, 2.0, size=4)
    bn.weight[:] = rng.normal(size=4)
    bn.bias[:] = rng.normal(size=4)
    return fd.Sequential([
        fd.Pad2d((1, 2, 0, 3)),
        fd.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1, groups=2, seed=3),
        bn, fd.Tanh(),
        fd.Conv2d(4, 6, (3, 2), dilation=(1, 2), padding=(1, 0), bias=False, seed=4),
        fd.Sigmoid(),
        fd.MaxPool2d(2, stride=1, padding=1), fd.AvgPool2d(3, stride=2, padding=1),
        fd.Dropout(0.3), fd.ReLU(), fd.Flatten(),
        fd.Linear(6 * 4 * 3, 7, seed=5), fd.LogSoftmax(),
    ]), (2, 9, 8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_converters_match_fwdderiv_forward_on_every_layer_type(dtype):
    import jax
    import torch

    net, in_shape = _every_layer_net()
    assert net.output_shape(in_shape) == (7,)
    x = np.random.default_rng(0).normal(size=(3,) + in_shape).astype(dtype)
    want = net(x.astype(np.float64))
    with torch.no_grad():
        got_torch = peers.to_torch(net, dtype)(torch.from_numpy(x)).numpy()
    got_jax = np.asarray(jax.jit(peers.to_jax(net, dtype))(x))
    tol = 1e-12 if dtype == "float64" else 1e-5
    for got in (got_torch, got_jax):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["torch-jacfwd", "torch-jacrev", "jax-jacfwd", "jax-jacrev"])
def test_peer_jacobians_of_every_layer_type(name):
    net, in_shape = _every_layer_net()
    x = np.random.default_rng(2).normal(size=(2,) + in_shape)
    ref = net.jacobian(x, mode="forward")
    stats = cases.model_stats(net, in_shape)
    method = peers.make_method(name, net, "float64", stats, {"torch", "jax"})
    xp = method.prepare(x)
    method.compile(xp)
    J = np.asarray(method.to_numpy(method.run(xp)))
    assert J.shape == (2, 7) + in_shape
    np.testing.assert_allclose(J, ref, rtol=1e-10, atol=1e-12)


def test_unknown_layer_is_named_in_the_error():
    class Odd(fd.ReLU):
        pass

    with pytest.raises(TypeError, match="Odd"):
        peers.to_torch(fd.Sequential([Odd()]), "float64")


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 3), d=st.integers(1, 5), k=st.integers(1, 4),
       chunk=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_fd_central_is_exact_on_affine_maps(n, d, k, chunk, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(k, d))
    b = rng.normal(size=k)
    x = rng.normal(size=(n, 1, d))
    J = peers.fd_central(lambda z: z.reshape(len(z), d) @ A.T + b, x, 2.0 ** -10, chunk)
    assert J.shape == (n, k, 1, d)
    np.testing.assert_allclose(J, np.broadcast_to(A[None, :, None, :], J.shape), atol=1e-9)


def test_flop_count_of_lenet5_matches_the_issue():
    net, in_shape = cases.build_model("lenet5")
    stats = cases.model_stats(net, in_shape)
    # conv1 235,200 + conv2 480,000 + conv3 96,000 + fc 20,160 + 1,680 FLOP per direction
    assert stats["flop_per_direction"] == 833_040
    assert stats["flop_first_layer"] == 235_200
    assert cases.method_flop("torch-jacfwd", stats, 2) == 2 * 1025 * 833_040
    assert cases.method_flop("fd-central", stats, 1) == 2 * 1024 * 833_040
