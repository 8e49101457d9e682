"""The depthwise convolution kernel that forward mode's tangents go through
(``Conv2d.jvp`` when groups == in_channels == out_channels): equal to PyTorch's grouped
``conv2d`` for every stride, padding, dilation and kernel size, in both dtypes, and the
layer's JVP equal to that of the same convolution as a dense one."""
import itertools

import numpy as np
import pytest
import torch

import fwdderiv as fd
from fwdderiv.kernels.conv import depthwise_conv


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_depthwise_conv_equals_torch(dtype, tol):
    rng = np.random.default_rng(0)
    cases = 0
    for k, s, p, d, (H, W) in itertools.product((1, 3, 5), (1, 2, 3), (0, 1, 3), (1, 2),
                                                 ((5, 9), (8, 7), (3, 3))):
        if H + 2 * p < d * (k - 1) + 1 or W + 2 * p < d * (k - 1) + 1:
            continue                                        # no output
        x = rng.standard_normal((2, 4, H, W)).astype(dtype)
        w = rng.standard_normal((4, 1, k, k)).astype(dtype)
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                              stride=s, padding=p, dilation=d, groups=4)
        got = depthwise_conv(x, w, (s, s), (p, p), (d, d))
        assert got.shape == tuple(expected.shape), (k, s, p, d, H, W)
        np.testing.assert_allclose(got, expected.numpy(), rtol=tol, atol=tol,
                                   err_msg=str((k, s, p, d, H, W)))
        cases += 1
    assert cases > 100


@pytest.mark.parametrize("options", [dict(kernel_size=3, padding=1),
                                     dict(kernel_size=(5, 3), stride=(2, 1), padding=(2, 0)),
                                     dict(kernel_size=3, padding=2, dilation=2,
                                          padding_mode="reflect")])
def test_a_depthwise_layers_jvp_is_that_of_its_dense_equivalent(options):
    """The same convolution as a groups=1 layer with a block-diagonal weight, which takes
    the im2col product."""
    layer = fd.Conv2d(6, 6, groups=6, seed=1, **options)
    dense = fd.Conv2d(6, 6, seed=1, **options)
    dense.weight = np.zeros_like(dense.weight)
    for c in range(6):
        dense.weight[c, c] = layer.weight[c, 0]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 9, 8))
    dx = rng.standard_normal((2, 5, 6, 9, 8))
    got = layer.jvp(layer.forward(x)[1], dx)
    np.testing.assert_allclose(got, dense.jvp(dense.forward(x)[1], dx), rtol=1e-13,
                               atol=1e-13)
