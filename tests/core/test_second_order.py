"""jvp_grad of every layer (the gradient of <g, J(x) dx> in x and the parameters) against
the dense central-difference reference, in float64; the zero-curvature conventions."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.core.second_order import jvp_grad_reference

from ..layers.specs import SPECS


def to_float64(layer):
    for name, value in {**layer.params, **layer.buffers}.items():
        if value is not None:
            setattr(layer, name, value.astype(np.float64))
    return layer


def compare(layer, xs, D=2, seed=0):
    rng = np.random.default_rng(seed)
    multi = getattr(layer, "multi_input", False)
    xs = list(xs) if multi else [xs]
    y, cache = layer.forward(*xs)
    dxs = [rng.normal(size=(a.shape[0], D) + a.shape[1:]) for a in xs]
    gdy = rng.normal(size=(y.shape[0], D) + y.shape[1:])
    gx, gparams = layer.jvp_grad(cache, tuple(xs) if multi else xs[0],
                                 tuple(dxs) if multi else dxs[0], gdy)
    rx, rparams = jvp_grad_reference(layer, tuple(xs) if multi else xs[0],
                                     tuple(dxs) if multi else dxs[0], gdy)
    assert set(gparams) == set(rparams) == {k for k, v in layer.params.items() if v is not None}
    for name in rparams:
        assert gparams[name].shape == rparams[name].shape
        np.testing.assert_allclose(gparams[name], rparams[name], rtol=1e-6, atol=1e-8,
                                   err_msg=f"{layer!r} {name}")
    gx = gx if multi else (gx,)
    rx = rx if multi else (rx,)
    for i, r in enumerate(rx):
        g = np.zeros_like(r) if gx is None or gx[i] is None else gx[i]
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-8, err_msg=f"{layer!r} input {i}")
    return rx


@pytest.mark.parametrize("row", SPECS, ids=[r[0] for r in SPECS])
@pytest.mark.parametrize("seed", [0, 1])
def test_jvp_grad_matches_reference(row, seed):
    _, factory, kind, maker = row
    rng = np.random.default_rng(seed)
    shape = (2, 5, 4) if kind == "image" else (5,)
    layer = to_float64(factory(rng, *shape))
    compare(layer, maker(rng, (2,) + shape), seed=seed)


@pytest.mark.parametrize("layer", [fd.Add(), fd.Mul(), fd.Concat(1)], ids=repr)
def test_jvp_grad_multi_input(layer):
    rng = np.random.default_rng(3)
    compare(layer, (rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))))


@pytest.mark.parametrize("layer", [fd.Scale(-1.5), fd.Reshape((-1,)),
                                   fd.Slice([1], [3], [2]), fd.Pad((1, 2))], ids=repr)
def test_linear_parameter_free_layers_have_no_second_order_term(layer):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 4))
    y, cache = layer.forward(x)
    gx, gp = layer.jvp_grad(cache, x, rng.normal(size=(2, 2, 3, 4)),
                            rng.normal(size=(2, 2) + y.shape[1:]))
    assert gx is None and gp == {}
    compare(layer, x)          # and the reference agrees: zero


@pytest.mark.parametrize("f, x, expected", [
    (fd.Sigmoid(), 0.0, 0.0),                       # y = 1/2: y(1-y)(1-2y) = 0
    (fd.Sigmoid(), np.log(3.0), 0.75 * 0.25 * -0.5),  # y = 3/4
    (fd.Tanh(), 0.0, 0.0),
    (fd.ReLU(), 1.0, 0.0), (fd.ReLU(), -1.0, 0.0), (fd.ReLU(), 0.0, 0.0),
])
def test_second_slope_exact_values(f, x, expected):
    assert f.second_slope(np.array([[x]]))[0, 0] == pytest.approx(expected, abs=1e-15)


def test_relu_and_maxpool_curvature_is_zero_even_at_kinks():
    """Piecewise-linear layers: jvp_grad is zero (as PyTorch's double backward)."""
    x = np.zeros((1, 1, 2, 2))
    for layer in (fd.ReLU(), fd.MaxPool2d(2)):
        y, cache = layer.forward(x)
        gx, gp = layer.jvp_grad(cache, x, np.ones((1, 1, 1, 2, 2)), np.ones((1, 1) + y.shape[1:]))
        assert gp == {} and (gx is None or not np.any(gx))


def test_layer_without_jvp_grad_is_named():
    class Square(fd.Elementwise):
        def value_and_slope(self, x):
            return x * x, 2 * x
    net = fd.Sequential([fd.Linear(2, 2), Square()])
    from fwdderiv.core.second_order import jvp_param_grads
    with pytest.raises(NotImplementedError, match="Square.*second_slope"):
        jvp_param_grads(net, np.ones((1, 2)), np.ones((1, 1, 2)), np.ones((1, 1, 2)))


@pytest.mark.parametrize("layer, shape", [
    (fd.LayerNorm(4), (2, 3, 4)),                              # last axis of three
    (fd.LayerNorm(4, elementwise_affine=False), (2, 3, 4)),
    (fd.LayerNorm([3, 4], bias=False), (2, 2, 3, 4)),
    (fd.GroupNorm(2, 4, affine=False), (2, 4, 3)),
    (fd.GroupNorm(1, 4), (2, 4, 3, 2)),
], ids=repr)
def test_normalisation_second_order_follows_the_statistics(layer, shape):
    """The statistics move with x: jvp_grad has an input part, checked for each option."""
    rng = np.random.default_rng(5)
    if layer.weight is not None:
        layer.weight = rng.normal(size=layer.weight.shape)
    rx = compare(to_float64(layer), rng.normal(size=shape))
    assert np.abs(rx).max() > 1e-3          # a real, non-zero input term was compared


def test_conv_tangent_columns_are_kept_for_jvp_grad(monkeypatch):
    """Conv2d.jvp_residual hands its tangent columns to jvp_grad (the second-order pass
    passes them on), with the same result as recomputing them."""
    rng = np.random.default_rng(6)
    conv = to_float64(fd.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", seed=1))
    x, dx = rng.normal(size=(2, 2, 5, 5)), rng.normal(size=(2, 2, 2, 5, 5))
    _, cache = conv.forward(x)
    dy, cols = conv.jvp_residual(cache, dx)
    np.testing.assert_array_equal(dy, conv.jvp(cache, dx))
    gdy = rng.normal(size=dy.shape)
    kept = conv.jvp_grad(cache, x, dx, gdy, residual=cols)[1]
    fresh = conv.jvp_grad(cache, x, dx, gdy)[1]
    for name in fresh:
        np.testing.assert_allclose(kept[name], fresh[name], rtol=1e-12, atol=1e-14)
    seen = []
    original = fd.Conv2d.jvp_grad
    monkeypatch.setattr(fd.Conv2d, "jvp_grad", lambda self, *a, **k: (
        seen.append(k.get("residual") is not None), original(self, *a, **k))[1])
    from fwdderiv.core.second_order import jvp_param_grads
    net = fd.Sequential([conv, fd.Tanh(), fd.Flatten(), fd.Linear(75, 2)])
    jvp_param_grads(net, x, dx, rng.normal(size=(2, 2, 2)))
    assert seen == [True]
