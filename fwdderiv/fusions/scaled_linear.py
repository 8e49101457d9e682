"""An elementwise layer (ReLU) into a later layer that takes its slope (Linear), in the
dense part of forward mode, through layers that only reshape (Flatten); and chains of
them.

The elementwise layer's tangent is never built: the Linear layer multiplies each
example's tangent by the weights scaled with the slope, and only the columns whose slope
is not zero (behind a ReLU most are zero). Where that Linear's value in turn reaches
another such pair (Linear -> ReLU -> Linear), it computes only the columns the next one
multiplies: the dead units' tangents are never computed.
"""
import numpy as np

from ..core.layer import cast_param
from ..core.plan import Step
from ..kernels.pool import gather
from ..layers.conv import Conv2d
from ..layers.linear import Linear
from ..threads import matmul

#: :func:`jvp_scaled` multiplies only the live columns when the most live of a batch's
#: examples has at most this share of the inputs: above it one product of the whole
#: batch is faster (see docs/pages/performance.md).
LIVE_SHARE = 0.8


def live_columns(linear, slope):
    """The inputs of ``linear`` worth multiplying for each example, given the ``slope`` (N,
    in_features) of an elementwise layer before it: ``(N, a)`` indices, the live (non-zero
    slope) ones first, then dead ones to pad every example to the same count ``a``; or
    None where most are live and one product of the whole batch is faster
    (:data:`LIVE_SHARE`)."""
    if slope.ndim != 2:             # a Linear on tokens (N, T, C): no columns to pick
        return None
    live = slope != 0
    a = int(live.sum(axis=1).max()) if slope.shape[0] else 0
    if a > LIVE_SHARE * slope.shape[1]:
        return None
    return np.argsort(~live, axis=1, kind="stable")[:, :max(a, 1)]


def jvp_scaled(linear, cache, dx, slope, cols=None, out_cols=None):
    """The JVP of ``linear`` of ``slope * dx`` (``slope`` (N, in_features), the derivative
    of an elementwise layer before it): each example multiplies only the columns of ``dx``
    whose slope is non-zero, by the weights scaled with the slope. ``dx`` may have batch 1
    (a tangent shared by the examples). With ``cols`` from :func:`live_columns`, ``dx``
    (N, D, a) holds just those columns of each example. ``out_cols`` (N, b): only these
    outputs of each example, as a tangent (N, D, b)."""
    W = cast_param(linear.weight, dx.dtype)
    slope = slope.astype(dx.dtype, copy=False)
    if cols is None:
        cols = live_columns(linear, slope)
        if cols is None:
            # most units live: one product of the whole batch beats a stack of smaller
            # ones (the same numbers as the elementwise layer's JVP, then the Linear's)
            dy = linear.jvp(cache, dx * slope[:, None])
            return dy if out_cols is None else \
                gather(dy[:, :, None, :], out_cols[:, None, :])[:, :, 0, :]
        dx = gather(dx[:, :, None, :], cols[:, None, :])[:, :, 0, :]   # (n, D, a)
    s = np.take_along_axis(slope, cols, axis=1)                       # (n, a)
    Wt = W.T[cols]                                                     # (n, a, O)
    if out_cols is not None:                                           # (n, a, b)
        Wt = np.take_along_axis(Wt, out_cols[:, None, :], axis=2)
    return matmul(dx, Wt * s[:, :, None])


def scaled_target(view, k):
    """The Linear node that node k's value reaches, if node k is elementwise, through
    nothing but single-reader layers that only reshape; else None."""
    if not getattr(view.layer(k), "elementwise", False):
        return None
    for j in range(k + 1, len(view.nodes)):
        if not view.only_reader(j - 1, j):
            return None
        if isinstance(view.layer(j), Linear):
            return j
        if not getattr(view.layer(j), "reshape", False):
            return None
    return None


def column_segment(view, k):
    """``(e, j)`` if node k's only reader is an elementwise node e whose slope goes to
    the Linear node j, and node k can compute just the columns node j picks (a Linear
    layer, or a convolution read from windows). Else None."""
    if k + 1 >= len(view.nodes) or not view.only_reader(k, k + 1) or \
            not isinstance(view.layer(k), (Linear, Conv2d)):
        return None
    j = scaled_target(view, k + 1)
    return None if j is None else (k + 1, j)


def chain_from(view, segment):
    """The segments ``(e, j)`` from ``segment`` on, each target taking the next's columns."""
    segments = [segment]
    while True:
        nxt = column_segment(view, segments[-1][1])
        if nxt is None:
            return segments
        segments.append(nxt)


def slope_at(ctx, e, j):
    """Node e's slope, reshaped as the layers up to node j reshape its value."""
    slope = ctx.nodes[e].layer.slope(ctx.caches[e])
    for i in range(e + 1, j):
        slope = slope.reshape((slope.shape[0],) +
                              tuple(ctx.nodes[i].layer.output_shape(slope.shape[1:])))
    return slope


def run_chain(ctx, segments, dx, cols):
    """The tangent after the last segment, from ``dx``: node ``segments[0][0]``'s input
    tangent, or just its columns ``cols`` (flattened indices, (n, a)) when not None."""
    slopes = [slope_at(ctx, e, j) for e, j in segments]
    if cols is None and any(s.ndim != 2 for s in slopes):
        # a Linear on tokens (N, T, C) maps every token alike: its input's columns are
        # not an example's units, so the nodes run one by one
        for k in range(segments[0][0], segments[-1][1] + 1):
            dx = ctx.jvp(k, [dx])
        return dx
    for i, (e, j) in enumerate(segments):
        target, cache = ctx.nodes[j].layer, ctx.caches[j]
        if cols is None:
            for r in range(e + 1, j):                   # the reshaping layers
                dx = ctx.jvp(r, [dx])
        kw = {} if cols is None else {"cols": cols}
        want = live_columns(ctx.nodes[segments[i + 1][1]].layer, slopes[i + 1]) \
            if i + 1 < len(segments) else None
        if want is None:
            dx, cols = jvp_scaled(target, cache, dx, slopes[i], **kw), None
        else:
            dx, cols = jvp_scaled(target, cache, dx, slopes[i], out_cols=want, **kw), want
    return dx


class ScaledLinear(Step):
    """Segments ``(e, j)``: e's slope into j's ``jvp_scaled``, each j taking the next's
    columns."""

    def __init__(self, segments):
        super().__init__(range(segments[0][0], segments[-1][1] + 1))
        self.segments = segments
        self.rule = "slope into linear" + (f", live columns x{len(segments) - 1}"
                                           if len(segments) > 1 else "")

    def run(self, ctx):
        e, j = self.segments[0]
        ctx.T[self.last + 1] = run_chain(ctx, self.segments, ctx.T[ctx.nodes[e].inputs[0]],
                                         None)


class _Rule:
    name = "slope into linear"

    def match(self, view, k):
        j = scaled_target(view, k)
        return None if j is None else ScaledLinear(chain_from(view, (k, j)))


rule = _Rule()
