"""BLAS runs single-threaded during calls of networks with Numba kernel layers only."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fwdderiv as fd
from fwdderiv import config


def blas_threads():
    """Threads of NumPy's own BLAS (the one fwdderiv's products run on)."""
    return [lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas" and "numpy" in lib["filepath"]]


class Spy(fd.ReLU):
    """A ReLU that records the BLAS thread counts it runs under."""
    seen = []

    def forward(self, x):
        Spy.seen.append(blas_threads())
        return super().forward(x)


@pytest.mark.parametrize("method", ["forward", "jacobian", "vjp"])
def test_conv_nets_limit_blas_during_the_call_and_restore_it(method):
    before = blas_threads()
    net = fd.Sequential([fd.Conv2d(1, 2, 3), Spy(), fd.Flatten(), fd.Linear(8, 3)])
    x = np.random.default_rng(0).random((2, 1, 4, 4))
    Spy.seen = []
    args = {"forward": (x,), "jacobian": (x,), "vjp": (x, np.ones((2, 1, 3)))}[method]
    getattr(net, method)(*args)
    assert Spy.seen and all(n == [config.KERNEL_BLAS_THREADS] * len(before) for n in Spy.seen)
    assert blas_threads() == before


def test_dense_nets_keep_blas_threads(monkeypatch):
    net = fd.Sequential([fd.Linear(4, 4), Spy(), fd.Linear(4, 2)])
    Spy.seen = []
    before = blas_threads()
    net.jacobian(np.ones((2, 4)))
    assert not net.numba_heavy and Spy.seen == [before]


def test_the_limit_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(config, "KERNEL_BLAS_THREADS", None)
    net = fd.Sequential([fd.Conv2d(1, 2, 3), Spy(), fd.Flatten(), fd.Linear(8, 3)])
    Spy.seen = []
    before = blas_threads()
    net(np.ones((1, 1, 4, 4)))
    assert Spy.seen == [before]


def run_fresh(code, hide_threadpoolctl):
    import subprocess
    import sys
    prelude = "import sys; sys.modules['threadpoolctl'] = None\n" if hide_threadpoolctl else ""
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_THREADING_LAYER"}
    return subprocess.run([sys.executable, "-c", prelude + code], env=env, check=True,
                          capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize("hide", [False, True])
def test_threading_layer_follows_whether_blas_can_be_limited(hide):
    # OpenMP workers beside multi-threaded BLAS are the slow pairing: without threadpoolctl
    # (BLAS not limitable) the non-spinning workqueue layer is used
    code = ("import numpy as np, numba, fwdderiv as fd\n"
            "fd.models.lenet5()(np.zeros((1, 1, 32, 32)))\n"
            "print(fd.config.HAVE_THREADPOOLCTL, numba.threading_layer())")
    have, layer = run_fresh(code, hide)
    assert have == str(not hide)
    assert layer == ("workqueue" if hide else "omp")
