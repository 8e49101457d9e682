"""Derivative checks for your own layers and networks, the ones fwdderiv's tests use.

>>> import numpy as np, fwdderiv as fd
>>> from fwdderiv.testing import check_jvp, check_vjp, check_shapes
>>> x = np.random.default_rng(0).normal(size=(2, 3))
>>> err = check_jvp(fd.Tanh(), x)          # raises AssertionError if it disagrees
>>> err = check_vjp(fd.Linear(3, 4), x)
>>> check_shapes(fd.Conv2d(1, 2, 3), (1, 5, 5))
"""
import numpy as np

from .config import tolerance
from .core.sequential import Sequential
from .numeric import CENTRAL_STEP


def _functions(obj):
    """(f, jvp, vjp, output_shape) for a layer or a Sequential, all taking x first."""
    if isinstance(obj, Sequential):
        return obj.forward, lambda x, dx: obj.jvp(x, dx)[1], lambda x, gy: obj.vjp(x, gy)[1]

    def jvp(x, dx):
        return obj.jvp(obj.forward(x)[1], dx)

    def vjp(x, gy):
        return obj.vjp(obj.forward(x)[1], gy)
    return (lambda x: obj.forward(x)[0]), jvp, vjp


def check_jvp(layer, x, n_directions=3, seed=0, rtol=None, atol=None):
    """Compare ``layer``'s JVP with central finite differences in random directions.

    Parameters
    ----------
    layer : layer or Sequential
    x : ndarray of shape (N, *S)
        The point, kept away from kinks (ReLU at 0, ties in a max-pool window).
        Checked in float64 whatever its dtype.
    n_directions : int
    rtol, atol : float, optional
        Default: the float64 finite-difference tolerances of :mod:`fwdderiv.config`.

    Returns
    -------
    float
        The worst relative error, ``max|jvp - fd| / max|fd|``.

    Raises
    ------
    AssertionError
        With the worst entry, when the error exceeds the tolerance.
    """
    f, jvp, _ = _functions(layer)
    x = np.asarray(x, np.float64)
    rtol = tolerance(np.float64, "fd_rtol") if rtol is None else rtol
    atol = tolerance(np.float64, "fd_atol") if atol is None else atol
    rng = np.random.default_rng(seed)
    dx = rng.standard_normal((x.shape[0], n_directions) + x.shape[1:])
    dy = jvp(x, dx)
    h = CENTRAL_STEP * max(1.0, float(np.abs(x).max(initial=0.0)))
    fd = np.stack([(f(x + h * dx[:, d]) - f(x - h * dx[:, d])) / (2 * h)
                   for d in range(n_directions)], axis=1)
    if dy.shape != fd.shape:
        raise AssertionError(f"{layer!r}: jvp returned shape {dy.shape}, expected {fd.shape}")
    diff = np.abs(dy - fd)
    scale = max(float(np.abs(fd).max(initial=0.0)), 1e-300)
    err = float(diff.max(initial=0.0)) / scale
    if not np.all(diff <= atol + rtol * scale):
        i = np.unravel_index(np.argmax(diff), diff.shape)
        raise AssertionError(
            f"{layer!r}: JVP disagrees with central finite differences: relative error "
            f"{err:.3g} > {rtol:g}; worst entry {i}: jvp {dy[i]!r}, fd {fd[i]!r}")
    return err


def check_vjp(layer, x, n_cotangents=3, seed=0, rtol=None):
    """Check the adjoint identity ``<u, J v> = <J^T u, v>`` in float64.

    Returns the worst relative error over ``n_cotangents`` random pairs (u, v), relative
    to ``|u| |J v| + |J^T u| |v|``; raises AssertionError above ``rtol`` (default 1e-12).
    """
    f, jvp, vjp = _functions(layer)
    x = np.asarray(x, np.float64)
    rtol = 1e-12 if rtol is None else rtol
    rng = np.random.default_rng(seed)
    y = f(x)
    v = rng.standard_normal((x.shape[0], n_cotangents) + x.shape[1:])
    u = rng.standard_normal((y.shape[0], n_cotangents) + y.shape[1:])
    Jv, JTu = jvp(x, v), vjp(x, u)
    if JTu.shape != v.shape:
        raise AssertionError(f"{layer!r}: vjp returned shape {JTu.shape}, expected {v.shape}")
    axes = tuple(range(2, u.ndim))
    lhs = (u * Jv).sum(axis=axes)
    rhs = (JTu * v).sum(axis=tuple(range(2, v.ndim)))
    scale = (np.linalg.norm(u.reshape(u.shape[:2] + (-1,)), axis=-1)
             * np.linalg.norm(Jv.reshape(Jv.shape[:2] + (-1,)), axis=-1)
             + np.linalg.norm(JTu.reshape(JTu.shape[:2] + (-1,)), axis=-1)
             * np.linalg.norm(v.reshape(v.shape[:2] + (-1,)), axis=-1))
    rel = np.abs(lhs - rhs) / np.maximum(scale, 1e-300)
    err = float(rel.max(initial=0.0))
    if err > rtol:
        raise AssertionError(f"{layer!r}: <u, J v> = {lhs.ravel()[0]!r} but <J^T u, v> = "
                             f"{rhs.ravel()[0]!r}; relative error {err:.3g} > {rtol:g}")
    return err


def check_shapes(layer, in_shape, batch=2, directions=3, dtype=np.float64):
    """Check that the declared output shape matches what forward, jvp and vjp return."""
    f, jvp, vjp = _functions(layer)
    declared = tuple(layer.output_shape(tuple(in_shape)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + tuple(in_shape)).astype(dtype)
    y = f(x)
    checks = [("forward", y.shape, (batch,) + declared, y.dtype),
              ("jvp", jvp(x, np.ones((batch, directions) + x.shape[1:], dtype)).shape,
               (batch, directions) + declared, None),
              ("vjp", vjp(x, np.ones((batch, directions) + declared, dtype)).shape,
               (batch, directions) + tuple(in_shape), None)]
    for what, got, expected, out_dtype in checks:
        if tuple(got) != expected:
            raise AssertionError(f"{layer!r}: {what} returned shape {tuple(got)}, but "
                                 f"output_shape({tuple(in_shape)}) = {declared} implies {expected}")
        if out_dtype is not None and out_dtype != np.dtype(dtype):
            raise AssertionError(f"{layer!r}: {what} returned {out_dtype} for {np.dtype(dtype)} input")
