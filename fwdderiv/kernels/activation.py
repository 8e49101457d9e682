"""Activations entry by entry: the error function (NumPy has none; ``math.erf`` compiles
in Numba) for the exact GELU, and the rectifier with its slope in one pass."""
import math

import numpy as np
from numba import njit

from ..config import NUMBA_OPTS


@njit(**NUMBA_OPTS)
def _erf(x, out):
    for i in range(x.size):
        out[i] = math.erf(x[i])


def erf(x):
    """``erf(x)`` of a float array, shaped and typed like ``x``."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    if flat.size:
        _erf(flat, out)
    return out.reshape(x.shape)


@njit(**NUMBA_OPTS)
def _relu(x, y, slope):
    # one thread: a network of Linear and ReLU layers keeps BLAS's own threads, which
    # a parallel kernel between their products would compete with (fwdderiv.threads)
    for i in range(x.size):
        v = x[i]
        live = not v <= 0          # NaN is live: it passes through with slope 1
        y[i] = v if live else 0.0
        slope[i] = 1.0 if live else 0.0


def relu(x):
    """``(max(x, 0), 1[not x <= 0])`` of a float array in one pass, shaped and typed like
    ``x`` (NumPy's ``maximum`` and the slope's comparison, negation and cast take four
    passes). A NaN gives NaN with slope 1, -0.0 gives 0.0."""
    flat = np.ascontiguousarray(x).reshape(-1)
    y, slope = np.empty_like(flat), np.empty_like(flat)
    if flat.size:
        _relu(flat, y, slope)
    return y.reshape(x.shape), slope.reshape(x.shape)
