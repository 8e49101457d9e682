"""Where a network is not differentiable at a point: ReLU inputs at (or near) zero,
max-pool windows whose two largest values (nearly) tie, and whatever else a layer
declares through its ``kinks(x, tol)`` method.

At such a kink fwdderiv follows PyTorch's one-sided conventions (relu'(0) = 0, ties go to
the first maximum), while a central finite difference straddles the kink and averages the
two sides. A disagreement with finite differences at a point with kinks is therefore not
by itself a bug; this census says whether, and where, the point has any.
"""
import numpy as np


def kink_census(net, x, tol=1e-6):
    """Count kinks of ``net`` at ``x``, node by node.

    Parameters
    ----------
    net : Sequential or Graph
    x : ndarray of shape (N, *S_in)
    tol : float
        A ReLU input with ``|h| <= tol`` or a max-pool window whose two largest values
        differ by at most ``tol`` counts as a kink (a finite-difference step of that size
        can cross it).

    Returns
    -------
    list of (int, str, int)
        ``(node index, layer, number of kinks)`` for every node with at least one.
    """
    found = []

    def census(i, node, inputs):
        layer = node.layer
        count = (layer.kinks(inputs[0] if len(inputs) == 1 else inputs, tol)
                 if hasattr(layer, "kinks") else 0)
        if count:
            found.append((i, repr(layer), int(count)))

    net.forward(np.asarray(x, dtype=np.float64), visit=census)
    return found


def near_kinks(net, x, tol):
    """The units of elementwise layers with kinks (ReLU and the like: ``kink_points``)
    whose input lies within ``tol`` of a kink at ``x``: ``(node index, flat index, slope
    on the other side)`` for each, in node order. A forward pass in lower precision may
    decide such a unit the other way (see :func:`fwdderiv.interop.check.compare`)."""
    found = []

    def census(i, node, inputs):
        layer, h = node.layer, inputs[0].reshape(-1)
        for kp in getattr(layer, "kink_points", ()):
            idx = np.flatnonzero(np.abs(h - kp) <= tol)
            if idx.size:
                d = np.maximum(np.abs(h[idx] - kp), np.finfo(np.float64).tiny)
                other = np.where(h[idx] > kp, kp - d, kp + d)
                slopes = layer.value_and_slope(other)[1]
                found.extend((i, int(j), float(s)) for j, s in zip(idx, slopes))

    net.forward(np.asarray(x, dtype=np.float64), visit=census)
    return found
