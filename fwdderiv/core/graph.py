"""The graph runner: a DAG of layers with forward, JVP, VJP, Jacobians and training passes.

One forward loop (:meth:`Graph._run`) carries the primal ``H_k`` and, when asked, the
tangent ``dH_k/dx`` through the nodes in order; one reverse loop (:meth:`Graph._pull`)
carries cotangents back, summing them where a value feeds several nodes. Every public
call (``forward``, ``jvp``, ``jacobian`` in both modes, its per-node trace, ``vjp``,
``backward``) goes through these two loops, so the fast paths that layers declare (see
:mod:`fwdderiv.core.layer`) serve them all. :class:`fwdderiv.Sequential` is the chain
case of the same runner.
"""
import functools
import math
import os
from typing import NamedTuple

import numpy as np

from .. import _threads
from .._threads import blas_limited
from .._validation import as_float_array, check_int, check_tangent, shape_str
from ..config import DEFAULT_MAX_MEMORY
from . import local
from .layer import _with_batch, cast_scope
from .memory import plan_chunks, plan_windowed
from .trace import Trace

_PROTOCOL = ("output_shape", "forward", "jvp", "vjp")

#: A reverse Jacobian whose pull-backs write at least this many values (examples x rows x
#: the elements of all the network's values) splits whole passes between the cores (see
#: Graph._reverse). Measured, split against per-layer threads: ResNet-20 B = 1 (7 M)
#: 1.29x, LeNet-5 B = 128 (19 M) 1.12x, mnist_convnet B = 16 (16 M) 1.18x; below, the
#: layers' own parallel kernels did as well or better (mnist_convnet B = 1, 1 M: 0.80x;
#: LeNet-5 B = 16, 2.4 M: 0.86-1.03x).
SPLIT_PASSES_FROM = 4_000_000


def _call(method):
    """A public method's scope: BLAS limited while a network with Numba kernel layers
    runs (:mod:`fwdderiv._threads`), parameter casts shared by its layers."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with blas_limited(self.uses_kernels), cast_scope():
            return method(self, *args, **kwargs)
    return wrapper


class Node(NamedTuple):
    """One node of a :class:`Graph`: a layer and the names of the values it reads."""
    name: str
    layer: object
    inputs: tuple


def _size(shape):
    return math.prod(int(s) for s in shape)


class Graph:
    r"""A directed acyclic graph of layers with one input and one output.

    Each node applies a layer to the outputs of earlier nodes (or to the graph's input,
    named ``"input"``): residual additions (:class:`fwdderiv.Add`), concatenations
    (:class:`fwdderiv.Concat`), products and any single-input layer. The forward
    derivative follows the chain rule node by node, as equation (6) of Papernot et al.
    (2016) does for a chain; where a value feeds several nodes, the reverse mode sums
    their cotangents.

    Parameters
    ----------
    nodes : iterable of (name, layer, inputs)
        In an order where every node comes after the nodes it reads. ``inputs`` is a
        name or a list of names (earlier nodes, or ``"input"``); a single-input layer
        reads one name, a multi-input layer (``layer.multi_input``) several.
    output : str, optional
        The node whose value the graph returns; by default the last. It must be the last
        node, and every node must contribute to it.

    Examples
    --------
    A residual block, ``y = relu(x + conv(relu(conv(x))))``:

    >>> import numpy as np, fwdderiv as fd
    >>> net = fd.Graph([
    ...     ("conv1", fd.Conv2d(4, 4, 3, padding=1), "input"),
    ...     ("relu1", fd.ReLU(), "conv1"),
    ...     ("conv2", fd.Conv2d(4, 4, 3, padding=1, seed=1), "relu1"),
    ...     ("add", fd.Add(), ["conv2", "input"]),
    ...     ("relu2", fd.ReLU(), "add"),
    ... ])
    >>> net.jacobian(np.ones((2, 4, 5, 5))).shape
    (2, 4, 5, 5, 4, 5, 5)
    """

    #: The name by which nodes read the graph's input.
    INPUT = "input"

    def __init__(self, nodes, output=None):
        self._nodes = []
        self._index = {self.INPUT: 0}          # value name -> value index
        for item in nodes:
            try:
                name, layer, inputs = item
            except (TypeError, ValueError):
                raise TypeError(f"{self._kind}: a node is (name, layer, inputs), got "
                                f"{item!r}") from None
            self._add(name, layer, inputs)
        if not self._nodes:
            raise ValueError(f"{self._kind}: the graph has no nodes; give at least one "
                             f"(name, layer, inputs)")
        self._finish(output)

    _kind = "Graph"

    # -- construction ------------------------------------------------------------------
    def _add(self, name, layer, inputs):
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self._kind}: node names are non-empty strings, got {name!r}")
        if name in self._index:
            raise ValueError(f"{self._kind}: node name {name!r} is used twice"
                             + (" ('input' names the graph's input)" if name == self.INPUT else "")
                             + "; give every node its own name")
        missing = [m for m in _PROTOCOL if not callable(getattr(layer, m, None))]
        if missing:
            raise TypeError(f"{self._where(len(self._nodes), name)}: {layer!r} is not a layer: "
                            f"it lacks {', '.join(missing)}; subclass fwdderiv.core.Layer")
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        unknown = [i for i in inputs if i not in self._index]
        if unknown:
            raise ValueError(f"{self._where(len(self._nodes), name)} reads {unknown[0]!r}, which "
                             f"is not an earlier node; list nodes after the nodes they read "
                             f"(known so far: {', '.join(self._index)})")
        multi = getattr(layer, "multi_input", False)
        if not inputs or (len(inputs) != 1 and not multi):
            raise ValueError(f"{self._where(len(self._nodes), name)}: {layer!r} takes "
                             f"{'several inputs' if multi else 'one input'}, got "
                             f"{len(inputs)} ({', '.join(inputs) or 'none'})")
        self._nodes.append(Node(name, layer, tuple(self._index[i] for i in inputs)))
        self._index[name] = len(self._nodes)

    def _finish(self, output):
        if output is not None and output != self._nodes[-1].name:
            raise ValueError(f"{self._kind}: output={output!r} must be the last node "
                             f"({self._nodes[-1].name!r}); drop the nodes after it")
        uses = [0] * (len(self._nodes) + 1)
        for node in self._nodes:
            for v in node.inputs:
                uses[v] += 1
        uses[-1] += 1                               # the output is read by the caller
        dead = [n.name for n, u in zip(self._nodes, uses[1:]) if u == 0]
        if dead:
            raise ValueError(f"{self._kind}: node(s) {', '.join(dead)} do not reach the "
                             f"output; remove them or use their values")
        owners = {}
        for node in self._nodes:
            if getattr(node.layer, "param_names", ()):
                if id(node.layer) in owners:
                    raise ValueError(
                        f"{self._kind}: nodes {owners[id(node.layer)]!r} and {node.name!r} share "
                        f"one layer with parameters; give each node its own layer")
                owners[id(node.layer)] = node.name
        self._uses = uses
        # the leading chain of linear layers, each value read by the next node only
        # (path_vjp evaluates it at the ends of a path instead of at every point)
        head, L = 0, len(self._nodes)
        while head < L - 1 and self._nodes[head].inputs == (head,) and uses[head] == 1 \
                and getattr(self._nodes[head].layer, "linear", False) \
                and not getattr(self._nodes[head].layer, "multi_input", False):
            head += 1
        self._head = head

    def _where(self, k, name=None):
        name = self._nodes[k].name if name is None else name
        return f"{self._kind} node {name!r}"

    # -- container ---------------------------------------------------------------------
    @property
    def nodes(self):
        """The nodes, in evaluation order: ``(name, layer, input names)``."""
        names = [self.INPUT] + [n.name for n in self._nodes]
        return [(n.name, n.layer, [names[v] for v in n.inputs]) for n in self._nodes]

    @property
    def layers(self):
        """The layers of the nodes, in evaluation order (the last one gives the output)."""
        return [n.layer for n in self._nodes]

    def __len__(self):
        return len(self._nodes)

    def __getitem__(self, name):
        """A node's layer by name or position; a slice from the start, ``net[:k]``, is the
        graph of the first k nodes (``net[:-1]`` drops a final softmax)."""
        if isinstance(name, slice):
            start, stop, step = name.indices(len(self._nodes))
            if start != 0 or step != 1 or stop < 1:
                raise ValueError(f"{self._kind}[{name.start}:{name.stop}:{name.step}]: only a "
                                 f"non-empty prefix net[:k] is a graph (its input stays the "
                                 f"network's input)")
            return Graph(self.nodes[:stop])
        if isinstance(name, str):
            k = self._index.get(name, 0) - 1
            if k < 0:
                raise KeyError(f"{self._kind} has no node {name!r}")
            return self._nodes[k].layer
        return self._nodes[name].layer

    def __repr__(self):
        rows = "".join(f"\n  {name}: {layer!r} <- {', '.join(inputs)}"
                       for name, layer, inputs in self.nodes)
        return f"{type(self).__name__}({rows}\n)"

    @property
    def uses_kernels(self):
        """True if a layer runs Numba kernels (convolution, pooling): BLAS is then kept
        single-threaded during this network's calls (:mod:`fwdderiv._threads`)."""
        return any(getattr(n.layer, "uses_kernels", False) for n in self._nodes)

    numba_heavy = uses_kernels

    @property
    def params(self):
        """One dict of live parameter arrays per node (empty for parameter-free layers)."""
        return [getattr(n.layer, "params", {}) for n in self._nodes]

    # -- shapes ------------------------------------------------------------------------
    def shapes(self, in_shape):
        """Per-example shapes of the input and of every node's output, in node order."""
        shapes = [tuple(int(s) for s in in_shape)]
        for k, node in enumerate(self._nodes):
            try:
                shapes.append(tuple(node.layer.output_shape(*[shapes[v] for v in node.inputs])))
            except (ValueError, TypeError) as err:
                raise type(err)(f"{self._where(k)}, {err}") from None
        return shapes

    def output_shape(self, in_shape):
        """Per-example output shape; a ValueError names the first node that does not fit."""
        return self.shapes(in_shape)[-1]

    def _input(self, x):
        x = as_float_array(x, self._kind, "x")
        if x.ndim < 2:
            raise ValueError(
                f"{self._kind} expected a batch x of shape (N, *S) with at least 2 axes, got "
                f"{shape_str(x.shape)}; add a batch axis with x[None]")
        try:
            return x, self.shapes(x.shape[1:])
        except ValueError as err:
            first = str(err).startswith(self._where(0) + ",")
            raise (_with_batch(err, x.shape) if first else err) from None

    # -- the forward loop --------------------------------------------------------------
    def _run(self, x=None, caches=None, dx=None, n=None, keep=False, windows=(),
             record=None, dense=None, start=0, stop=None, hold=False, carry=None):
        """One pass over the nodes (or the primal over nodes ``start`` to ``stop - 1``:
        ``x`` is then value ``start``, and value ``stop`` is returned).

        Computes the primal from ``x`` (or takes each node's cache from ``caches``) and,
        if ``dx`` is given, pushes that tangent along: a tangent with batch 1 while ``n``
        examples run is shared by all of them, and stays shared through linear layers.
        The first ``len(windows)`` nodes carry windowed tangents (:mod:`fwdderiv.core.local`;
        ``windows[k]`` is the window of node k's value); leaving them, ``dense(T, window)``
        (a :class:`~fwdderiv.core.local.Densify`) converts every windowed value still to be
        read, except one that the next node, its only reader, turns into its own dense
        tangent (``window_dense_jvp``). An elementwise layer before a
        layer that ``takes_slope`` is applied inside it; in the dense part, one before a
        layer with ``jvp_scaled`` (maybe through layers that only reshape) is applied
        inside that.
        ``record(k, h, dh)`` sees every node's value and dense tangent (fusion off).
        Returns ``(y, dy, caches or None)``; ``caches[k]`` is None for ``k < start``.

        The windowed region can run once for every direction chunk (its windows hold all
        directions whatever the seed, so a chunk's seed saves nothing there): ``hold=True``
        stops after it and returns its tangents, still windowed, as a carry; a later call
        with ``carry=`` and a chunk's ``dense`` converter resumes from there.
        """
        nodes, L = self._nodes, len(self._nodes)
        stop = L if stop is None else stop
        H = [None] * (L + 1)
        T = [None] * (L + 1)
        H[start], T[start] = x, dx
        left = list(self._uses)
        kept = [None] * start if keep else None
        n_win = len(windows)
        win = [local.Window((1, 1), (1, 1), (0, 0))] + list(windows)   # per windowed value

        def leave_windows():
            for v in range(n_win + 1):
                if T[v] is not None and v != from_windows:
                    T[v] = dense(T[v], win[v])

        if hold:
            stop = n_win
        elif carry is not None:
            start = n_win
            T[:n_win + 1], left = list(carry[0]), list(carry[1])
        fused = None               # the slope of an elementwise node taken ahead
        through = None             # a conv whose windows the selecting layer after it runs
        pending = None             # the same in the dense part, for a jvp_scaled layer
        columns = None             # (j, slope, cols, tangent of cols) for node j's jvp_scaled
        deferred = None            # (layer, cache, tangents) of a node whose reader scales
        # the node after the windowed region reads the last windows itself, when it is
        # their only reader and declares window_dense_jvp (its value's index = its own)
        from_windows = n_win if (dx is not None and record is None and 0 < n_win < L and
                                 self._nodes[n_win].inputs == (n_win,) and
                                 self._uses[n_win] == 1 and
                                 hasattr(self._nodes[n_win].layer, "window_dense_jvp")) \
            else -1
        if carry is not None:
            leave_windows()
        for k in range(start, stop):
            node = nodes[k]
            layer = node.layer
            if caches is None:
                try:
                    H[k + 1], cache = layer.forward(*[H[v] for v in node.inputs])
                except ValueError as err:
                    raise type(err)(f"{self._where(k)}, {err}") from None
            else:
                cache = caches[k]
            if keep:
                kept.append(cache)
            if dx is not None and k < n_win:
                if through is None and record is None and self._through_ahead(k, n_win):
                    v = node.inputs[0]
                    through = (layer, cache, T[v], win[v], win[k + 1])   # run at the pool
                elif record is None and self._fuses_ahead(k, n_win):
                    fused = layer.slope(cache)                  # applied by node k + 1
                    T[k + 1] = T[node.inputs[0]]                # the tangent before f
                elif through is not None:
                    T[k + 1] = self._window_through(through, layer, cache, win[k + 1], n,
                                                    fused)
                    through = fused = None
                elif fused is not None:
                    v = node.inputs[0]
                    T[k + 1] = layer.window_jvp(cache, T[v], win[v], win[k + 1], n, fused)
                    fused = None
                elif getattr(layer, "multi_input", False):
                    T[k + 1] = layer.window_jvp(cache, [T[v] for v in node.inputs],
                                                [win[v] for v in node.inputs], win[k + 1], n)
                else:
                    v = node.inputs[0]
                    T[k + 1] = layer.window_jvp(cache, T[v], win[v], win[k + 1], n)
                if record is not None:
                    record(k, H[k + 1], dense(T[k + 1], win[k + 1]))
            elif dx is not None and deferred is not None:
                # node k - 1's tangent with node k's factor per channel in its weights
                prev, prev_cache, dins = deferred
                deferred = None
                scale = layer.channel_scale(cache, dins[0].dtype)
                if scale is None:
                    T[k] = self._jvp_node(prev, prev_cache, dins, n)
                    T[k + 1] = self._jvp_node(layer, cache, [T[k]], n)
                else:
                    T[k + 1] = self._jvp_node(prev, prev_cache, dins, n, scale)
            elif dx is not None and columns is not None and k < columns[0]:
                pass        # an elementwise or reshaping node before node j: no tangent
            elif dx is not None and (k == from_windows or columns is not None or
                                     (pending is not None and
                                      not getattr(layer, "reshape", False))):
                # a dense tangent made by a layer's own method; only the columns that a
                # later jvp_scaled layer multiplies, when it can (see _columns_ahead)
                want = self._columns_ahead(k, caches) if record is None else None
                v = node.inputs[0]
                if k == from_windows:
                    dy = self._from_windows(layer, cache, T[v], win[v], dense, n, want)
                elif columns is not None:
                    _, slope, cols, dx_cols = columns
                    dy = self._scaled(layer, cache, dx_cols, slope, cols, want)
                else:
                    dy = self._scaled(layer, cache, T[v], pending, None, want)
                    pending = None
                columns = None
                if isinstance(dy, tuple):                   # the columns node j wants
                    columns = want + (dy[0],)
                else:
                    T[k + 1] = dy
            elif dx is not None and record is None and pending is None and \
                    self._scales_ahead(k) is not None:
                pending = layer.slope(cache)                    # applied by jvp_scaled
                T[k + 1] = T[node.inputs[0]]                    # the tangent before f
            elif dx is not None and pending is not None:        # a reshaping layer
                v = node.inputs[0]
                T[k + 1] = self._jvp_node(layer, cache, [T[v]], n)
                pending = pending.reshape(
                    (pending.shape[0],) + tuple(layer.output_shape(pending.shape[1:])))
            elif dx is not None and record is None and k + 1 < stop and \
                    self._folds_scale_ahead(k):
                deferred = (layer, cache, [T[v] for v in node.inputs])
            elif dx is not None:
                T[k + 1] = self._jvp_node(layer, cache, [T[v] for v in node.inputs], n)
                if record is not None:
                    record(k, H[k + 1], T[k + 1])
            for v in node.inputs:
                left[v] -= 1
                if left[v] == 0:
                    H[v] = T[v] = None
            if hold:
                continue
            if dx is not None and k + 1 == n_win:       # leaving the windowed region
                leave_windows()
        if hold:
            return T[:n_win + 1], left
        return H[stop], T[stop], kept

    def _from_windows(self, layer, cache, T, window, dense, n, want):
        """The dense tangent of the node after the windowed run, from the last windows
        ``T`` by the layer's ``window_dense_jvp`` (only the columns of ``want``, as a
        1-tuple, when it takes them), or from ``T`` converted to dense."""
        if want is not None:
            dy = layer.window_dense_jvp(cache, T, window, dense, out_cols=want[2])
            if dy is not None:
                return (dy,)
        dy = layer.window_dense_jvp(cache, T, window, dense)
        if dy is None:                                  # the layer declined: go dense
            dy = self._jvp_node(layer, cache, [dense(T, window)], n)
        return dy

    @staticmethod
    def _scaled(layer, cache, dx, slope, cols, want):
        """``layer.jvp_scaled`` of ``dx``, or of the columns ``cols`` that ``dx`` holds;
        only the output columns of ``want``, as a 1-tuple, if given."""
        kw = {} if cols is None else {"cols": cols}
        if want is None:
            return layer.jvp_scaled(cache, dx, slope, **kw)
        return (layer.jvp_scaled(cache, dx, slope, out_cols=want[2], **kw),)

    def _fuses_ahead(self, k, n_win):
        """True if node k is elementwise and node k + 1, inside the windowed region, is its
        only reader and takes its slope (a max-pool): k's windowed tangent is not built."""
        if k + 1 >= n_win or not getattr(self._nodes[k].layer, "elementwise", False):
            return False
        nxt = self._nodes[k + 1]
        return nxt.inputs == (k + 1,) and self._uses[k + 1] == 1 and \
            getattr(nxt.layer, "takes_slope", False)

    def _through_ahead(self, k, n_win):
        """True if node k declares ``window_jvp_through`` and its value reaches a layer
        that takes a slope (a max-pool) inside the windowed region, directly or through
        an elementwise layer fused ahead, each value read by the next node only: the
        selecting layer then computes k's windows itself, only where it selects."""
        if not hasattr(self._nodes[k].layer, "window_jvp_through"):
            return False
        j = k + 1
        if j < n_win and self._fuses_ahead(j, n_win):
            j += 1
        return j < n_win and self._nodes[j].inputs == (j,) and self._uses[j] == 1 and \
            self._nodes[k + 1].inputs == (k + 1,) and self._uses[k + 1] == 1 and \
            getattr(self._nodes[j].layer, "takes_slope", False)

    @staticmethod
    def _window_through(through, layer, cache, pooled, n, slope):
        """The windows after the selecting ``layer``, from those before the conv
        ``through`` holds: by the conv's ``window_jvp_through``, or layer by layer if it
        declines."""
        conv, conv_cache, T, window, conv_win = through
        out = conv.window_jvp_through(conv_cache, T, window, layer, cache, pooled, n, slope)
        if out is None:
            out = layer.window_jvp(cache, conv.window_jvp(conv_cache, T, window, conv_win, n),
                                   conv_win, pooled, n, slope)
        return out

    def _scales_ahead(self, k):
        """The node that declares ``jvp_scaled`` if node k is elementwise and its value
        reaches that node through nothing but single-reader layers that only reshape:
        node k's dense tangent is then not built, its slope goes to that node. Else
        None."""
        if not getattr(self._nodes[k].layer, "elementwise", False):
            return None
        for j in range(k + 1, len(self._nodes)):
            node = self._nodes[j]
            if node.inputs != (j,) or self._uses[j] != 1:
                return None
            if hasattr(node.layer, "jvp_scaled"):
                return j
            if not getattr(node.layer, "reshape", False):
                return None
        return None

    def _columns_ahead(self, k, caches):
        """For node k, which turns windows into a dense tangent: ``(j, slope, cols)`` if
        its value is read only by an elementwise node whose slope goes to node j's
        ``jvp_scaled``, node j picks the columns ``cols`` worth multiplying
        (``live_columns``) and node k can compute just those (``takes_columns``); else
        None. ``slope`` is the elementwise node's, reshaped for node j; ``cols`` index
        node k's flattened output (elementwise and reshaping layers keep its order)."""
        nodes = self._nodes
        if caches is None or k + 1 >= len(nodes) or self._uses[k + 1] != 1 or \
                not getattr(nodes[k].layer, "takes_columns", False):
            return None
        j = self._scales_ahead(k + 1)
        if j is None or nodes[k + 1].inputs != (k + 1,) or \
                not hasattr(nodes[j].layer, "live_columns"):
            return None
        slope = nodes[k + 1].layer.slope(caches[k + 1])
        for i in range(k + 2, j):                       # the layers that only reshape
            slope = slope.reshape((slope.shape[0],) +
                                  tuple(nodes[i].layer.output_shape(slope.shape[1:])))
        cols = nodes[j].layer.live_columns(slope)
        return None if cols is None else (j, slope, cols)

    def _folds_scale_ahead(self, k):
        """True if node k declares ``jvp_channel_scaled`` and its value's only reader, the
        next node, declares ``channel_scale`` (a convolution, then BatchNorm): the
        factors may go into node k's weights (decided when the next node's cache is
        known)."""
        nodes = self._nodes
        return hasattr(nodes[k].layer, "jvp_channel_scaled") and k + 1 < len(nodes) and \
            nodes[k + 1].inputs == (k + 1,) and self._uses[k + 1] == 1 and \
            hasattr(nodes[k + 1].layer, "channel_scale")

    def _folds_scale_behind(self, k, caches, grads, stop, dtype):
        """``(p, scale)`` if node k scales channels (``channel_scale``) and the node p
        before it, whose value only node k reads, declares ``vjp_channel_scaled`` (and
        has no parameter gradient to give); else None."""
        layer = self._nodes[k].layer
        if not hasattr(layer, "channel_scale"):
            return None
        p = self._fusable(self._nodes[k].inputs[0], k, grads, stop)
        if p is None or not hasattr(self._nodes[p].layer, "vjp_channel_scaled"):
            return None
        scale = layer.channel_scale(caches[k], dtype)
        return None if scale is None else (p, scale)

    @staticmethod
    def _jvp_node(layer, cache, dins, n, scale=None):
        shared = [t.shape[0] != n for t in dins]
        if any(shared) and not (all(shared) and getattr(layer, "linear", False)):
            dins = [np.broadcast_to(t, (n,) + t.shape[1:]) if s else t
                    for t, s in zip(dins, shared)]
        if scale is not None:
            return layer.jvp_channel_scaled(cache, *dins, scale)
        return layer.jvp(cache, *dins)

    # -- the reverse loop --------------------------------------------------------------
    def _fusable(self, v, consumer, grads, stop=0):
        """The node producing value ``v`` if ``consumer`` is its only reader (and, when
        parameter gradients are wanted, it has no parameters) and it is not before node
        ``stop``, else None."""
        k = v - 1
        if k < stop or self._uses[v] != 1:
            return None
        layer = self._nodes[k].layer
        if grads is not None and getattr(layer, "param_names", ()):
            return None
        return k

    def _pull(self, caches, g, grads=None, need_input=True, top=None, stop=0, reduce=None):
        """Cotangents ``g`` (N, K, *S_out) pulled back to the input: (N, K, *S_in), or None
        if ``need_input`` is False. ``grads`` (a list, one slot per node) receives each
        node's parameter gradients for K = 1 (training). With ``top`` and ``stop``, ``g``
        is the cotangent of value ``top`` and is pulled back through nodes ``top - 1``
        down to ``stop`` only, to value ``stop``.

        ``reduce`` (T,): the N rows are T blocks of M examples, and value ``stop`` gets
        the weighted sum of the blocks, (M, K, ...): a layer that declares
        ``vjp_reduced`` makes it in its own pull-back, the others' are summed after.

        An elementwise layer just before a layer that ``takes_slope`` (max-pooling) is
        fused into that layer's pull-back, and a layer before them that declares
        ``vjp_through`` (a convolution) may scatter straight from the pooled cotangent:
        one pass instead of three over the largest cotangents, most of them zero."""
        nodes = self._nodes
        top = len(nodes) if top is None else top
        cot = {top: g}
        done = set()

        def add(v, gv, reduced=False):
            if v == stop and reduce is not None and not reduced:
                gv = _reduce_blocks(gv, reduce)
            cot[v] = gv if v not in cot else cot[v] + gv

        for k in range(top - 1, stop - 1, -1):
            if k in done:
                continue
            node, g = nodes[k], cot.pop(k + 1)
            layer, cache, src = node.layer, caches[k], node.inputs
            if grads is not None and hasattr(layer, "param_vjp"):
                grads[k] = layer.param_vjp(cache, g[:, 0])
            if not need_input and all(v == 0 for v in src):
                continue
            slope = None
            if getattr(layer, "takes_slope", False):
                j = self._fusable(src[0], k, grads, stop)
                if j is not None and getattr(nodes[j].layer, "elementwise", False):
                    slope, src = nodes[j].layer.slope(caches[j]), nodes[j].inputs
                    done.add(j)
                p = self._fusable(src[0], k, grads, stop)
                if p is not None and hasattr(nodes[p].layer, "vjp_through"):
                    gx = nodes[p].layer.vjp_through(caches[p], g, layer, cache, slope)
                    if gx is not None:
                        done.add(p)
                        if grads is not None:
                            grads[p] = {}
                        add(nodes[p].inputs[0], gx)
                        continue
                if src[0] == stop and reduce is not None and hasattr(layer, "vjp_reduced"):
                    add(stop, layer.vjp_reduced(cache, g, reduce, slope=slope), reduced=True)
                    continue
            folded = self._folds_scale_behind(k, caches, grads, stop, g.dtype)
            if folded is not None:          # node k's factors per channel in node p's weights
                p, scale = folded
                done.add(p)
                if grads is not None:
                    grads[p] = {}
                if need_input or nodes[p].inputs[0] != 0:
                    add(nodes[p].inputs[0],
                        nodes[p].layer.vjp_channel_scaled(caches[p], g, scale))
                continue
            gx = layer.vjp(cache, g) if slope is None else layer.vjp(cache, g, slope=slope)
            if getattr(layer, "multi_input", False):
                for v, gv in zip(src, gx):
                    add(v, gv)
            else:
                add(src[0], gx)
        return cot.get(stop) if need_input else None

    # -- primal ------------------------------------------------------------------------
    @_call
    def forward(self, x):
        """Output ``F(x)`` of shape ``(N, *S_out)`` for a batch ``x`` of shape ``(N, *S_in)``."""
        x, _ = self._input(x)
        return self._run(x)[0]

    __call__ = forward

    @_call
    def forward_cached(self, x):
        """``(y, caches)``: the output and each node's cache, for :meth:`backward`."""
        x, _ = self._input(x)
        y, _, caches = self._run(x, keep=True)
        return y, caches

    @_call
    def backward(self, caches, gy, input_grad=True):
        """Reverse pass for training.

        Parameters
        ----------
        caches : list
            From :meth:`forward_cached`.
        gy : ndarray of shape (N, *S_out)
            Cotangent of the output (e.g. the loss gradient).
        input_grad : bool
            If False, skip the cotangent of the input (``gx`` is None).

        Returns
        -------
        gx : ndarray of shape (N, *S_in) or None
        grads : list of dict
            Parameter gradients, one dict per node, keys as in ``layer.params``.
        """
        grads = [{} for _ in self._nodes]
        gx = self._pull(caches, gy[:, None], grads=grads, need_input=input_grad)
        return (gx[:, 0] if input_grad else None), grads

    @_call
    def pullback(self, caches, gy):
        """Reverse mode from a pass already made: :meth:`vjp` without its forward pass.

        Parameters
        ----------
        caches : list
            From :meth:`forward_cached` (the output decides what to pull back, e.g. a
            loss gradient, without a second primal pass).
        gy : ndarray of shape (N, K, *S_out)

        Returns
        -------
        gx : ndarray of shape (N, K, *S_in)
        """
        if len(caches) != len(self._nodes):
            raise ValueError(f"{self._kind}.pullback expected the {len(self._nodes)} caches "
                             f"of this network's forward_cached, got {len(caches)}")
        if np.ndim(gy) < 2:
            raise ValueError(f"{self._kind}.pullback expected gy of shape (N, K, *S_out), "
                             f"got {shape_str(np.shape(gy))}; add a cotangent axis with "
                             "gy[:, None]")
        return self._pull(caches, gy)

    # -- derivatives -------------------------------------------------------------------
    @_call
    def jvp(self, x, dx):
        """Forward mode: ``(y, dy)`` with ``dy = (dF/dx) dx``.

        ``dx`` has shape ``(N, D, *S_in)`` (D directions per example); ``dy`` has shape
        ``(N, D, *S_out)``. The primal is computed once for the batch.
        """
        x, _ = self._input(x)
        dx = check_tangent(x, dx, f"{self._kind}.jvp")
        y, dy, _ = self._run(x, dx=dx, n=x.shape[0])
        return y, dy

    @_call
    def vjp(self, x, gy):
        """Reverse mode: ``(y, gx)`` with ``gx = gy (dF/dx)``.

        ``gy`` has shape ``(N, K, *S_out)``; ``gx`` has shape ``(N, K, *S_in)``.
        """
        x, _ = self._input(x)
        y, _, caches = self._run(x, keep=True)
        g = check_tangent(y, gy, f"{self._kind}.vjp", name="gy", what="cotangent")
        return y, self._pull(caches, g)

    @_call
    def path_vjp(self, start, end, alphas, weights, gy, steps=None):
        r"""Reverse mode summed along straight paths, as integrated gradients needs:
        :math:`\sum_s w_s\, g\, F'(x_s)` at :math:`x_s = a + \alpha_s (b - a)`.

        The leading run of linear layers (padding, a first convolution) is affine, so its
        outputs at the T points are ``h(a) + alpha_s (h(b) - h(a))``: those layers run on
        ``a`` and ``b`` only, and they pull back the weighted sum of the T points'
        cotangents (one row per example instead of T). The rest runs on the T points.

        Parameters
        ----------
        start, end : ndarray of shape (N, *S_in)
            The ends a and b of each example's path.
        alphas, weights : array_like of shape (T,)
            The points' positions on the paths and their weights.
        gy : ndarray of shape (N, K, *S_out)
            The cotangent, the same at every point of an example's path.
        steps : int, optional
            Points of each path run at once (all T by default); the caller sizes it to
            its memory. The passes' sums are added at the end of the linear run (in the
            input's dtype: no buffer beyond one pass's), which then pulls back once.

        Returns
        -------
        ndarray of shape (N, K, *S_in)
        """
        where = f"{self._kind}.path_vjp"
        a, shapes = self._input(start)
        b = as_float_array(end, where, "end")
        if b.shape != a.shape:
            raise ValueError(f"{where} expected end of the shape of start, "
                             f"{shape_str(a.shape)}, got {shape_str(b.shape)}")
        alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != alphas.shape or not len(alphas):
            raise ValueError(f"{where} expected alphas and weights as two 1-d arrays of one "
                             f"length >= 1, got shapes {shape_str(alphas.shape)} and "
                             f"{shape_str(weights.shape)}")
        b = b.astype(a.dtype, copy=False)
        g = check_tangent(np.empty((len(a),) + shapes[-1], a.dtype), gy, where, name="gy",
                          what="cotangent")
        T = len(alphas)
        steps = T if steps is None else check_int(steps, "steps", where, minimum=1)
        # a layer in its training form (batch statistics) is not affine per example
        p = next((k for k in range(self._head)
                  if getattr(self._nodes[k].layer, "training", False)), self._head)
        if p:
            h0 = self._run(a, stop=p)[0]
            h1, _, head_caches = self._run(b, stop=p, keep=True)
        else:
            h0, h1 = a, b
        diff, lead = h1 - h0, (-1,) + (1,) * h0.ndim
        # the cotangent of every point of a pass, step-major like the points
        rows = np.ascontiguousarray(np.broadcast_to(
            g[None], (min(steps, T),) + g.shape)).reshape((-1,) + g.shape[1:])
        total = None
        for s0 in range(0, T, steps):
            s1 = min(s0 + steps, T)
            points = alphas[s0:s1].astype(a.dtype).reshape(lead) * diff[None]
            points += h0[None]
            _, _, caches = self._run(points.reshape((-1,) + h0.shape[1:]), start=p,
                                     keep=True)
            cot = self._pull(caches, rows[:(s1 - s0) * len(a)], stop=p,
                             reduce=weights[s0:s1])
            if total is None:
                total = cot
            else:
                total += cot
        return self._pull(head_caches, total, top=p) if p else total

    def _steps(self, shapes):
        """For the memory planner: per node, its layer, input shapes, output shape, and
        the elements of other values alive across it (residual branches)."""
        sizes = [_size(s) for s in shapes]
        last = {}
        for k, node in enumerate(self._nodes):
            for v in node.inputs:
                last[v] = k
        steps, alive = [], 0              # alive: values made before node k, read after it
        for k, node in enumerate(self._nodes):
            alive += sizes[k] if last.get(k, -1) > k - 1 and k > 0 else 0
            ins = set(node.inputs)
            here = alive - sum(sizes[v] for v in ins if v > 0 and last[v] > k - 1)
            steps.append((node.layer, [shapes[v] for v in node.inputs], shapes[k + 1],
                          here + (sizes[0] if 0 not in ins and last.get(0, -1) > k else 0)))
            alive -= sum(sizes[v] for v in ins if v > 0 and last[v] == k)
        return steps

    @_call
    def jacobian(self, x, mode="forward", max_memory=None, return_output=False,
                 intermediates=False, windowed=True):
        r"""The forward derivative :math:`\partial F/\partial x` of every example.

        Parameters
        ----------
        x : ndarray of shape (N, *S_in)
        mode : {"forward", "reverse"}
            ``"forward"`` pushes the identity seed through the layers (the paper's
            recursion, one tangent column per input feature); ``"reverse"`` pulls one
            cotangent per output back. Both give the same matrix.
        max_memory : int, optional
            Bytes allowed for the tangent work of one call (default
            :data:`fwdderiv.config.DEFAULT_MAX_MEMORY`). Directions and examples are split
            into chunks that fit; the result itself is not counted.
        return_output : bool
            Also return ``F(x)``, computed once with the Jacobian.
        intermediates : bool
            Return a :class:`fwdderiv.core.Trace` with every H_k and dH_k/dx instead,
            from the same forward loop (forward mode only).
        windowed : bool
            Forward mode only: carry the tangents of the leading chain of layers that
            declare a windowed rule (conv, pooling, padding, pointwise layers) as
            receptive-field windows (:mod:`fwdderiv.core.local`), where they can be
            non-zero, and go dense after. False carries dense tangents throughout. Both
            give the same numbers up to float rounding.

        Returns
        -------
        J : ndarray of shape (N, *S_out, *S_in)
            The layout of ``torch.func.vmap(torch.func.jacfwd(f))``.
        """
        name = f"{self._kind}.jacobian"
        if mode not in ("forward", "reverse"):
            raise ValueError(f"{name}: mode must be 'forward' or 'reverse', got {mode!r}")
        x, shapes = self._input(x)
        max_memory = _budget(max_memory, name)
        if intermediates:
            if mode != "forward":
                raise ValueError(f"{name}: intermediates=True needs mode='forward'")
            return self._trace(x, shapes, windowed)
        N, s_in, s_out = x.shape[0], shapes[0], shapes[-1]
        D, K = _size(s_in), _size(s_out)
        if N == 0 or D == 0 or K == 0:             # nothing to differentiate: no work
            J = np.zeros((N,) + s_out + s_in, x.dtype)
            return (self.forward(x), J) if return_output else J
        steps, itemsize = self._steps(shapes), x.dtype.itemsize
        _check_result_fits(N * K * D * itemsize, (N,) + s_out + s_in, name)
        windows, plan = [], None
        if mode == "forward" and windowed:
            windows = self._windows(shapes)
            # the longest windowed prefix whose windows fit the budget (windows grow with
            # depth: on a large input the last ones can outweigh dense direction chunks)
            while windows and plan is None:
                plan = plan_windowed(steps, shapes, N, itemsize, max_memory, len(windows),
                                     self._window_elements(shapes, windows))
                if plan is None:
                    windows = windows[:-1]
        if plan is None:
            plan = plan_chunks(steps, shapes, N, D if mode == "forward" else K, itemsize,
                               max_memory, name)
        if mode == "reverse" and len(plan.example_chunks) == len(plan.direction_chunks) == 1:
            y, J = self._reverse(x, K, s_out, sum(_size(s) for s in shapes))
            J = np.ascontiguousarray(J).reshape((N,) + s_out + s_in)
            return (y, J) if return_output else J
        J = np.empty((N, K, D), dtype=x.dtype)
        y = np.empty((N,) + s_out, dtype=x.dtype)
        for n0, n1 in plan.example_chunks:
            n = n1 - n0
            y[n0:n1], _, caches = self._run(x[n0:n1], keep=True)
            # the windows hold every direction whatever the seed (a chunk's seed only
            # zeroes the others), so they run once per example chunk; the planner already
            # counts them per example, whatever the directions (plan_windowed)
            carry = None
            if windows and len(plan.direction_chunks) > 1:
                carry = self._run(caches=caches, n=n, hold=True,
                                  **self._seed(s_in, 0, D, x.dtype, windows, n))
            for d0, d1 in plan.direction_chunks:
                if mode == "reverse":
                    g = self._pull(caches, _identity(n, d0, d1, s_out, x.dtype))
                    J[n0:n1, d0:d1, :] = g.reshape(n, d1 - d0, D)
                    continue
                _, dh, _ = self._run(caches=caches, n=n, carry=carry,
                                     **self._seed(s_in, d0, d1, x.dtype, windows, n))
                dh = dh.reshape(dh.shape[0], d1 - d0, K)      # batch 1 if still shared
                J[n0:n1, :, d0:d1] = dh.transpose(0, 2, 1)
        J = J.reshape((N,) + s_out + s_in)
        return (y, J) if return_output else J

    def _reverse(self, x, K, s_out, values):
        """``F(x)`` and the K one-hot cotangents of every example pulled back, (N, K,
        *S_in), in one chunk. Inside a BLAS-limited scope with Numba kernels that may run
        concurrently, the work is cut into one part per core, each run on its own thread
        with its kernels and products on one core (:func:`fwdderiv._threads.alone`):
        the examples when there are enough, else the rows of one forward pass. The cores
        then split whole passes instead of each layer (ResNet-20 at B = 4: 83 against
        58 ms for the pull-back alone), and the numbers differ by float rounding only.
        ``values``: the elements of all the network's values per example, a measure of
        a row's work."""
        N, dtype = x.shape[0], x.dtype
        fits = self.uses_kernels and N * K * values >= SPLIT_PASSES_FROM and \
            _threads.kernels_run_concurrently()
        # a layer in its training form (batch statistics) couples the examples: one pass
        per_example = not any(getattr(node.layer, "training", False) for node in self._nodes)
        examples = _threads.ranges(N, N * K * values, 1) if fits and per_example else [(0, N)]
        pieces = {}
        if len(examples) > 1:
            def piece(n0, n1):
                with _threads.alone(), cast_scope():
                    y, _, caches = self._run(x[n0:n1], keep=True)
                    pieces[n0] = y, self._pull(caches, _identity(n1 - n0, 0, K, s_out, dtype))

            _threads.run(examples, piece)
            return tuple(np.concatenate([pieces[n0][i] for n0, _ in examples])
                         for i in (0, 1))
        y, _, caches = self._run(x, keep=True)
        rows = _threads.ranges(K, N * K * values, 1) if fits else [(0, K)]
        if len(rows) == 1:
            return y, self._pull(caches, _identity(N, 0, K, s_out, dtype))

        def piece(k0, k1):
            with _threads.alone(), cast_scope():
                pieces[k0] = self._pull(caches, _identity(N, k0, k1, s_out, dtype))

        _threads.run(rows, piece)
        return y, np.concatenate([pieces[k0] for k0, _ in rows], axis=1)

    def _windows(self, shapes):
        """The windows of the longest prefix of nodes with windowed rules."""
        return local.plan_graph([(n.layer, n.inputs) for n in self._nodes], shapes)

    def _window_elements(self, shapes, windows):
        """Peak elements per example of the windowed region (for the memory planner):
        every windowed value alive while a node runs, plus twice its output (a conv's
        per-offset copy and product)."""
        C0 = shapes[0][0]
        size = [_size(shapes[0])] + [_size(shapes[k + 1]) * C0 * w.size[0] * w.size[1]
                                     for k, w in enumerate(windows)]
        last = {}
        for k, node in enumerate(self._nodes[:len(windows)]):
            for v in node.inputs:
                last[v] = k
        peak = 0
        for k in range(len(windows)):
            alive = sum(size[v] for v in range(k + 1) if last.get(v, len(windows)) >= k)
            peak = max(peak, alive + 2 * size[k + 1])
        return peak

    @staticmethod
    def _seed(s_in, d0, d1, dtype, windows, n):
        """Keyword arguments of :meth:`_run` for the identity seed of directions d0..d1:
        a dense seed shared by every example, or a windowed one with its converter."""
        if windows:
            return {"dx": local.seed(s_in, dtype, d0, d1), "windows": windows,
                    "dense": local.Densify(tuple(s_in), n, d0, d1)}
        return {"dx": _identity(1, d0, d1, s_in, dtype)}

    def _trace(self, x, shapes, windowed):
        N, D = x.shape[0], _size(shapes[0])
        windows = self._windows(shapes) if windowed else []
        outputs, tangents = [x], [np.broadcast_to(_identity(1, 0, D, shapes[0], x.dtype),
                                                  (N, D) + shapes[0])]

        def record(k, h, dh):
            outputs.append(h)
            tangents.append(np.broadcast_to(dh, (N,) + dh.shape[1:]))

        self._run(x, n=N, record=record, **self._seed(shapes[0], 0, D, x.dtype, windows, N))
        return Trace(self.layers, shapes, outputs, tangents,
                     names=[n.name for n in self._nodes])


def _reduce_blocks(g, weights):
    """``sum_s weights[s] * g[s * M:(s + 1) * M]`` for ``g`` of T * M rows."""
    T = len(weights)
    out = np.asarray(weights, dtype=g.dtype) @ g.reshape(T, -1)
    return out.reshape((g.shape[0] // T,) + g.shape[1:])


def _identity(n, k0, k1, shape, dtype):
    """Unit vectors k0..k1 of a flat (*shape) space: (n, k1 - k0, *shape)."""
    K = _size(shape)
    e = np.zeros((n, k1 - k0, K), dtype=dtype)
    e[:, np.arange(k1 - k0), np.arange(k0, k1)] = 1
    return e.reshape((n, k1 - k0) + tuple(shape))


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_result_fits(nbytes, shape, name):
    """A Jacobian larger than the machine's memory fails before it is allocated, with
    the size it needs (``max_memory`` bounds the work, not the result)."""
    total = _physical_memory()
    if total is not None and nbytes > total:
        raise ValueError(
            f"{name}: the Jacobian of shape {shape} needs {nbytes / 2**30:.1f} GiB, more than "
            f"this machine's {total / 2**30:.1f} GiB of memory; pass fewer examples at a "
            f"time, or take vjp/jvp products instead of the full matrix")


def _budget(max_memory, name):
    if max_memory is None:
        return DEFAULT_MAX_MEMORY
    if isinstance(max_memory, bool) or not isinstance(max_memory, (int, np.integer)):
        raise TypeError(f"{name}: max_memory must be a positive int (bytes), got "
                        f"{max_memory!r}; e.g. max_memory=256 * 2**20")
    if max_memory <= 0:
        raise ValueError(f"{name}: max_memory must be a positive int (bytes), got "
                         f"{max_memory}; e.g. max_memory=256 * 2**20")
    return int(max_memory)
