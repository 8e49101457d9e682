"""An elementwise layer (ReLU) into the max-pool after it, in both modes.

Forward (windowed): the pool gathers the windows it selects from the elementwise layer's
*input* windows, scaled by the slope on the way; the elementwise layer's windowed tangent
is never built. Reverse: the pool scatters its cotangent times the slope straight into
the elementwise layer's input. On the reverse path of integrated gradients
(:meth:`fwdderiv.Graph.path_vjp`), a pool whose input is where the T points' rows are
summed scatters them straight into the sum.
"""
from ..core.plan import Step
from ..kernels import pool as K
from ..kernels.local import maxpool_window
from ..layers.pool import MaxPool2d


def takes_slope(layer):
    return isinstance(layer, MaxPool2d)


def pool_after(view, k, limit):
    """True if node k is elementwise and node k + 1 (below ``limit``), its only reader,
    is a max-pool."""
    return k + 1 < limit and getattr(view.layer(k), "elementwise", False) and \
        view.only_reader(k, k + 1) and takes_slope(view.layer(k + 1))


def pool_windows(pool, cache, T, window, nxt, n, slope):
    """The max-pool's windowed tangent of ``slope * T`` (``slope`` None: of ``T``)."""
    argmax, (C, H, W) = cache
    _, Ho, Wo = pool.output_shape((C, H, W))
    return maxpool_window(T, argmax, (H, W), (Ho, Wo), pool, window, nxt.size, slope)


def pool_scatter(cache, gy, slope=None, weights=None):
    """The max-pool's VJP of ``gy`` (N, K, C, Ho, Wo) times ``slope`` (N, C, H, W) if
    given; with ``weights`` (T,), of rows that are T blocks of M examples, summed over
    the blocks: (M, K, C, H, W)."""
    argmax, (C, H, W) = cache
    N, Kc = gy.shape[:2]
    g = gy.reshape(N, Kc, C, argmax.shape[2])
    gx = K.scatter(g, argmax, H * W, slope) if weights is None else \
        K.scatter_reduced(g, argmax, H * W, weights, slope)
    return gx.reshape(gx.shape[:2] + (C, H, W))


def slope_before_pool(view, k):
    """For the max-pool at node k (reverse mode): ``(e, src)``, the elementwise node e whose
    value only the pool reads (None if there is none) and the value the pair reads."""
    src = view.nodes[k].inputs[0]
    e = view.single_producer(src, k)
    if e is None or not getattr(view.layer(e), "elementwise", False):
        return None, src
    return e, view.nodes[e].inputs[0]


class SlopeIntoPoolWindows(Step):
    rule = "slope into pool (windows)"

    def run(self, ctx):
        e, p = self.nodes
        slope = ctx.nodes[e].layer.slope(ctx.caches[e])
        ctx.T[p + 1] = pool_windows(ctx.nodes[p].layer, ctx.caches[p],
                                    ctx.T[ctx.nodes[e].inputs[0]], ctx.win[e + 1],
                                    ctx.win[p + 1], ctx.n, slope)


class SlopeIntoPoolPull(Step):
    """The pool's pull-back with the slope of the elementwise node before it (if any), or
    straight into the sum of a path's rows (``reduced``)."""

    def __init__(self, nodes, reduced):
        super().__init__(nodes)
        self.reduced = reduced
        self.rule = "slope into pool (scatter)" if len(nodes) > 1 else "pool into path sum"

    def run(self, ctx):
        p, e = self.nodes[0], (self.nodes[1] if len(self.nodes) > 1 else None)
        g = ctx.take(p)
        slope = None if e is None else ctx.nodes[e].layer.slope(ctx.caches[e])
        src = ctx.nodes[p if e is None else e].inputs[0]
        if e is not None:
            ctx.fused_away(e)
        if self.reduced and src == ctx.stop:
            ctx.add(src, pool_scatter(ctx.caches[p], g, slope, ctx.reduce), reduced=True)
        else:
            ctx.add(src, pool_scatter(ctx.caches[p], g, slope))


class _Windowed:
    name = "slope into pool"

    def match(self, view, k):
        if k < view.n_win and pool_after(view, k, view.n_win):
            return SlopeIntoPoolWindows([k, k + 1], windowed=True)
        return None


class _Reverse:
    name = "slope into pool"

    def match(self, view, k):
        if not takes_slope(view.layer(k)):
            return None
        e, src = slope_before_pool(view, k)
        reduced = view.reduce and src == view.stop
        if e is None and not reduced:
            return None
        return SlopeIntoPoolPull([k] + ([e] if e is not None else []), reduced)


windows, scatter = _Windowed(), _Reverse()
