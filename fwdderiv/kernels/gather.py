"""The transpose of a gather at constant positions: a scatter-add, ``out[b, flat[m]] +=
g[b, m]`` (the VJP of :class:`fwdderiv.Gather` and :class:`fwdderiv.GatherElements`).
NumPy's ``np.add.at`` and sort-and-``reduceat`` forms run about ten times slower than one
pass over ``g``."""
import numpy as np
from numba import njit

from ..config import NUMBA_OPTS


@njit(**NUMBA_OPTS)
def _scatter_add(g, flat, out):
    for b in range(g.shape[0]):
        for m in range(flat.size):
            out[b, flat[m]] += g[b, m]


def scatter_add(g, flat, size):
    """``g`` of shape ``(..., M)`` added into a zero array of shape ``(..., size)`` at the
    positions ``flat`` (M ints in ``[0, size)``, repeats adding up): the transpose of
    ``g[..., flat]``, in ``g``'s dtype."""
    lead = g.shape[:-1]
    rows = np.ascontiguousarray(g).reshape(-1, g.shape[-1])
    out = np.zeros((rows.shape[0], size), g.dtype)
    if rows.size:
        _scatter_add(rows, np.ascontiguousarray(flat, np.int64).reshape(-1), out)
    return out.reshape(lead + (size,))
