"""The node right after the windowed run reads the last windows itself.

A convolution whose kernel covers its whole input (LeNet-5's 16 x 5 x 5 -> 120 layer)
maps every window entry linearly to its one output position: its dense tangent comes
straight from the windowed tangent, without the dense input tangent. When its value then
reaches a Linear layer through a ReLU (and layers that only reshape), only the columns
that Linear multiplies (the live units) are computed at all
(:mod:`fwdderiv.fusions.scaled_linear`).
"""
from ..core.plan import Step
from ..kernels.local import window_linear
from ..layers.conv import Conv2d
from .scaled_linear import chain_from, column_segment, live_columns, run_chain, slope_at


def plain(conv):
    """True if the convolution has no padding, groups or dilation: then, on an input the
    size of its kernel, it maps every input entry linearly to one output position."""
    return conv.prepad is None and conv.padding == (0, 0) and conv.groups == 1 and \
        conv.dilation == (1, 1)


def covers_input(conv, in_shape):
    """True if the convolution's kernel covers its whole input, entry for entry."""
    return plain(conv) and tuple(in_shape[1:]) == conv.kernel_size


def dense_from_windows(conv, cache, T, window, dense, out_cols=None):
    """The convolution's dense output tangent straight from its input's windowed tangent
    ``T``, when its kernel covers the whole input; ``out_cols`` (n, a): only these output
    channels of each example, as a tangent (n, D, a). None otherwise."""
    _, in_shape = cache
    if not covers_input(conv, in_shape):
        return None
    dy = window_linear(T, conv.weight, window, dense.in_shape, dense.n, dense.d0, dense.d1,
                       out_cols)
    return dy if out_cols is not None else dy.reshape(dy.shape + (1, 1))


def head_tangent(ctx, k, out_cols=None):
    """Node k's dense tangent from the windows of its input; with ``out_cols``, only those
    columns, or None when the layer declines them."""
    layer, cache = ctx.nodes[k].layer, ctx.caches[k]
    v = ctx.nodes[k].inputs[0]
    if out_cols is not None:
        return dense_from_windows(layer, cache, ctx.T[v], ctx.win[v], ctx.dense,
                                  out_cols=out_cols)
    dy = dense_from_windows(layer, cache, ctx.T[v], ctx.win[v], ctx.dense)
    if dy is None:                                  # the layer declined: go dense
        dy = ctx.jvp(k, [ctx.dense(ctx.T[v], ctx.win[v])])
    return dy


class WindowHead(Step):
    """Node ``k`` from the windows, then the segments of a live-columns chain, if any."""
    reads_windows = True

    def __init__(self, k, segments=()):
        super().__init__(range(k, segments[-1][1] + 1) if segments else [k])
        self.k, self.segments = k, list(segments)
        self.rule = "windows into head" + (", live columns" if segments else "")

    def run(self, ctx):
        k = self.k
        if not self.segments:
            ctx.T[k + 1] = head_tangent(ctx, k)
            return
        e, j = self.segments[0]
        cols = live_columns(ctx.nodes[j].layer, slope_at(ctx, e, j))
        dy = None if cols is None else head_tangent(ctx, k, out_cols=cols)
        if dy is None:
            dy, cols = head_tangent(ctx, k), None
        ctx.T[self.last + 1] = run_chain(ctx, self.segments, dy, cols)


class _Rule:
    name = "windows into head"

    def match(self, view, k):
        if k != view.n_win or not view.n_win or view.nodes[k].inputs != (k,) or \
                view.uses[k] != 1 or not isinstance(view.layer(k), Conv2d) or \
                not plain(view.layer(k)):
            return None
        segment = column_segment(view, k)
        return WindowHead(k, chain_from(view, segment) if segment else ())


rule = _Rule()
