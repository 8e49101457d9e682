"""Attribution methods hold BLAS to one thread while a network of Numba kernels runs, so
their own NumPy products between network calls leave no spinning BLAS threads behind."""
import contextlib

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv import _threads
from fwdderiv.attribution import (InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion,
                                  Saliency)
from fwdderiv.attribution import _common


@pytest.mark.parametrize("make", [
    lambda net: (Saliency(net), {}),
    lambda net: (InputXGradient(net), {}),
    lambda net: (IntegratedGradients(net), {"n_steps": 4}),
    lambda net: (NoiseTunnel(Saliency(net)), {"nt_samples": 2}),
    lambda net: (Occlusion(net), {"sliding_window_shapes": (1, 4, 4)}),
], ids=["saliency", "input-x-gradient", "ig", "noise-tunnel", "occlusion"])
def test_attribute_runs_with_blas_held_for_kernel_networks(monkeypatch, make):
    seen = []
    real = _threads.blas_limited

    @contextlib.contextmanager
    def spy(numba_heavy):
        seen.append(bool(numba_heavy))
        with real(numba_heavy):
            yield
    monkeypatch.setattr(_common, "blas_limited", spy)
    x = np.random.default_rng(0).random((2, 1, 8, 8))
    for net, held in ((fd.models.digits_net(), True),
                      (fd.Sequential([fd.Flatten(), fd.Linear(64, 3, seed=1)]), False)):
        seen.clear()
        method, kwargs = make(net)
        method.attribute(x, target=1, **kwargs)
        assert seen and seen[0] is held      # the outermost scope: the whole attribute call
