r"""BatchNorm's inference form folded into the convolution before it, in both modes.

Its derivative is one factor per channel, :math:`\gamma/\sqrt{\sigma^2+\epsilon}`
(:meth:`fwdderiv.BatchNorm2d.scale`): the convolution's weights take the factors, and one
pass over the tangents or cotangents is saved. Not when the convolution's value has
another reader, nor when its parameter gradients are wanted (training), nor in
BatchNorm's training form (batch statistics: the step then runs both nodes one by one).
"""
from ..core.layer import cast_param
from ..core.plan import Step
from ..layers.conv import Conv2d
from ..layers.normalization import BatchNorm2d


def channel_scale(bn, cache, dtype):
    """The BatchNorm's factor per channel, or None in its training form (its cache then
    holds the batch statistics, and its derivative mixes the batch)."""
    return None if isinstance(cache, tuple) else bn.scale(dtype)


def scaled_weight(conv, scale):
    """The convolution's weight with output channel c times ``scale[c]``."""
    return cast_param(conv.weight, scale.dtype) * scale.reshape(-1, 1, 1, 1)


class FoldForward(Step):
    rule = "batchnorm into conv"

    def run(self, ctx):
        c, b = self.nodes
        conv, dtype = ctx.nodes[c].layer, ctx.T[ctx.nodes[c].inputs[0]].dtype
        scale = channel_scale(ctx.nodes[b].layer, ctx.caches[b], dtype)
        if scale is None:
            ctx.T[b + 1] = ctx.jvp(b, [ctx.jvp(c)])
            return
        weight = scaled_weight(conv, scale)
        ctx.T[b + 1] = ctx.jvp(c, call=lambda cache, dx: conv.jvp(cache, dx, weight=weight))


class FoldReverse(Step):
    rule = "batchnorm into conv"

    def run(self, ctx):
        b, c = self.nodes
        g = ctx.take(b)
        scale = channel_scale(ctx.nodes[b].layer, ctx.caches[b], g.dtype)
        if scale is None:
            ctx.pull(b, g)
            ctx.pull(c, ctx.take(c))
            return
        ctx.fused_away(c)
        conv = ctx.nodes[c].layer
        if ctx.need_input or ctx.nodes[c].inputs[0] != 0:
            ctx.add(ctx.nodes[c].inputs[0],
                    conv.vjp(ctx.caches[c], g, weight=scaled_weight(conv, scale)))


def _is_fold(view, c, b):
    return isinstance(view.layer(c), Conv2d) and isinstance(view.layer(b), BatchNorm2d)


class _Forward:
    name = "batchnorm into conv"

    def match(self, view, k):
        if k + 1 < len(view.nodes) and view.only_reader(k, k + 1) and _is_fold(view, k, k + 1):
            return FoldForward([k, k + 1])
        return None


class _Reverse:
    name = "batchnorm into conv"

    def match(self, view, k):
        c = view.single_producer(view.nodes[k].inputs[0], k)
        if c is None or not _is_fold(view, c, k):
            return None
        return FoldReverse([k, c])


forward, reverse = _Forward(), _Reverse()
