"""Where a network is not differentiable at a point: ReLU inputs at (or near) zero and
max-pool windows whose two largest values (nearly) tie.

At such a kink fwdderiv follows PyTorch's one-sided conventions (relu'(0) = 0, ties go to
the first maximum), while a central finite difference straddles the kink and averages the
two sides. A disagreement with finite differences at a point with kinks is therefore not
by itself a bug; this census says whether, and where, the point has any.
"""
import numpy as np

from ..kernels.conv import im2col
from ..layers import MaxPool2d, ReLU


def kink_census(net, x, tol=1e-6):
    """Count kinks of ``net`` at ``x``, layer by layer.

    Parameters
    ----------
    net : Sequential
    x : ndarray of shape (N, *S_in)
    tol : float
        A ReLU input with ``|h| <= tol`` or a max-pool window whose two largest values
        differ by at most ``tol`` counts as a kink (a finite-difference step of that size
        can cross it).

    Returns
    -------
    list of (int, str, int)
        ``(layer index, layer, number of kinks)`` for every layer with at least one.
    """
    found = []
    h = np.asarray(x, dtype=np.float64)
    for i, layer in enumerate(net.layers):
        count = 0
        if type(layer) is ReLU:
            count = int(np.count_nonzero(np.abs(h) <= tol))
        elif type(layer) is MaxPool2d:
            M, C, H, W = h.shape
            cols = im2col(h.reshape(M * C, 1, H, W), layer.kernel_size, layer.stride,
                          layer.padding, (1, 1), fill=-np.inf)
            if cols.shape[2] > 1:
                top2 = -np.partition(-cols, 1, axis=2)[:, :, :2]
                count = int(np.count_nonzero(np.abs(top2[:, :, 0] - top2[:, :, 1]) <= tol))
        if count:
            found.append((i, repr(layer), count))
        h = layer.forward(h)[0]
    return found
