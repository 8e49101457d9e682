"""Tangents of maps that act on rows (the last axis) of a value, one pass per row: a
layer norm's standardisation and a softmax. NumPy writes each as three or four passes
over the tangents (a product, a mean, a difference, a product), each allocating a
tangent-sized array; here each row of each direction is read twice and written once.

Shapes: the primal quantities are (N, R, L), the tangents (N, D, R, L): D directions of
N examples, R rows of length L. One thread, as the rectifier's kernel: the rows run
between the matrix products of attention and MLP blocks, whose threads a parallel kernel
would compete with (docs/pages/performance.md has the measurement).
"""
import numpy as np
from numba import njit

from ..config import NUMBA_OPTS


@njit(**NUMBA_OPTS)
def _row(ndr, D, R):
    # row ndr of the flattened (N, D, R) rows: its example, direction and row
    return ndr // (D * R), (ndr // R) % D, ndr % R


@njit(**NUMBA_OPTS)
def _standardise(xhat, r, dx, out):
    # out = r * (dx - mean(dx) - xhat * mean(xhat * dx)) over each row
    N, D, R, L = dx.shape
    for ndr in range(N * D * R):
        n, d, i = _row(ndr, D, R)
        xh, v, o = xhat[n, i], dx[n, d, i], out[n, d, i]
        s1 = 0.0
        s2 = 0.0
        for k in range(L):
            s1 += v[k]
            s2 += xh[k] * v[k]
        s1 /= L
        s2 /= L
        ri = r[n, i]
        for k in range(L):
            o[k] = ri * (v[k] - s1 - xh[k] * s2)


@njit(**NUMBA_OPTS)
def _softmax(y, dx, out):
    # out = y * (dx - <y, dx>) over each row
    N, D, R, L = dx.shape
    for ndr in range(N * D * R):
        n, d, i = _row(ndr, D, R)
        yi, v, o = y[n, i], dx[n, d, i], out[n, d, i]
        s = 0.0
        for k in range(L):
            s += yi[k] * v[k]
        for k in range(L):
            o[k] = yi[k] * (v[k] - s)


def _rows(a, lead):
    """``a`` as (``lead`` leading axes, R, L), contiguous."""
    return np.ascontiguousarray(a).reshape(a.shape[:lead] + (-1, a.shape[-1]))


def standardise_jvp(xhat, r, dx):
    """The tangents ``dx`` (N, D, *S) of ``x -> (x - mean) / sqrt(var + eps)`` over the
    last axis of S, given the standardised ``xhat`` (N, *S) and ``r = 1/sqrt(var + eps)``
    (N, *S[:-1], 1)."""
    out = np.empty(dx.shape, dx.dtype)
    _standardise(_rows(xhat, 1), np.ascontiguousarray(r).reshape(r.shape[0], -1),
                 _rows(dx, 2), out.reshape(dx.shape[:2] + (-1, dx.shape[-1])))
    return out


def softmax_jvp(y, dx):
    """The tangents ``dx`` (N, D, *S) of a softmax over the last axis of S whose output
    is ``y`` (N, *S)."""
    out = np.empty(dx.shape, dx.dtype)
    _softmax(_rows(y, 1), _rows(dx, 2), out.reshape(dx.shape[:2] + (-1, dx.shape[-1])))
    return out
