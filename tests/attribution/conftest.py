"""A small float64 classifier, its PyTorch twin (same weights) and inputs."""
import numpy as np
import pytest

import fwdderiv as fd


@pytest.fixture(scope="module")
def convnet():
    return fd.Sequential([
        fd.Conv2d(1, 4, 3, padding=1, seed=1), fd.ReLU(), fd.MaxPool2d(2),
        fd.Conv2d(4, 6, 3, seed=2), fd.Tanh(), fd.Flatten(),
        fd.Linear(24, 5, seed=3), fd.Softmax()])


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((3, 1, 8, 8))


@pytest.fixture(scope="module")
def torch_twin(convnet):
    from benchmarks.peers import to_torch

    return to_torch(convnet, "float64")


def close(ours, theirs):
    """Equal to 1e-9 relative (of the largest entry, for entries near zero)."""
    if hasattr(theirs, "detach"):
        theirs = theirs.detach().numpy()
    theirs = np.asarray(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9,
                               atol=1e-9 * max(np.abs(theirs).max(), 1e-300))
