"""Fixtures for the attack tests: digits data and a small classifier fitted in milliseconds."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.datasets import load_dataset


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


def random_features_net(x, y, hidden=64, seed=0, dtype=np.float64):
    """Flatten -> Linear (random) -> Tanh -> Linear (least squares on one-hot) -> Softmax.

    A smooth classifier with real decision boundaries, fitted without a trainer, so the
    attack tests depend on the engine alone.
    """
    n_in = int(np.prod(x.shape[1:]))
    l1 = fd.Linear(n_in, hidden, seed=seed)
    l2 = fd.Linear(hidden, 10, seed=seed + 1)
    net = fd.Sequential([fd.Flatten(), l1, fd.Tanh(), l2, fd.Softmax()])
    l1.weight = l1.weight.astype(dtype) * 3
    l1.bias = l1.bias.astype(dtype)
    h = net[:3](x.astype(dtype))
    h1 = np.concatenate([h, np.ones((h.shape[0], 1))], axis=1)
    onehot = np.eye(10)[y] * 8 - 4  # logits of a confident classifier
    sol = np.linalg.lstsq(h1, onehot, rcond=None)[0]
    l2.weight = np.ascontiguousarray(sol[:-1].T).astype(dtype)
    l2.bias = sol[-1].astype(dtype)
    return net


@pytest.fixture(scope="session")
def digits_net(digits):
    return random_features_net(digits.x_train, digits.y_train)
