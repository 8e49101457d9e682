"""Every layer: JVP vs central finite differences, VJP adjoint identity, declared shapes.

Driven by the table in ``specs.py``; hypothesis draws shapes and seeds.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fwdderiv.testing import check_jvp, check_shapes, check_vjp

from .specs import SPECS

IDS = [row[0] for row in SPECS]


@st.composite
def case(draw, kind):
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(1, 3))
    if kind == "image":
        shape = (draw(st.sampled_from([2, 4])), draw(st.integers(3, 7)), draw(st.integers(3, 7)))
    else:
        shape = (draw(st.integers(2, 9)),)
    return seed, n, shape


def build(row, seed, n, shape):
    _, factory, _, maker = row
    rng = np.random.default_rng(seed)
    layer = factory(rng, *shape)
    return layer, maker(rng, (n,) + shape)


@pytest.mark.parametrize("row", SPECS, ids=IDS)
@given(data=st.data())
def test_jvp_matches_central_differences(row, data):
    layer, x = build(row, *data.draw(case(row[2])))
    assert check_jvp(layer, x) < 1e-6


@pytest.mark.parametrize("row", SPECS, ids=IDS)
@given(data=st.data())
def test_vjp_is_the_adjoint_of_jvp(row, data):
    layer, x = build(row, *data.draw(case(row[2])))
    assert check_vjp(layer, x) < 1e-12


@pytest.mark.parametrize("row", SPECS, ids=IDS)
@given(data=st.data())
def test_declared_output_shape_is_real(row, data):
    seed, n, shape = data.draw(case(row[2]))
    layer, _ = build(row, seed, n, shape)
    for dtype in (np.float32, np.float64):
        check_shapes(layer, shape, batch=n, dtype=dtype)


@pytest.mark.parametrize("row", SPECS, ids=IDS)
def test_float32_stays_float32_and_agrees_with_float64(row):
    layer, x = build(row, 3, 2, (4, 6, 6) if row[2] == "image" else (5,))
    y64, c64 = layer.forward(x)
    y32, c32 = layer.forward(x.astype(np.float32))
    dx = np.random.default_rng(1).normal(size=(2, 3) + x.shape[1:])
    dy32 = layer.jvp(c32, dx.astype(np.float32))
    gx32 = layer.vjp(c32, np.ones((2, 2) + y32.shape[1:], np.float32))
    assert y32.dtype == dy32.dtype == gx32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dy32, layer.jvp(c64, dx), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("row", SPECS, ids=IDS)
def test_linear_layers_jvp_is_forward_without_bias(row):
    layer, x = build(row, 5, 2, (4, 5, 5) if row[2] == "image" else (6,))
    if not layer.linear:
        return
    y, cache = layer.forward(x)
    y0 = layer.forward(np.zeros_like(x))[0]          # the bias alone
    dy = layer.jvp(cache, x[:, None])[:, 0]
    np.testing.assert_allclose(dy, y - y0, rtol=1e-12, atol=1e-12)
