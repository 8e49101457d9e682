"""Every attribution method equals Captum's on the same weights in float64, and
target="all" equals the stack of per-target results."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.attribution import (InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion,
                                  Saliency)
from fwdderiv.attribution._quadrature import METHODS, _linspace_float32

from .conftest import close

import captum.attr as C  # noqa: E402
import torch  # noqa: E402


def T(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def test_float32_linspace_is_torchs():
    for n in list(range(2, 70)) + [97, 128, 255, 500]:
        for a, b in [(0, 1), (0, 1 - 1 / n), (1 / (2 * n), 1 - 1 / (2 * n)), (1 / n, 1)]:
            np.testing.assert_array_equal(_linspace_float32(a, b, n),
                                          torch.linspace(a, b, n).numpy())


@pytest.mark.parametrize("abs_", [True, False])
@pytest.mark.parametrize("target", [2, [0, 4, 1]])
def test_saliency(convnet, torch_twin, images, abs_, target):
    theirs = C.Saliency(torch_twin).attribute(T(images), target=target, abs=abs_)
    close(Saliency(convnet).attribute(images, target=target, abs=abs_), theirs)


def test_input_x_gradient(convnet, torch_twin, images):
    theirs = C.InputXGradient(torch_twin).attribute(T(images), target=[1, 3, 3])
    close(InputXGradient(convnet).attribute(images, target=[1, 3, 3]), theirs)


@pytest.mark.parametrize("method", METHODS)
def test_integrated_gradients_every_method_with_delta(convnet, torch_twin, images, method):
    kw = dict(target=[2, 0, 4], n_steps=9, method=method, return_convergence_delta=True)
    a, d = IntegratedGradients(convnet).attribute(images, **kw)
    ta, td = C.IntegratedGradients(torch_twin).attribute(T(images), **kw)
    close(a, ta)
    close(d, td)


@pytest.mark.parametrize("baselines", [0.5, "per-example", "one"])
@pytest.mark.parametrize("multiply", [True, False])
def test_integrated_gradients_baselines_batches_and_multiply(convnet, torch_twin, images,
                                                             baselines, multiply):
    rng = np.random.default_rng(5)
    b = {0.5: 0.5, "per-example": rng.random(images.shape),
         "one": rng.random((1,) + images.shape[1:])}[baselines]
    kw = dict(target=1, n_steps=20, internal_batch_size=7, return_convergence_delta=True)
    a, d = IntegratedGradients(convnet, multiply_by_inputs=multiply).attribute(
        images, baselines=b, **kw)
    tb = b if isinstance(b, float) else T(b)
    ta, td = C.IntegratedGradients(torch_twin, multiply_by_inputs=multiply).attribute(
        T(images), baselines=tb, **kw)
    close(a, ta)
    close(d, td)


@pytest.mark.parametrize("window, strides, ppe", [((1, 3, 3), (1, 2, 2), 1),
                                                  ((1, 2, 3), None, 4),
                                                  ((1, 5, 5), 3, 50)])
def test_occlusion(convnet, torch_twin, images, window, strides, ppe, monkeypatch):
    kw = dict(sliding_window_shapes=window, strides=strides, baselines=0.25, target=[3, 1, 0],
              perturbations_per_eval=ppe)
    ours = Occlusion(convnet).attribute(images, **kw)
    # Captum divides the summed drops by the window counts after casting them to float32
    # (format_result in captum/attr/_core/feature_ablation.py: single_attrib.float()):
    # its result agrees with ours to float32 rounding (sum and quotient rounded apart) ...
    theirs32 = C.Occlusion(torch_twin).attribute(T(images), **kw).numpy()
    assert theirs32.dtype == np.float32
    np.testing.assert_allclose(ours, theirs32, rtol=2.5e-7, atol=1e-12)
    # ... and, with that cast taken out, to float64 rounding
    import captum.attr._core.feature_ablation as fa

    def format_float64(total_attrib, weights, is_inputs_tuple, use_weights):
        attrib = tuple(a / w for a, w in zip(total_attrib, weights)) if use_weights \
            else tuple(total_attrib)
        return attrib if is_inputs_tuple else attrib[0]

    monkeypatch.setattr(fa, "format_result", format_float64)
    close(ours, C.Occlusion(torch_twin).attribute(T(images), **kw))


def _torch_noise(self, shape, stdev, rng):
    # Captum's draw: torch.normal with a float32 standard deviation tensor
    return torch.normal(0, torch.tensor(stdev).repeat(shape)).numpy()


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_over_saliency(convnet, torch_twin, images, nt_type, monkeypatch):
    monkeypatch.setattr(NoiseTunnel, "_noise", _torch_noise)
    kw = dict(nt_type=nt_type, nt_samples=5, nt_samples_batch_size=2, stdevs=0.2,
              target=[0, 2, 4], abs=False)
    torch.manual_seed(3)
    theirs = C.NoiseTunnel(C.Saliency(torch_twin)).attribute(T(images), **kw)
    torch.manual_seed(3)
    close(NoiseTunnel(Saliency(convnet)).attribute(images, **kw), theirs)


def test_noise_tunnel_over_integrated_gradients_with_delta(convnet, torch_twin, images,
                                                           monkeypatch):
    monkeypatch.setattr(NoiseTunnel, "_noise", _torch_noise)
    b = np.random.default_rng(2).random(images.shape)
    kw = dict(nt_samples=3, stdevs=0.1, target=[4, 4, 1], n_steps=8,
              return_convergence_delta=True)
    torch.manual_seed(0)
    ta, td = C.NoiseTunnel(C.IntegratedGradients(torch_twin)).attribute(
        T(images), baselines=T(b), **kw)
    torch.manual_seed(0)
    a, d = NoiseTunnel(IntegratedGradients(convnet)).attribute(images, baselines=b, **kw)
    close(a, ta)
    close(d, td)


@pytest.mark.parametrize("make, kw", [
    (Saliency, {}), (Saliency, {"abs": False}), (InputXGradient, {}),
    (IntegratedGradients, {"n_steps": 6, "baselines": 0.1}),
    (Occlusion, {"sliding_window_shapes": (1, 3, 3), "strides": 2}),
])
def test_target_all_is_the_stack_of_per_target_results(convnet, images, make, kw):
    m = make(convnet)
    every = m.attribute(images, target="all", **kw)
    assert every.shape == (3, 5) + images.shape[1:]
    stack = np.stack([m.attribute(images, target=k, **kw) for k in range(5)], axis=1)
    close(every, stack)


def test_target_all_deltas_and_noise_tunnel(convnet, images):
    ig = IntegratedGradients(convnet)
    a, d = ig.attribute(images, target="all", n_steps=6, return_convergence_delta=True)
    for k in range(5):
        ak, dk = ig.attribute(images, target=k, n_steps=6, return_convergence_delta=True)
        close(d[:, k], dk)
    nt = NoiseTunnel(Saliency(convnet))
    every = nt.attribute(images, target="all", stdevs=0.1, seed=4)
    close(every[:, 3], nt.attribute(images, target=3, stdevs=0.1, seed=4))


def test_forward_mode_for_all_targets_when_outputs_outnumber_inputs(images):
    # D = 4 input features, K = 6 outputs: "all" takes the forward-mode Jacobian
    net = fd.Sequential([fd.Linear(4, 6, seed=0), fd.Tanh(), fd.Linear(6, 6, seed=1)])
    x = images.reshape(3, -1)[:, :4]
    m = Saliency(net)
    close(m.attribute(x, target="all", abs=False), net.jacobian(x, mode="reverse"))
