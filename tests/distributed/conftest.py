"""One 2-worker local Dask cluster (worker processes, one thread each) for every test of
this folder: starting one takes seconds, so the tests share it."""
import numpy as np
import pytest

import fwdderiv as fd


@pytest.fixture(scope="package")
def client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="package")
def lenet():
    """LeNet-5 for 28x28 inputs (random weights) and 40 images: its Jacobian runs the
    Numba kernels, BLAS products and the windowed plan."""
    net = fd.models.lenet5(in_size=28)
    x = np.random.default_rng(0).random((40, 1, 28, 28))
    return net, x


def mlp(n_in=784, hidden=32, classes=10, seed=0):
    """A small dense classifier: Flatten, Linear, Tanh, Linear, Softmax."""
    return fd.Sequential([fd.Flatten(), fd.Linear(n_in, hidden, seed=seed), fd.Tanh(),
                          fd.Linear(hidden, classes, seed=seed + 1), fd.Softmax()])
