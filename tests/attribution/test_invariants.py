"""Attributions by their invariants, memory bounds, and bad input."""
import tracemalloc

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.attribution import (InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion,
                                  Saliency)

from .conftest import close


def test_gradient_x_input_of_a_linear_model_is_w_times_x(images):
    lin = fd.Linear(64, 4, seed=7)
    net = fd.Sequential([fd.Flatten(), lin])
    every = InputXGradient(net).attribute(images, target="all")
    W = lin.weight.reshape(4, 1, 8, 8)
    close(every, W[None] * images[:, None])
    close(InputXGradient(net).attribute(images, target=2), W[2][None] * images)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_integrated_gradients_completeness_delta_shrinks_with_n_steps(convnet, images, method):
    ig = IntegratedGradients(convnet)
    b = np.full_like(images, 0.2)
    worst = []
    for n in (4, 16, 64):
        attr, delta = ig.attribute(images, baselines=b, target="all", n_steps=n,
                                   method=method, return_convergence_delta=True)
        gain = convnet(images) - convnet(b)
        close(delta, attr.reshape(3, 5, -1).sum(-1) - gain)       # Captum's definition
        worst.append(np.abs(delta).max())
    assert worst[0] > worst[1] > worst[2]      # measured: ReLU/max-pool kinks on the path
    assert worst[2] < 0.05 * np.abs(gain).max()   # keep it from falling faster


def test_gauss_legendre_completeness_on_a_smooth_network(images):
    net = fd.Sequential([fd.Conv2d(1, 3, 3, seed=4), fd.Tanh(), fd.Flatten(),
                         fd.Linear(108, 4, seed=5), fd.Softmax()])
    ig = IntegratedGradients(net)
    deltas = [np.abs(ig.attribute(images, target="all", n_steps=n,
                                  return_convergence_delta=True)[1]).max() for n in (2, 4, 8)]
    gain = np.abs(net(images) - net(np.zeros_like(images))).max()
    assert deltas[0] > deltas[1] > deltas[2] and deltas[2] < 1e-6 * gain


def test_integrated_gradients_of_a_linear_model_is_exact(images):
    lin = fd.Linear(64, 3, seed=1)
    net = fd.Sequential([fd.Flatten(), lin])
    attr, delta = IntegratedGradients(net).attribute(images, target=1, n_steps=2,
                                                     return_convergence_delta=True)
    close(attr, lin.weight[1].reshape(1, 8, 8)[None] * images)
    assert np.abs(delta).max() < 1e-12


def test_occlusion_covering_the_whole_input_is_the_output_change(convnet, images):
    every = Occlusion(convnet).attribute(images, sliding_window_shapes=(1, 8, 8),
                                         baselines=0.3, target="all")
    gain = convnet(images) - convnet(np.full_like(images, 0.3))
    close(every, np.broadcast_to(gain[:, :, None, None, None], every.shape))


def test_occlusion_of_one_pixel_windows_is_the_single_pixel_drop(convnet, images):
    attr = Occlusion(convnet).attribute(images[:1], sliding_window_shapes=(1, 1, 1), target=2)
    x = images[:1].copy()
    x[0, 0, 3, 5] = 0.0
    assert attr[0, 0, 3, 5] == pytest.approx(convnet(images[:1])[0, 2] - convnet(x)[0, 2],
                                             rel=1e-12)


def test_smoothgrad_with_zero_noise_is_the_method_itself(convnet, images):
    sal = Saliency(convnet)
    close(NoiseTunnel(sal).attribute(images, stdevs=0.0, target=1),
          sal.attribute(images, target=1))
    var = NoiseTunnel(sal).attribute(images, nt_type="vargrad", stdevs=0.0, target=1)
    assert np.abs(var).max() < 1e-12 * (sal.attribute(images, target=1) ** 2).max()


class Counting:
    """A network wrapper recording the batch size of every vjp and forward call."""

    def __init__(self, net):
        self.net, self.vjp_sizes, self.forward_sizes = net, [], []
        self.layers, self.nodes, self.shapes = net.layers, net.nodes, net.shapes

    def forward(self, x):
        self.forward_sizes.append(x.shape[0])
        return self.net.forward(x)

    def vjp(self, x, gy):
        self.vjp_sizes.append(gy.shape[0] * gy.shape[1])
        return self.net.vjp(x, gy)

    def output_shape(self, s):
        return self.net.output_shape(s)

    def jacobian(self, *a, **k):
        return self.net.jacobian(*a, **k)


@pytest.mark.parametrize("make, kw", [
    (Saliency, {}), (IntegratedGradients, {"n_steps": 5}),
    (Occlusion, {"sliding_window_shapes": (1, 2, 2), "strides": 2,
                 "perturbations_per_eval": 16}),
])
def test_max_memory_splits_the_work_and_keeps_the_result(convnet, images, make, kw):
    big = make(convnet).attribute(images, target="all", **kw)
    wrapped = Counting(convnet)
    small = make(wrapped).attribute(images, target="all", max_memory=40_000, **kw)
    close(small, big)
    sizes = wrapped.vjp_sizes or wrapped.forward_sizes
    assert len(sizes) > 1 and max(sizes) < 3 * 5 * (5 if make is IntegratedGradients else 16)


def test_a_3x224x224_input_stays_within_max_memory():
    net = fd.Sequential([fd.Conv2d(3, 2, 5, stride=4, seed=0), fd.ReLU(), fd.MaxPool2d(5),
                         fd.Flatten(), fd.Linear(2 * 11 * 11, 10, seed=1), fd.Softmax()])
    x = np.random.default_rng(0).random((2, 3, 224, 224))
    budget = 32 * 2**20
    IntegratedGradients(net).attribute(x[:1],
                                       target=0, n_steps=2)      # warm-up (Numba compile)
    tracemalloc.start()
    attr = IntegratedGradients(net).attribute(x, target="all", n_steps=8, max_memory=budget)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert attr.shape == (2, 10, 3, 224, 224)
    # the work is bounded: everything beyond the returned array (and the float64
    # accumulator of the same size) fits in a small multiple of the budget
    assert peak - 2 * attr.nbytes < 2 * budget


@pytest.mark.parametrize("call, err, match", [
    (lambda net, x: Saliency(net).attribute(x), ValueError, "needs a target"),
    (lambda net, x: Saliency(net).attribute(x, target=5), ValueError,
     r"Saliency.attribute expected target in \[0, 5\)"),
    (lambda net, x: Saliency(net).attribute(x, target=[1, 2]), TypeError,
     r"one integer class label per example, shape \(3,\)"),
    (lambda net, x: Saliency(net).attribute(x, target="every"), ValueError, "or 'all'"),
    (lambda net, x: IntegratedGradients(net).attribute(x, target=0, baselines=np.zeros((2, 8))),
     ValueError, "IntegratedGradients.attribute expected baselines as a number or an array"),
    (lambda net, x: IntegratedGradients(net).attribute(x, target=0, method="simpson"),
     ValueError, "expected method in"),
    (lambda net, x: IntegratedGradients(net).attribute(x, target=0, method="riemann_left",
                                                       n_steps=1), ValueError, "n_steps"),
    (lambda net, x: Occlusion(net).attribute(x, (1, 9, 9), target=0), ValueError, "exceed"),
    (lambda net, x: Occlusion(net).attribute(x, (1, 2, 2), strides=3, target=0), ValueError,
     "larger than the window"),
    (lambda net, x: Occlusion(net).attribute(x, (2, 2), target=0), ValueError,
     "sliding_window_shapes as 3 positive integers"),
    (lambda net, x: NoiseTunnel(Saliency(net)).attribute(x, target=0, nt_type="smooth"),
     ValueError, "nt_type"),
    (lambda net, x: NoiseTunnel(net), TypeError, "attribution object"),
    (lambda net, x: Saliency(net).attribute(x, target=0, max_memory=-1), ValueError,
     "max_memory"),
])
def test_bad_input(convnet, images, call, err, match):
    with pytest.raises(err, match=match):
        call(convnet, images)


def test_nan_image(convnet, images):
    x = images.copy()
    x[2, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="IntegratedGradients.attribute expected finite values "
                                         "in inputs"):
        IntegratedGradients(convnet).attribute(x, target=0)
