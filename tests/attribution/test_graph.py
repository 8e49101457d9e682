"""Loss gradients, attacks and attributions take a Graph (a residual block) unchanged."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.logits import split_final_softmax
from fwdderiv.attribution import IntegratedGradients, Saliency
from fwdderiv.numeric import loss_gradient_fd

from .conftest import close


@pytest.fixture(scope="module")
def graph():
    return fd.Graph([
        ("conv1", fd.Conv2d(1, 3, 3, padding=1, seed=1), "input"),
        ("tanh1", fd.Tanh(), "conv1"),
        ("conv2", fd.Conv2d(3, 1, 3, padding=1, seed=2), "tanh1"),
        ("add", fd.Add(), ["conv2", "input"]),
        ("flat", fd.Flatten(), "add"),
        ("fc", fd.Linear(36, 4, seed=3), "flat"),
        ("softmax", fd.Softmax(), "fc"),
    ])


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).random((2, 1, 6, 6))


def testsplit_final_softmax_of_a_graph(graph, x):
    body, kind = split_final_softmax(graph)
    assert kind == "softmax" and len(body) == len(graph) - 1
    z = body(x)
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(1, keepdims=True), graph(x),
                               rtol=1e-12)


def test_loss_gradient_of_a_graph_equals_central_differences(graph, x):
    y = np.array([1, 3])
    np.testing.assert_allclose(fd.loss_gradient(graph, x, y), loss_gradient_fd(graph, x, y),
                               rtol=1e-6, atol=1e-9)


def test_attributions_of_a_graph_equal_captum(graph, x):
    import captum.attr as C
    import torch
    from benchmarks.peers import to_torch

    model = to_torch(graph, "float64")
    xt = torch.from_numpy(x)
    close(Saliency(graph).attribute(x, target="all", abs=False),
          graph.jacobian(x, mode="forward"))
    a, d = IntegratedGradients(graph).attribute(x, target=[0, 2], n_steps=7,
                                               return_convergence_delta=True)
    ta, td = C.IntegratedGradients(model).attribute(xt, target=[0, 2], n_steps=7,
                                                    return_convergence_delta=True)
    close(a, ta.detach())
    # the deltas are at rounding level (a smooth network, 3e-12): compare them absolutely,
    # against the size of F(x) - F(0)
    np.testing.assert_allclose(d, td.numpy(), rtol=0, atol=1e-12)


def test_fgsm_on_a_graph(graph, x):
    adv = fd.attacks.fast_gradient_method(graph, x, 0.05, np.inf, clip_min=0, clip_max=1)
    assert np.abs(adv - x).max() <= 0.05 + 1e-15 and adv.min() >= 0 and adv.max() <= 1
