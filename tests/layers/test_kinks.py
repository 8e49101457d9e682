"""Exact tests of the kink conventions: relu'(0) = 0, max-pool ties, NaN propagation.

They match PyTorch, which is pinned directly where torch is installed (it is in CI)."""
import numpy as np
import torch

import fwdderiv as fd


def test_relu_derivative_at_zero_is_zero():
    x = np.array([[-1.0, 0.0, 2.0]])
    y, cache = fd.ReLU().forward(x)
    dy = fd.ReLU().jvp(cache, np.ones((1, 1, 3)))
    gx = fd.ReLU().vjp(cache, np.ones((1, 1, 3)))
    assert dy.tolist() == [[[0.0, 0.0, 1.0]]]
    assert gx.tolist() == [[[0.0, 0.0, 1.0]]]


def test_relu_kink_and_nan_match_pytorch():
    x = np.array([[-1.0, 0.0, -0.0, 2.0, np.nan]])
    t = torch.tensor(x, requires_grad=True)
    torch.relu(t).sum().backward()
    _, cache = fd.ReLU().forward(x)
    np.testing.assert_array_equal(fd.ReLU().vjp(cache, np.ones((1, 1, 5)))[0, 0], t.grad[0].numpy())


def test_maxpool_tie_sends_whole_derivative_to_first_maximum():
    # one 2x2 window, all equal: the derivative goes to (0, 0) only
    x = np.ones((1, 1, 2, 2))
    J = fd.Sequential([fd.MaxPool2d(2)]).jacobian(x)
    assert J.reshape(4).tolist() == [1.0, 0.0, 0.0, 0.0]
    # tie between (0, 1) and (1, 0): row-major order picks (0, 1)
    x = np.array([[[[0.0, 5.0], [5.0, 1.0]]]])
    J = fd.Sequential([fd.MaxPool2d(2)]).jacobian(x)
    assert J.reshape(4).tolist() == [0.0, 1.0, 0.0, 0.0]


def test_maxpool_ties_match_pytorch_on_random_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(2, 3, 6, 6)).astype(np.float64)   # many ties
    pool = fd.MaxPool2d(3, stride=2, padding=1)
    y, cache = pool.forward(x)
    g = rng.normal(size=(2, 1) + y.shape[1:])
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(t, 3, stride=2, padding=1)
    ty.backward(torch.tensor(g[:, 0]))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(pool.vjp(cache, g)[:, 0], t.grad.numpy())


def test_nan_propagates_without_crash():
    net = fd.Sequential([fd.Conv2d(1, 2, 3), fd.ReLU(), fd.MaxPool2d(2), fd.Flatten(),
                         fd.Linear(8, 3), fd.Softmax()])
    x = np.zeros((2, 1, 6, 6))
    x[0, 0, 2, 2] = np.nan
    y, J = net.jacobian(x, return_output=True)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    assert np.isnan(J[0]).any() and np.isfinite(J[1]).all()
    Jr = net.jacobian(x, mode="reverse")
    np.testing.assert_allclose(Jr[1], J[1], rtol=1e-12, atol=1e-15)
    # a NaN wins its max-pool window (PyTorch propagates it too)
    p = fd.MaxPool2d(2)(np.array([[[[1.0, np.nan], [3.0, 2.0]]]]))
    assert np.isnan(p).all()


def test_maxpool_nan_routing_matches_pytorch():
    x = np.array([[[[1.0, np.nan], [np.nan, 1.0]], [[np.nan, 2.0], [3.0, 2.0]]]])
    pool = fd.MaxPool2d(2)
    y, cache = pool.forward(x)
    t = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(t, 2).sum().backward()
    np.testing.assert_array_equal(pool.vjp(cache, np.ones((1, 1, 2, 1, 1)))[:, 0], t.grad.numpy())


def test_inf_input_gives_inf_or_nan_not_an_exception():
    x = np.array([[np.inf, 1.0, -np.inf]])
    y = fd.Sequential([fd.Linear(3, 2), fd.Tanh()])(x)
    assert y.shape == (1, 2)
