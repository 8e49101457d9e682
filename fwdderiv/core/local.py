"""Windowed tangents: the forward derivative of the convolutional prefix of a network,
computed only where it can be non-zero.

With the identity seed, the tangent of input pixel ``p`` after a conv or pooling layer is
non-zero only inside that layer's receptive field around ``p``. Instead of carrying
``D = C0*H0*W0`` dense directions per activation, a windowed tangent carries, for every
activation entry, the derivatives with respect to the ``C0*Rh*Rw`` input pixels of its
receptive field (see :mod:`fwdderiv.kernels.local` for the layout). For LeNet-5 that is
36 instead of 1,024 values per entry after the first conv and pool, and 196 after the
second conv; the work shrinks by the same factors.

Each layer brings its own rule (``window_rule`` and ``window_jvp`` of the layer
protocol); ``(R, S, P)`` = window size, stride and offset of the receptive field along one
axis, so output ``y`` sees input pixels ``[y*S - P, y*S - P + R)``. Sliding windows (conv,
pooling) grow it with :func:`grow`; pointwise layers keep it.

The runner uses windows while they are smaller than the dense tangent and converts to the
dense layout ``(N, D, C, H, W)`` before the first layer without a rule (Flatten,
Linear...), whose windows would cover the whole input, or whose windows would not fit the
memory budget.
"""
from typing import NamedTuple

import numpy as np

from ..kernels.local import to_dense

#: Windows stop growing past this share of the image: the windowed kernels beat dense
#: tangents only while windows are small, and a window that covers most of the image
#: costs more than the dense tangent it replaces. A third keeps LeNet-5's last window on
#: MNIST (16x16 of 28x28, 33%) windowed and stops ResNet-20's windows early in its second
#: stage, before they cover most of the image. The measurements behind the limit:
#: docs/pages/performance.md#the-engines-thresholds-and-where-their-numbers-come-from.
MAX_SHARE = 1 / 3


class Window(NamedTuple):
    size: tuple     # (Rh, Rw)
    stride: tuple   # (Sh, Sw)
    offset: tuple   # (Ph, Pw)


def grow(window, kernel, stride, padding, dilation=(1, 1)):
    """The window after a sliding-window layer (kernel, stride, padding, dilation per
    axis): ``R' = R + (k-1)*d*S``, ``S' = s*S``, ``P' = P + p*S``."""
    return Window(
        tuple(r + (k - 1) * d * S for r, k, d, S in zip(window.size, kernel, dilation, window.stride)),
        tuple(s * S for s, S in zip(stride, window.stride)),
        tuple(P + p * S for P, p, S in zip(window.offset, padding, window.stride)))


def shift(window, top, left):
    """The window after padding ``top`` rows and ``left`` columns before the image."""
    return Window(window.size, window.stride,
                  (window.offset[0] + top * window.stride[0],
                   window.offset[1] + left * window.stride[1]))


def plan(layers, shapes):
    """How many leading layers run on windows, and the window after each of them.

    Stops before a layer without a windowed rule, or whose windows would hold as many
    values per entry as the dense tangent (``C0*Rh*Rw >= D``).
    """
    s_in = shapes[0]
    if len(s_in) != 3:
        return 0, []
    C0, H0, W0 = s_in
    window = Window((1, 1), (1, 1), (0, 0))
    windows = []
    for layer in layers:
        nxt = layer.window_rule(window) if hasattr(layer, "window_rule") else None
        if nxt is None or nxt.size[0] * nxt.size[1] >= H0 * W0:
            break
        windows.append(nxt)
        window = nxt
    return len(windows), windows


def plan_graph(nodes, shapes):
    """The windows of the longest prefix of a graph's nodes that have windowed rules.

    ``nodes`` lists ``(layer, input value indices)`` in evaluation order (value 0 is the
    input, value k + 1 node k's output). A layer with several inputs is asked
    ``window_rule(*windows)``. Stops before a node without a rule, or whose window would
    cover the whole image (then dense tangents cost no more). Returns the window of each
    node's value, for the nodes of the prefix.
    """
    s_in = shapes[0]
    if len(s_in) != 3:
        return []
    H0, W0 = s_in[1:]
    wins = [Window((1, 1), (1, 1), (0, 0))]
    for layer, inputs in nodes:
        rule = getattr(layer, "window_rule", None)
        ws = [wins[v] for v in inputs]
        nxt = None
        if rule is not None:
            nxt = rule(*ws) if getattr(layer, "multi_input", False) else rule(ws[0])
        if nxt is None or nxt.size[0] * nxt.size[1] > MAX_SHARE * H0 * W0:
            break
        wins.append(nxt)
    return wins[1:]


class Densify(NamedTuple):
    """Converts windowed tangents to the dense tangent ``(n, d1 - d0, *S)`` of the input
    directions ``d0 <= d < d1`` of an input of shape ``in_shape`` (the window head's
    fusion, :mod:`fwdderiv.fusions.window_head`, reads the same fields)."""
    in_shape: tuple
    n: int
    d0: int
    d1: int

    def __call__(self, T, window):
        return to_dense(T, window, self.in_shape, self.n, self.d0, self.d1)


def union(windows):
    """The smallest window holding every window of ``windows`` (same stride), or None if
    their strides differ."""
    if any(w.stride != windows[0].stride for w in windows):
        return None
    offset = tuple(max(w.offset[a] for w in windows) for a in (0, 1))
    end = tuple(max(w.size[a] - w.offset[a] for w in windows) for a in (0, 1))
    return Window(tuple(e + p for e, p in zip(end, offset)), windows[0].stride, offset)


def embed(T, window, into, n=None):
    """A windowed tangent of ``window`` placed inside the larger window ``into`` (zeros
    around it); batch ``n`` if given (a shared tangent broadcast)."""
    dy, dx = (into.offset[a] - window.offset[a] for a in (0, 1))
    if dy == dx == 0 and window.size == into.size and (n is None or T.shape[0] == n):
        return T
    N = T.shape[0] if n is None else n
    out = np.zeros((N,) + T.shape[1:4] + tuple(into.size) + T.shape[6:], T.dtype)
    out[:, :, :, :, dy:dy + window.size[0], dx:dx + window.size[1]] = T
    return out


def elements_per_example(shapes, windows):
    """Peak elements per example while the windowed layers run (for the memory planner):
    input and output windows of a layer, plus a conv's per-offset copy and product."""
    C0 = shapes[0][0]
    sizes = [int(np.prod(shapes[0]))] + [
        int(np.prod(s)) * C0 * w.size[0] * w.size[1] for s, w in zip(shapes[1:], windows)]
    return max((a + 2 * b for a, b in zip(sizes, sizes[1:])), default=0)


def seed(in_shape, dtype, d0=0, d1=None):
    """The identity as a windowed tangent shared by all examples, ``(1, H, W, C0, 1, 1, C0)``,
    restricted to the input directions (flat pixel indices) ``d0 <= d < d1``: the other
    pixels are seeded with zero, and the zero-skipping conv kernel then spends nothing on
    them."""
    C0, H, W = in_shape
    T = np.zeros((1, H, W, C0, 1, 1, C0), dtype)
    d = np.arange(d0, C0 * H * W if d1 is None else d1)
    c, rest = np.divmod(d, H * W)
    y, x = np.divmod(rest, W)
    T[0, y, x, c, 0, 0, c] = 1
    return T
