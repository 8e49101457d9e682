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
    assert not net.uses_kernels and Spy.seen == [before]


def test_the_limit_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(config, "KERNEL_BLAS_THREADS", None)
    net = fd.Sequential([fd.Conv2d(1, 2, 3), Spy(), fd.Flatten(), fd.Linear(8, 3)])
    Spy.seen = []
    before = blas_threads()
    net(np.ones((1, 1, 4, 4)))
    assert Spy.seen == [before]


def test_tune_process_prefers_the_openmp_layer_and_import_does_not():
    import subprocess
    import sys
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "FWDDERIV_TUNE_PROCESS")}
    code = ("import numpy as np, numba, fwdderiv as fd\n{}"
            "fd.models.lenet5()(np.zeros((1, 1, 32, 32)))\n"
            "print(numba.config.THREADING_LAYER_PRIORITY[0], numba.threading_layer())")
    plain, tuned = (subprocess.run([sys.executable, "-c", code.format(opt)], env=env,
                                   check=True, capture_output=True, text=True).stdout.split()
                    for opt in ("", "fd.tune_process()\n"))
    default = subprocess.run([sys.executable, "-c", "import numba\n"
                              "print(numba.config.THREADING_LAYER_PRIORITY[0])"], env=env,
                             check=True, capture_output=True, text=True).stdout.split()
    assert plain[:1] == default          # Numba's own default, in a process of its own
    assert tuned == ["omp", "omp"]


def test_cli_main_tunes_only_the_program():
    """``fwdderiv`` (argv None) tunes its process; ``main([...])`` from Python does not."""
    import subprocess
    import sys
    code = ("import contextlib, io, sys\nfrom fwdderiv import cli, process\n"
            "sys.argv = ['fwdderiv']\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    cli.main({})\n"
            "print(process.tuned()['threading_layer'])")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "FWDDERIV_TUNE_PROCESS")}
    got = [subprocess.run([sys.executable, "-c", code.format(arg)], env=env, check=True,
                          capture_output=True, text=True).stdout.split()[-1]
           for arg in ("[]", "None")]
    assert got == ["False", "True"]


@pytest.mark.parametrize("shapes", [((37, 9), (9, 5)), ((6, 4), (11, 4, 7)),
                                    ((11, 7, 4), (4, 6)), ((11, 3, 4), (11, 4, 2))])
def test_split_products_equal_numpy_and_run_on_the_pool(monkeypatch, shapes):
    from fwdderiv import threads
    rng = np.random.default_rng(3)
    a, b = rng.random(shapes[0]), rng.random(shapes[1])
    monkeypatch.setattr(threads, "SPLIT_MIN_WORK", 0)
    outside = threads.matmul(a, np.asfortranarray(b))  # not in row order
    np.testing.assert_allclose(outside, np.matmul(a, b), rtol=1e-13)
    seen = []
    real = threads._executor
    monkeypatch.setattr(threads, "_executor", lambda parts: seen.append(parts) or real(parts))
    with threads.blas_limited(True):
        inside = threads.matmul(a, b)
    np.testing.assert_allclose(inside, np.matmul(a, b), rtol=1e-13)
    assert seen == [threads._cores()] if threads._cores() > 1 else seen == []
    seen.clear()
    threads.matmul(a, b)                             # outside the scope: not split
    assert seen == []


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_concurrent_kernels_known_from_the_first_call(layer):
    """Before any parallel kernel has run, ``kernels_run_concurrently`` makes Numba
    choose its layer (one tiny kernel), so the first reverse Jacobian splits as the later
    ones do; the workqueue layer, which cannot take two launches at once, says no."""
    import subprocess
    import sys
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "FWDDERIV_TUNE_PROCESS")}
    env["NUMBA_THREADING_LAYER"] = layer
    code = ("import numba\nfrom fwdderiv import threads\n"
            "try:\n    numba.threading_layer(); print('set')\n"
            "except ValueError:\n    print('unset')\n"
            "print(threads.kernels_run_concurrently(), numba.threading_layer())")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["unset", str(layer == "omp"), layer]
