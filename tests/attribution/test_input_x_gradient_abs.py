"""InputXGradient(abs_gradient=True): |gradient| x input, beside Captum's signed default."""
import numpy as np
import pytest

from fwdderiv.attribution import InputXGradient, Saliency

from .conftest import close


@pytest.mark.parametrize("target", [[1, 3, 3], "all"])
def test_abs_gradient_is_saliency_times_input(convnet, images, target):
    x = images - 0.5                              # inputs of both signs
    ours = InputXGradient(convnet).attribute(x, target=target, abs_gradient=True)
    grads = Saliency(convnet).attribute(x, target=target, abs=False)
    xx = x[:, None] if target == "all" else x
    np.testing.assert_array_equal(ours, np.abs(grads) * xx)
    signed = InputXGradient(convnet).attribute(x, target=target)
    np.testing.assert_array_equal(signed, grads * xx)
    # the two differ exactly where the gradient is negative (and x is not 0)
    assert np.any(ours != signed)
    np.testing.assert_array_equal(np.sign(ours), np.sign(xx) * (grads != 0))


def test_default_still_matches_captum(convnet, torch_twin, images):
    import captum.attr as C
    import torch

    theirs = C.InputXGradient(torch_twin).attribute(torch.from_numpy(images), target=[1, 3, 3])
    close(InputXGradient(convnet).attribute(images, target=[1, 3, 3], abs_gradient=False),
          theirs)
