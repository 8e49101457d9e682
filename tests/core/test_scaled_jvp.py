"""An elementwise layer before a layer with ``jvp_scaled`` (Linear), directly or through
layers that only reshape, is fused into it in the dense part of forward mode: the result
equals the unfused chain and reverse mode, the fused path really runs, and the live
columns path and the whole-batch fallback give the same numbers."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.core.plan import without
from fwdderiv.fusions import scaled_linear as linear_module, window_head
from fwdderiv.fusions.scaled_linear import jvp_scaled, live_columns


def calls_of_jvp_scaled(monkeypatch):
    seen = []
    orig = linear_module.jvp_scaled

    def spy(linear, cache, dx, slope, **kw):
        seen.append((dx.shape[0], slope.shape, sorted(kw)))
        return orig(linear, cache, dx, slope, **kw)

    monkeypatch.setattr(linear_module, "jvp_scaled", spy)
    return seen


def unfused():
    """The plan without the slope fusions: the elementwise layer's own JVP, then the
    Linear layer's."""
    return without("slope into linear", "windows into head")


@pytest.mark.parametrize("live_share", [0.5, 0.0, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_slope_equals_the_unfused_chain(monkeypatch, live_share, dtype):
    # a conv head (windowed, then Flatten between the ReLU and the Linear) and an MLP
    # (the first Linear's tangent is shared by the examples, batch 1)
    monkeypatch.setattr(linear_module, "LIVE_SHARE", live_share)
    rng = np.random.default_rng(1)
    conv = fd.Sequential([fd.Conv2d(1, 3, 3, seed=1), fd.ReLU(), fd.MaxPool2d(2),
                          fd.Conv2d(3, 8, 4, seed=2), fd.ReLU(), fd.Flatten(),
                          fd.Linear(8, 6, seed=3), fd.GELU(), fd.Identity(),
                          fd.Linear(6, 4, seed=4), fd.Softmax()])
    mlp = fd.models.mlp(hidden=(12, 9), seed=5)
    for net, x in ((conv, rng.normal(size=(5, 1, 10, 10))),
                   (mlp, rng.normal(size=(4, 1, 28, 28)))):
        x = x.astype(dtype)
        seen = calls_of_jvp_scaled(monkeypatch)
        J = net.jacobian(x)
        assert len(seen) == 2, seen                     # both ReLU/GELU -> Linear pairs
        if live_share == 1.0 and net is conv:
            # every unit counts as few: the conv computes only the first Linear's
            # columns, the first Linear only the second one's
            assert [kw for _, _, kw in seen] == [["cols", "out_cols"], ["cols"]], seen
        Jr = net.jacobian(x, mode="reverse")
        Jt = net.jacobian(x, intermediates=True)        # traced: no fusion
        monkeypatch.undo()
        monkeypatch.setattr(linear_module, "LIVE_SHARE", live_share)
        with unfused():
            J0 = net.jacobian(x)
        monkeypatch.undo()
        tol = 1e-12 if dtype == np.float64 else 1e-5
        scale = np.abs(J0).max()
        np.testing.assert_allclose(J, J0, rtol=tol, atol=tol * scale)
        np.testing.assert_allclose(J, Jr, rtol=tol, atol=tol * scale)
        np.testing.assert_allclose(Jt.jacobian, J0, rtol=tol, atol=tol * scale)


def test_dead_units_and_a_value_read_twice():
    # every unit dead: zeros; a ReLU read by two layers is not fused (its tangent is needed)
    lin = fd.Linear(4, 3, seed=0)
    slope = np.zeros((2, 4))
    dx = np.ones((2, 5, 4))
    assert not jvp_scaled(lin, None, dx, slope).any()
    assert jvp_scaled(lin, None, dx, slope).shape == (2, 5, 3)
    g = fd.Graph([("h", fd.Linear(6, 4, seed=1), "input"), ("r", fd.ReLU(), "h"),
                  ("a", fd.Linear(4, 2, seed=2), "r"), ("b", fd.Linear(4, 2, seed=3), "r"),
                  ("s", fd.Add(), ("a", "b"))])
    x = np.random.default_rng(2).normal(size=(3, 6))
    np.testing.assert_allclose(g.jacobian(x), g.jacobian(x, mode="reverse"), rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_column_tangents_equal_the_columns_of_the_full_tangents(monkeypatch, dtype):
    # live_columns + jvp_scaled(cols=, out_cols=) and dense_from_windows(out_cols=) give
    # exactly the entries the full computations give at those columns
    rng = np.random.default_rng(3)
    lin = fd.Linear(7, 5, seed=2)
    slope = (rng.random((4, 7)) < 0.4) * rng.normal(size=(4, 7))
    cols = live_columns(lin, slope)
    assert cols.shape == (4, int((slope != 0).sum(axis=1).max()))
    assert all(set(np.flatnonzero(s)) <= set(c) for s, c in zip(slope, cols))
    dx = rng.normal(size=(4, 3, 7)).astype(dtype)
    out_cols = rng.integers(0, 5, size=(4, 2))
    full = lin.jvp(None, dx * slope[:, None].astype(dtype))
    picked = np.take_along_axis(full, out_cols[:, None, :], axis=2)
    dxc = np.take_along_axis(dx, cols[:, None, :], axis=2)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(jvp_scaled(lin, None, dxc, slope, cols=cols), full,
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(jvp_scaled(lin, None, dx, slope, out_cols=out_cols), picked,
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(
        jvp_scaled(lin, None, dxc, slope, cols=cols, out_cols=out_cols), picked,
        rtol=tol, atol=tol)
    # a conv whose kernel covers its input, from the windows of a conv + pool
    net = fd.Sequential([fd.Conv2d(1, 3, 3, seed=4), fd.ReLU(), fd.MaxPool2d(2),
                         fd.Conv2d(3, 6, 4, seed=5)])
    x = rng.normal(size=(3, 1, 10, 10)).astype(dtype)
    conv, captured = net.layers[3], {}
    real = window_head.dense_from_windows

    def spy(layer, cache, T, window, dense, out_cols=None):
        captured["args"] = (cache, T, window, dense)
        return real(layer, cache, T, window, dense)
    monkeypatch.setattr(window_head, "dense_from_windows", spy)
    net.jacobian(x)
    monkeypatch.undo()
    cache, T, window, dense = captured["args"]
    full = window_head.dense_from_windows(conv, cache, T, window, dense)[..., 0, 0]         # (3, D, 6)
    oc = rng.integers(0, 6, size=(3, 4))
    np.testing.assert_array_equal(window_head.dense_from_windows(conv, cache, T, window, dense,
                                                                 out_cols=oc),
                                  np.take_along_axis(full, oc[:, None, :], axis=2))
