"""Layers with several inputs, the joints of a :class:`fwdderiv.Graph`: residual
addition, concatenation and the elementwise product."""
import numbers

import numpy as np

from ..core import local
from ..core.layer import Layer
from ..validation import shape_str


def _dim(dim, ndim, owner):
    """A PyTorch ``dim`` (the batch axis is 0) -> the per-example axis it names."""
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{owner}: dim must be an int, got {dim!r}")
    d = dim + ndim + 1 if dim < 0 else dim
    if not 1 <= d <= ndim:
        raise ValueError(f"{owner}: dim={dim} is not a per-example axis of an input with "
                         f"{ndim + 1} axes (batch included); use 1..{ndim} or -1..-{ndim}")
    return d - 1


class Add(Layer):
    r"""The sum of its inputs, :math:`y = \sum_i x_i` (a residual connection).

    All inputs have the same shape (no broadcasting). Linear: :math:`dy = \sum_i dx_i`,
    and every input receives the output's cotangent.
    """

    linear = True
    multi_input = True

    def output_shape(self, *in_shapes):
        shapes = [tuple(s) for s in in_shapes]
        if len(shapes) < 2 or any(s != shapes[0] for s in shapes):
            raise ValueError(
                f"Add() expected two or more inputs of one shape, got "
                f"{', '.join(shape_str(('N',) + s) for s in shapes)}; make the branches "
                f"agree (a 1x1 conv or a channel pad on the shortcut)")
        return shapes[0]

    def forward(self, *xs):
        self.output_shape(*(x.shape[1:] for x in xs))
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        return y, len(xs)

    def jvp(self, cache, *dxs):
        dy = dxs[0] + dxs[1]
        for dx in dxs[2:]:
            dy = dy + dx
        return dy

    def vjp(self, cache, gy):
        return (gy,) * cache

    def window_rule(self, *windows):
        """Windows of one stride add inside their union."""
        return local.union(windows)

    def window_jvp(self, cache, Ts, windows, nxt, n, slope=None):
        N = max(T.shape[0] for T in Ts)
        out = local.embed(Ts[0], windows[0], nxt, N).copy()
        for T, w in zip(Ts[1:], windows[1:]):
            out[:, :, :, :, nxt.offset[0] - w.offset[0]:nxt.offset[0] - w.offset[0] + w.size[0],
                nxt.offset[1] - w.offset[1]:nxt.offset[1] - w.offset[1] + w.size[1]] += T
        return out


class Mul(Layer):
    r"""The elementwise product of two inputs of one shape, :math:`y = a \odot b`.

    .. math:: dy = da \odot b + a \odot db, \qquad g_a = g_y \odot b,\; g_b = g_y \odot a
    """

    multi_input = True

    def output_shape(self, *in_shapes):
        shapes = [tuple(s) for s in in_shapes]
        if len(shapes) != 2 or shapes[0] != shapes[1]:
            raise ValueError(f"Mul() expected two inputs of one shape, got "
                             f"{', '.join(shape_str(('N',) + s) for s in shapes)}")
        return shapes[0]

    def forward(self, a, b):
        self.output_shape(a.shape[1:], b.shape[1:])
        return a * b, (a, b)

    def jvp(self, cache, da, db):
        a, b = cache
        return da * b[:, None] + a[:, None] * db

    def vjp(self, cache, gy):
        a, b = cache
        return gy * b[:, None], gy * a[:, None]

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum_d \langle g_d, da_d \odot b + a \odot db_d\rangle`:
        :math:`\sum_d g_d \odot db_d` in ``a`` and :math:`\sum_d g_d \odot da_d` in ``b``."""
        da, db = dx
        return ((gdy * db).sum(axis=1), (gdy * da).sum(axis=1)), {}


class Concat(Layer):
    """Concatenation of the inputs along ``dim`` (``torch.cat``; the batch axis is 0, so
    ``dim=1`` joins channels). Linear: tangents are concatenated, cotangents split."""

    linear = True
    multi_input = True

    def __init__(self, dim=1):
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
            raise TypeError(f"Concat: dim must be an int, got {dim!r}")
        if dim == 0:
            raise ValueError("Concat: dim=0 is the batch axis; a network maps each example "
                             "on its own, so concatenate along a per-example axis (dim >= 1)")
        self.dim = int(dim)

    def get_config(self):
        return {"dim": self.dim}

    def output_shape(self, *in_shapes):
        shapes = [tuple(s) for s in in_shapes]
        if not shapes:
            raise ValueError("Concat expected one or more inputs, got none")
        d = _dim(self.dim, len(shapes[0]), repr(self))
        rest = [s[:d] + s[d + 1:] for s in shapes]
        if any(len(s) != len(shapes[0]) for s in shapes) or any(r != rest[0] for r in rest):
            raise ValueError(
                f"{self!r} expected inputs that agree on every axis but dim={self.dim}, got "
                f"{', '.join(shape_str(('N',) + s) for s in shapes)}")
        return shapes[0][:d] + (sum(s[d] for s in shapes),) + shapes[0][d + 1:]

    def forward(self, *xs):
        self.output_shape(*(x.shape[1:] for x in xs))
        d = _dim(self.dim, xs[0].ndim - 1, repr(self))
        return np.concatenate(xs, axis=d + 1), (d, [x.shape[d + 1] for x in xs])

    def jvp(self, cache, *dxs):
        d, _ = cache
        n = max(t.shape[0] for t in dxs)
        dxs = [np.broadcast_to(t, (n,) + t.shape[1:]) for t in dxs]
        return np.concatenate(dxs, axis=d + 2)

    def vjp(self, cache, gy):
        d, sizes = cache
        return tuple(np.split(gy, np.cumsum(sizes)[:-1], axis=d + 2))

    def window_rule(self, *windows):
        """Channels of images (dim 1 of (N, C, H, W)) join inside the union window."""
        return local.union(windows) if self.dim in (1, -3) else None

    def window_jvp(self, cache, Ts, windows, nxt, n, slope=None):
        N = max(T.shape[0] for T in Ts)
        return np.concatenate([local.embed(T, w, nxt, N) for T, w in zip(Ts, windows)],
                              axis=-1)
