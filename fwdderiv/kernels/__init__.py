"""Numba kernels. Private ``@njit`` loops over preallocated, C-contiguous arrays; the
Python functions beside them validate and allocate. Flags come from ``fwdderiv.config``."""
import numpy as np
from numba import njit, prange

from ..config import NUMBA_PARALLEL_OPTS


@njit(**NUMBA_PARALLEL_OPTS)
def _launch(out):
    # the smallest parallel loop: running it makes Numba choose its threading layer
    for i in prange(out.shape[0]):
        out[i] = i


def choose_threading_layer():
    """Run the smallest parallel kernel, so that Numba chooses its threading layer now
    (it does so at the first parallel kernel of the process)."""
    _launch(np.empty(2))
