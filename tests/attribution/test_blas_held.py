"""Attribution methods hold BLAS to one thread while a network of Numba kernels runs, so
their own NumPy products between network calls leave no spinning BLAS threads behind."""
import contextlib

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv import threads
from fwdderiv.attribution import (InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion,
                                  Saliency)


@pytest.mark.parametrize("make", [
    lambda net: (Saliency(net), {}),
    lambda net: (InputXGradient(net), {}),
    lambda net: (IntegratedGradients(net), {"n_steps": 4}),
    lambda net: (NoiseTunnel(Saliency(net)), {"nt_samples": 2}),
    lambda net: (Occlusion(net), {"sliding_window_shapes": (1, 4, 4)}),
], ids=["saliency", "input-x-gradient", "ig", "noise-tunnel", "occlusion"])
def test_attribute_runs_with_blas_held_for_kernel_networks(monkeypatch, make):
    seen = []
    real = threads.held_for

    @contextlib.contextmanager
    def spy(net):
        seen.append(bool(getattr(net, "uses_kernels", False)))
        with real(net):
            yield
    monkeypatch.setattr(threads, "held_for", spy)
    x = np.random.default_rng(0).random((2, 1, 8, 8))
    for net, held in ((fd.models.digits_net(), True),
                      (fd.Sequential([fd.Flatten(), fd.Linear(64, 3, seed=1)]), False)):
        seen.clear()
        method, kwargs = make(net)
        method.attribute(x, target=1, **kwargs)
        assert seen and seen[0] is held      # the outermost scope: the whole attribute call


@pytest.mark.parametrize("call", [
    lambda net, x: fd.attacks.fast_gradient_method(net, x, 0.1, np.inf),
    lambda net, x: fd.attacks.projected_gradient_descent(net, x, 0.1, 0.05, 2, np.inf, seed=0),
    lambda net, x: fd.loss_gradient(net, x, np.array([1, 2])),
    lambda net, x: fd.gradients.example_losses(net, x, np.array([1, 2])),
], ids=["fgsm", "pgd", "loss-gradient", "example-losses"])
def test_gradient_attacks_run_with_blas_held_for_kernel_networks(monkeypatch, call):
    seen = []
    real = threads.held_for

    def spy(net):
        seen.append(bool(getattr(net, "uses_kernels", False)))
        return real(net)
    monkeypatch.setattr(threads, "held_for", spy)
    x = np.random.default_rng(1).random((2, 1, 8, 8))
    for net, held in ((fd.models.digits_net(), True),
                      (fd.Sequential([fd.Flatten(), fd.Linear(64, 3, seed=1)]), False)):
        seen.clear()
        call(net, x)
        assert seen and seen[0] is held
