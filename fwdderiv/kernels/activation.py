"""The error function entry by entry (NumPy has none; ``math.erf`` compiles in Numba), for
the exact GELU."""
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
