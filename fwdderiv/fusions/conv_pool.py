"""A convolution, an optional elementwise layer (ReLU) and the max-pool after them, in
both modes.

Forward (windowed): the convolution computes only the outputs the pool selects and whose
slope is not zero (a quarter or less of them behind a 2 x 2 pool), straight into the
pooled windows. Reverse: each non-zero entry of the pool's output cotangent is scattered
from the pool's argmax straight into the convolution's input; the convolution's output
cotangent, mostly zeros, is never built. The step runs the nodes one by one where that
is faster or the shortcut does not apply (a window shared by the examples, a dense
cotangent, a convolution that pads in another mode first); the numbers are the same up
to float rounding.
"""
from ..core.layer import fold, unfold
from ..core.plan import Step
from ..kernels.conv import conv_vjp_scatter, nonzeros, scatter_layout
from ..kernels.local import conv_pool_window
from ..layers.conv import Conv2d
from . import slope_pool
from .slope_pool import pool_after, takes_slope


def pooled_windows(conv, T, window, pool, pool_cache, pooled, n, slope):
    """The pool's windows straight from the convolution's input windows ``T``, or None
    where the shortcut does not apply (a window shared by the examples: the convolution
    then runs once for all of them)."""
    if conv.prepad is not None or T.shape[0] < n:
        return None
    argmax, (C, H, W) = pool_cache
    pooled_hw = pool.output_shape((conv.out_channels, H, W))[1:]
    return conv_pool_window(T, conv, argmax, (H, W), pooled_hw, window,
                            conv.window_rule(window), pooled, slope)


def scatter_through(conv, conv_cache, gy, pool_cache, slope):
    """The convolution's input cotangent straight from the pool's output cotangent ``gy``
    (N, K, C, Hp, Wp), or None where the dense pull-back is faster."""
    if conv.prepad is not None:
        return None
    _, in_shape = conv_cache
    argmax, (C, Ho, Wo) = pool_cache
    g = fold(gy)
    nnz = nonzeros(g)
    if slope is not None:     # entries that meet a zero slope are skipped
        nnz *= nonzeros(slope) / max(slope.size, 1)
    layout = scatter_layout(conv.weight.shape, nnz, g.shape[0] * conv.out_channels * Ho * Wo)
    if layout is None or Ho * Wo == 1:
        return None
    gx = conv_vjp_scatter(g, conv.weight, in_shape, conv.stride, conv.padding, conv.dilation,
                          conv.groups, nhwc=layout == "nhwc", pool=(argmax, Wo), slope=slope)
    return unfold(gx, *gy.shape[:2])


class ConvPoolWindows(Step):
    rule = "conv + pool (windows)"

    def run(self, ctx):
        c, p = self.nodes[0], self.nodes[-1]
        e = self.nodes[1] if len(self.nodes) == 3 else None
        conv, pool = ctx.nodes[c].layer, ctx.nodes[p].layer
        v = ctx.nodes[c].inputs[0]
        slope = None if e is None else ctx.nodes[e].layer.slope(ctx.caches[e])
        T, window, conv_win = ctx.T[v], ctx.win[v], ctx.win[c + 1]
        out = pooled_windows(conv, T, window, pool, ctx.caches[p], ctx.win[p + 1], ctx.n,
                             slope)
        if out is None:
            out = slope_pool.pool_windows(pool, ctx.caches[p],
                               conv.window_jvp(ctx.caches[c], T, window, conv_win, ctx.n),
                               conv_win, ctx.win[p + 1], ctx.n, slope)
        ctx.T[p + 1] = out


class ConvPoolScatter(Step):
    rule = "conv + pool (scatter)"

    def run(self, ctx):
        p, c = self.nodes[0], self.nodes[-1]
        e = self.nodes[1] if len(self.nodes) == 3 else None
        g = ctx.take(p)
        slope = None if e is None else ctx.nodes[e].layer.slope(ctx.caches[e])
        if e is not None:
            ctx.fused_away(e)
        gx = scatter_through(ctx.nodes[c].layer, ctx.caches[c], g, ctx.caches[p], slope)
        if gx is not None:
            ctx.fused_away(c)
            ctx.add(ctx.nodes[c].inputs[0], gx)
            return
        ctx.pull(c, slope_pool.pool_scatter(ctx.caches[p], g, slope))   # the conv on its own


class _Windowed:
    name = "conv + pool"

    def match(self, view, k):
        if not isinstance(view.layer(k), Conv2d) or k + 1 >= len(view.nodes) or \
                not view.only_reader(k, k + 1):
            return None
        e = k + 1 if pool_after(view, k + 1, view.n_win) else None
        j = k + 1 + (e is not None)
        if j < view.n_win and (e is None or view.only_reader(j - 1, j)) and \
                takes_slope(view.layer(j)):
            return ConvPoolWindows([k] + ([e] if e is not None else []) + [j], windowed=True)
        return None


class _Reverse:
    name = "conv + pool"

    def match(self, view, k):
        if not takes_slope(view.layer(k)):
            return None
        e, src = slope_pool.slope_before_pool(view, k)
        c = view.single_producer(src, k)
        if c is None or not isinstance(view.layer(c), Conv2d):
            return None
        return ConvPoolScatter([k] + ([e] if e is not None else []) + [c])


windows, scatter = _Windowed(), _Reverse()
