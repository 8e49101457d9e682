"""Average pooling whose windows tile the input (a global average pool among them) takes
the mean by a reshape, with no im2col: the same numbers as the general path."""
import numpy as np
import pytest

import fwdderiv as fd


@pytest.mark.parametrize("kernel, shape", [(8, (3, 8, 8)), (2, (2, 6, 4)), ((3, 2), (1, 9, 4)),
                                           (4, (2, 7, 8))])          # 7 rows: not tiled
def test_tiled_mean_and_its_adjoint_equal_the_general_path(monkeypatch, kernel, shape):
    layer = fd.AvgPool2d(kernel)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2,) + shape)
    y, cache = layer.forward(x)
    gy = rng.normal(size=(2, 3) + y.shape[1:])
    dx = rng.normal(size=(2, 3) + shape)
    fast = layer.forward(x)[0], layer.vjp(cache, gy), layer.jvp(cache, dx)
    tiled = layer._tiles(shape)
    assert tiled == (shape[1] % layer.kernel_size[0] == 0 and shape[2] % layer.kernel_size[1] == 0)
    monkeypatch.setattr(fd.AvgPool2d, "_tiles", lambda self, s: False)
    plain = layer.forward(x)[0], layer.vjp(cache, gy), layer.jvp(cache, dx)
    for a, b in zip(fast, plain):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
    # the pull-back is the adjoint of the push-forward
    np.testing.assert_allclose(np.sum(fast[1] * dx), np.sum(gy * fast[2]), rtol=1e-12)
