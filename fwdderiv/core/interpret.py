"""The interpreter: one loop that runs a plan forward, one that runs it in reverse.

The forward loop computes each node's value (or takes its cache from an earlier pass)
and, when a tangent is given, runs the plan's steps on the tangents; the reverse loop
runs the steps of a reverse plan on cotangents, summing them where a value has several
readers. Neither looks at what a layer is: a step (:mod:`fwdderiv.core.plan`) knows what
it covers, and the one-node steps below call the layer protocol.
"""
import numpy as np

from . import local
from .plan import (FORWARD, REVERSE, Plan, Step, View, forward_steps, generation,
                   reverse_steps)


class Forward:
    """The state of a forward pass over the tangents.

    ``T[v]`` is the tangent of value v (``T[0]`` the input's), windowed in the leading
    region with window ``win[v]``; ``n`` examples run, and a tangent of batch 1 is shared
    by all of them; ``dense`` converts a windowed tangent (a
    :class:`~fwdderiv.core.local.Densify`); ``residuals``, if a list, receives each
    node's JVP residual (``jvp_residual``: what its ``jvp_grad`` would compute again)."""

    def __init__(self, nodes, caches, n, T, win, dense, residuals=None):
        self.nodes, self.caches, self.n = nodes, caches, n
        self.T, self.win, self.dense = T, win, dense
        self.residuals = residuals

    def inputs(self, k):
        return [self.T[v] for v in self.nodes[k].inputs]

    def jvp(self, k, dins=None, call=None):
        """Node k's dense JVP of ``dins`` (its inputs' tangents by default), by
        ``call(cache, *dins)`` in place of the layer's ``jvp`` if given."""
        node = self.nodes[k]
        dins = self.inputs(k) if dins is None else dins
        if self.residuals is None or call is not None:
            return jvp_node(node.layer, self.caches[k], dins, self.n, call)
        dy, self.residuals[k] = jvp_node(node.layer, self.caches[k], dins, self.n,
                                         _with_residual(node.layer))
        return dy


def _with_residual(layer):
    """``layer.jvp_residual``, or the plain JVP with no residual."""
    method = getattr(layer, "jvp_residual", None)
    return method if method is not None else lambda cache, *dins: (layer.jvp(cache, *dins),
                                                                   None)


def jvp_node(layer, cache, dins, n, call=None):
    """``layer.jvp`` (or ``call``) of ``dins``; tangents shared by the examples (batch 1)
    stay shared through a linear layer whose inputs are all shared, and are broadcast
    otherwise."""
    shared = [t.shape[0] != n for t in dins]
    if any(shared) and not (all(shared) and getattr(layer, "linear", False)):
        dins = [np.broadcast_to(t, (n,) + t.shape[1:]) if s else t
                for t, s in zip(dins, shared)]
    return (layer.jvp if call is None else call)(cache, *dins)


class LayerStep(Step):
    """A node's own dense JVP."""

    def run(self, ctx):
        k = self.nodes[0]
        ctx.T[k + 1] = ctx.jvp(k)


class WindowStep(Step):
    """A node's own windowed JVP (``window_jvp``)."""

    def __init__(self, k):
        super().__init__([k], windowed=True)

    def run(self, ctx):
        k = self.nodes[0]
        node, win = ctx.nodes[k], ctx.win
        if getattr(node.layer, "multi_input", False):
            ctx.T[k + 1] = node.layer.window_jvp(ctx.caches[k], ctx.inputs(k),
                                                 [win[v] for v in node.inputs], win[k + 1],
                                                 ctx.n)
        else:
            v = node.inputs[0]
            ctx.T[k + 1] = node.layer.window_jvp(ctx.caches[k], ctx.T[v], win[v], win[k + 1],
                                                 ctx.n)


class LeaveWindows(Step):
    """Leaving the windowed region: every windowed tangent still to be read becomes dense,
    except value ``keep``, which the next step reads as windows itself."""
    rule = "windows -> dense"

    def __init__(self, n_win, keep=-1):
        super().__init__([])
        self.n_win, self.keep = n_win, keep

    def run(self, ctx):
        for v in range(self.n_win + 1):
            if ctx.T[v] is not None and v != self.keep:
                ctx.T[v] = ctx.dense(ctx.T[v], ctx.win[v])


def primal(nodes, uses, x, start=0, stop=None, keep=False, where=None, every=False,
           visit=None):
    """Values of nodes ``start`` to ``stop - 1`` from ``x`` (value ``start``): ``(value
    stop, caches or None)``; ``caches[k]`` is None for ``k < start``. ``every=True``
    returns the list of every value from ``start`` to ``stop`` in place of value ``stop``
    (none is dropped on the way). ``visit(k, node, xs)`` sees each node with its input
    values before its forward runs (a census, or a statistic the node will read).
    ``where(k)`` names a node in errors."""
    stop = len(nodes) if stop is None else stop
    H = {start: x}
    left = list(uses)
    caches = [None] * start if keep else None
    for k in range(start, stop):
        node = nodes[k]
        xs = [H[v] for v in node.inputs]
        if visit is not None:
            visit(k, node, xs)
        H[k + 1], cache = _forward(node, xs, k, where)
        if keep:
            caches.append(cache)
        if every:
            continue
        for v in node.inputs:
            left[v] -= 1
            if left[v] == 0:
                H.pop(v, None)
    return ([H[v] for v in range(start, stop + 1)] if every else H[stop]), caches


def _forward(node, xs, k, where):
    try:
        return node.layer.forward(*xs)
    except ValueError as err:
        if where is None:
            raise
        raise type(err)(f"{where(k)}, {err}") from None


def tangents(nodes, uses, ctx, steps, x=None, record=None, where=None, left=None):
    """Run forward ``steps`` on the tangents of ``ctx``. Where ``x`` is given, each
    node's value is computed on the way (``ctx.caches`` then starts empty, and a node's
    cache is dropped once its step has run). ``record(k, h, dh)`` sees every node's value
    and dense tangent (a plan without fusions). Returns the tangent-reader counts
    ``left`` (to resume from there) and the output value (None without ``x``)."""
    H = {0: x}
    left = list(uses) if left is None else left
    primal_left = list(uses)
    for step in steps:
        if x is not None:
            for k in step.nodes:
                node = nodes[k]
                H[k + 1], ctx.caches[k] = _forward(node, [H[v] for v in node.inputs], k, where)
                for v in node.inputs:
                    primal_left[v] -= 1
                    if primal_left[v] == 0 and record is None:
                        H.pop(v, None)
        step.run(ctx)
        if record is not None and step.nodes:
            k = step.nodes[-1]
            dh = ctx.dense(ctx.T[k + 1], ctx.win[k + 1]) if step.windowed else ctx.T[k + 1]
            record(k, H.get(k + 1), dh)
        for k in step.nodes:
            if x is not None:
                ctx.caches[k] = None
            for v in nodes[k].inputs:
                left[v] -= 1
                if left[v] == 0:
                    ctx.T[v] = None
    return left, H.get(len(nodes))


def run_forward(nodes, uses, plan, dx, n, windows=(), dense=None, caches=None, x=None,
                record=None, hold=False, carry=None, where=None, residuals=None):
    """Push the tangent ``dx`` through a forward ``plan``: ``(y, dy)``.

    ``caches`` from an earlier pass, or the values computed from ``x`` on the way (``y``
    is then the output, else None). A tangent with batch 1 while ``n`` examples run is
    shared by all of them, and stays shared through linear layers. The first
    ``len(windows)`` nodes carry windowed tangents (``windows[k]``: the window of node
    k's value), converted by ``dense`` (a :class:`~fwdderiv.core.local.Densify`) where
    they end. ``record(k, h, dh)`` sees every node's value and dense tangent (a plan
    without fusions). The windowed region holds every direction whatever the seed, so it
    can run once for several direction chunks: ``hold=True`` stops where it ends and
    returns its tangents as a carry, which a later call resumes from (``carry=``).
    ``residuals`` (a list, one slot per node) receives the layers' JVP residuals
    (:class:`Forward`).
    """
    L, n_win = len(nodes), len(windows)
    steps = plan.steps
    T = [None] * (L + 1)
    T[0] = dx
    left = None
    split = next((i for i, s in enumerate(steps) if isinstance(s, LeaveWindows)), len(steps))
    if hold:
        steps = steps[:split]
    elif carry is not None:
        steps = steps[split:]
        T[:n_win + 1], left = list(carry[0]), list(carry[1])
    ctx = Forward(nodes, list(caches) if caches is not None else [None] * L, n, T,
                  [default_window()] + list(windows), dense, residuals)
    left, y = tangents(nodes, uses, ctx, steps, x=x, record=record, where=where, left=left)
    if hold:
        return T[:n_win + 1], left
    return y, T[L]


class Reverse:
    """The state of a reverse pass: cotangents by value, parameter gradients, and what the
    pass is asked for (``need_input``: the input's cotangent; ``reduce``: weights (T,) of
    the row blocks summed at value ``stop``; ``visit(k, node, g)``: sees the output
    cotangent of each node a step starts from, every node in a plan without fusions)."""

    def __init__(self, nodes, caches, cot, grads=None, need_input=True, stop=0, reduce=None,
                 visit=None):
        self.nodes, self.caches, self.cot, self.grads = nodes, caches, cot, grads
        self.need_input, self.stop, self.reduce = need_input, stop, reduce
        self.visit = visit

    def take(self, k):
        """Node k's output cotangent, with node k's parameter gradients recorded."""
        g = self.cot.pop(k + 1)
        layer = self.nodes[k].layer
        if self.visit is not None:
            self.visit(k, self.nodes[k], g)
        if self.grads is not None and hasattr(layer, "param_vjp"):
            self.grads[k] = layer.param_vjp(self.caches[k], g[:, 0])
        return g

    def add(self, v, gv, reduced=False):
        """Add ``gv`` to value v's cotangent (at ``stop``, the blocks summed first unless
        ``reduced``)."""
        if v == self.stop and self.reduce is not None and not reduced:
            gv = reduce_blocks(gv, self.reduce)
        self.cot[v] = gv if v not in self.cot else self.cot[v] + gv

    def fused_away(self, k):
        """Node k ran inside another node's step: it has no gradient of its own."""
        if self.grads is not None:
            self.grads[k] = {}

    def pull(self, k, g, **kwargs):
        """Node k's own VJP of ``g``, added to its inputs' cotangents (skipped when only
        the input would receive it and ``need_input`` is False)."""
        node = self.nodes[k]
        if not self.need_input and all(v == 0 for v in node.inputs):
            return
        gx = node.layer.vjp(self.caches[k], g, **kwargs)
        if getattr(node.layer, "multi_input", False):
            for v, gv in zip(node.inputs, gx):
                self.add(v, gv)
        else:
            self.add(node.inputs[0], gx)


class LayerPull(Step):
    """A node's own VJP (and its parameter gradients when they are wanted)."""

    def run(self, ctx):
        k = self.nodes[0]
        ctx.pull(k, ctx.take(k))


def cotangents(plan, ctx, top, extra=None):
    """Run the reverse ``plan`` from the cotangent of value ``top`` (already in
    ``ctx.cot``, or none: then from ``extra`` alone); returns the cotangent of value
    ``ctx.stop`` if ``ctx.need_input`` (None if nothing reaches it).

    ``extra`` ({value: cotangent}) enters values from outside the graph (a loss on a
    hidden value, a statistic's dependence on it): it is added to what the value's readers
    pulled back, before the step producing the value runs; a fused step inside which such
    a value lies runs its nodes one by one. A step whose value gets no cotangent is skipped
    (nothing reaches it: its nodes get no parameter gradient)."""
    extra = dict(extra or {})
    for step in plan.steps:
        if extra and any(k + 1 in extra for k in step.nodes if k != step.last):
            for k in sorted(step.nodes, reverse=True):
                _pull_step(LayerPull([k]), ctx, extra)
        else:
            _pull_step(step, ctx, extra)
    if ctx.need_input and ctx.stop in extra:
        ctx.add(ctx.stop, extra.pop(ctx.stop))
    return ctx.cot.get(ctx.stop) if ctx.need_input else None


def _pull_step(step, ctx, extra):
    """One reverse step, from its value's cotangent with any extra one added; none: skip."""
    v = step.last + 1
    if v in extra:
        ctx.add(v, extra.pop(v))
    if v in ctx.cot:
        step.run(ctx)


def reduce_blocks(g, weights):
    """``sum_s weights[s] * g[s * M:(s + 1) * M]`` for ``g`` of T * M rows."""
    T = len(weights)
    out = np.asarray(weights, dtype=g.dtype) @ g.reshape(T, -1)
    return out.reshape((g.shape[0] // T,) + g.shape[1:])


def default_window():
    """The window of the input: one pixel, itself."""
    return local.Window((1, 1), (1, 1), (0, 0))


class Plans:
    """A graph's plans, made once for each set of options (and again when the fusion rules
    change, :func:`fwdderiv.core.plan.generation`)."""

    def __init__(self, nodes, uses):
        self.nodes, self.uses, self.cache = nodes, uses, {}

    def view(self, n_win=0, grads=False, stop=0, reduce=False):
        return View(self.nodes, self.uses, n_win, grads, stop, reduce)

    def forward(self, n_win=0, fuse=True):
        """The forward plan with ``n_win`` windowed nodes; ``fuse=False``: node by node."""
        key = (FORWARD, n_win, fuse, generation())
        if key not in self.cache:
            view = self.view(n_win)
            self.cache[key] = Plan(forward_steps(view, 0, len(self.nodes), fuse,
                                                 lambda k: LayerStep([k]), WindowStep,
                                                 LeaveWindows), view, FORWARD)
        return self.cache[key]

    def reverse(self, top, stop=0, grads=False, reduce=False, fuse=True):
        """The reverse plan from value ``top`` down to node ``stop``; ``fuse=False``: node
        by node."""
        key = (REVERSE, top, stop, grads, reduce, fuse, generation())
        if key not in self.cache:
            view = self.view(grads=grads, stop=stop, reduce=reduce)
            self.cache[key] = Plan(reverse_steps(view, top, fuse, lambda k: LayerPull([k])),
                                   view, REVERSE)
        return self.cache[key]
