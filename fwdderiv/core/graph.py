"""The graph: a DAG of layers and its public calls.

:class:`Graph` holds the nodes and checks them; its calls turn the graph into a plan
(:mod:`fwdderiv.core.plan`: steps, some of them fused by the rules of
:mod:`fwdderiv.fusions`) and run it with the interpreter (:mod:`fwdderiv.core.interpret`);
Jacobians are cut to a memory budget and spread over the cores by
:mod:`fwdderiv.core.jacobian`. :class:`fwdderiv.Sequential` is the chain case.
"""
import functools
from typing import NamedTuple

import numpy as np

from ..threads import blas_limited
from ..validation import as_float_array, check_tangent, shape_str
from . import interpret, jacobian as driver
from .layer import _with_batch, cast_scope, check_layer

def _call(method):
    """A public method's scope: BLAS limited while a network with Numba kernel layers
    runs (:mod:`fwdderiv.threads`), parameter casts shared by its layers."""
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
        check_layer(layer, self._where(len(self._nodes), name))
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
        self._plans = interpret.Plans(self._nodes, uses)

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
        single-threaded during this network's calls (:mod:`fwdderiv.threads`)."""
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

    # -- plans and the interpreter -----------------------------------------------------
    def _view(self, n_win=0):
        return self._plans.view(n_win)

    def _forward_plan(self, n_win=0, fuse=True):
        return self._plans.forward(n_win, fuse)

    def _reverse_plan(self, top, stop=0, grads=False, reduce=False, fuse=True):
        return self._plans.reverse(top, stop, grads, reduce, fuse)

    def _primal(self, x, start=0, stop=None, keep=False, **kwargs):
        """Values of nodes ``start`` to ``stop - 1`` from ``x`` (value ``start``):
        ``(value stop, caches or None)``; :func:`fwdderiv.core.interpret.primal`."""
        return interpret.primal(self._nodes, self._uses, x, start, stop, keep, self._where,
                                **kwargs)

    def _tangents(self, dx, n, windows=(), record=None, **kwargs):
        """:func:`fwdderiv.core.interpret.run_forward` on this graph's forward plan."""
        plan = self._forward_plan(len(windows), fuse=record is None)
        return interpret.run_forward(self._nodes, self._uses, plan, dx, n, windows=windows,
                                     record=record, where=self._where, **kwargs)

    def _pull(self, caches, g, grads=None, need_input=True, top=None, stop=0, reduce=None,
              extra=None, fuse=True, visit=None):
        """Cotangents ``g`` (N, K, *S_out; or None) pulled back to the input: (N, K,
        *S_in), or None if ``need_input`` is False. ``grads`` (a list, one slot per node)
        receives each node's parameter gradients for K = 1 (training). With ``top`` and
        ``stop``, ``g`` is the cotangent of value ``top`` and is pulled back through nodes
        ``top - 1`` down to ``stop`` only, to value ``stop``. ``reduce`` (T,): the N rows
        are T blocks of M examples, and value ``stop`` gets the weighted sum of the blocks,
        (M, K, ...). ``extra``, ``visit``: see :mod:`fwdderiv.core.interpret`;
        ``fuse=False`` runs node by node."""
        top = len(self._nodes) if top is None else top
        plan = self._reverse_plan(top, stop, grads is not None, reduce is not None, fuse)
        ctx = interpret.Reverse(self._nodes, caches, {} if g is None else {top: g}, grads,
                                need_input, stop, reduce, visit)
        return interpret.cotangents(plan, ctx, top, extra)

    # -- primal ------------------------------------------------------------------------
    @_call
    def forward(self, x, visit=None):
        """Output ``F(x)`` of shape ``(N, *S_out)`` for a batch ``x`` of shape ``(N, *S_in)``;
        ``visit(k, node, xs)`` sees each node and its input values before the node runs."""
        x, _ = self._input(x)
        return self._primal(x, visit=visit)[0]

    __call__ = forward

    @_call
    def forward_cached(self, x):
        """``(y, caches)``: the output and each node's cache, for :meth:`backward`."""
        x, _ = self._input(x)
        return self._primal(x, keep=True)

    @_call
    def backward(self, caches, gy, input_grad=True, extra=None):
        """Reverse pass for training: ``(gx, grads)`` from the ``caches`` of
        :meth:`forward_cached` and the output's cotangent ``gy`` (N, *S_out), e.g. a loss
        gradient. ``gx`` (N, *S_in) is None if ``input_grad`` is False; ``grads`` holds
        one dict of parameter gradients per node, keyed as ``layer.params``. ``extra``
        ({node name or "input": cotangent (N, *S)}) adds cotangents of inner values (a
        loss on them, a batch statistic's path); ``gy`` may then be None."""
        grads = [{} for _ in self._nodes]
        unknown = sorted(set(extra or ()) - set(self._index))
        if unknown:
            raise ValueError(f"{self._kind}.backward: extra names {unknown}, not nodes of this "
                             f"network; use node names or 'input'")
        extra = extra and {self._index[name]: g[:, None] for name, g in extra.items()}
        gx = self._pull(caches, None if gy is None else gy[:, None], grads=grads,
                        need_input=input_grad, extra=extra)
        return (gx[:, 0] if gx is not None else None), grads

    @_call
    def pullback(self, caches, gy):
        """Reverse mode from a pass already made: :meth:`vjp` without its forward pass.
        ``caches`` from :meth:`forward_cached` (its output decides what to pull back, e.g.
        a loss gradient, without a second primal pass); ``gy`` (N, K, *S_out) -> ``gx``
        (N, K, *S_in)."""
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
        return self._tangents(dx, x.shape[0], x=x)

    @_call
    def vjp(self, x, gy):
        """Reverse mode: ``(y, gx)`` with ``gx = gy (dF/dx)``.

        ``gy`` has shape ``(N, K, *S_out)``; ``gx`` has shape ``(N, K, *S_in)``.
        """
        x, _ = self._input(x)
        y, caches = self._primal(x, keep=True)
        g = check_tangent(y, gy, f"{self._kind}.vjp", name="gy", what="cotangent")
        return y, self._pull(caches, g)

    @_call
    def path_vjp(self, start, end, alphas, weights, gy, steps=None):
        r"""Reverse mode summed along straight paths, as integrated gradients needs:
        :math:`\sum_s w_s\, g\, F'(x_s)` at :math:`x_s = a + \alpha_s (b - a)`.

        The leading run of linear layers is affine along each path: it runs on the ends
        ``a`` and ``b`` only, and pulls back the weighted sum of the points' cotangents
        once. ``start``, ``end``: (N, *S_in), the ends a and b; ``alphas``, ``weights``:
        (T,), the points and their weights; ``gy``: (N, K, *S_out), the cotangent, the
        same at every point of a path; ``steps``: points of each path run at once (all T
        by default). Returns (N, K, *S_in).
        """
        return driver.path_vjp(self, start, end, alphas, weights, gy, steps)

    @_call
    def jacobian(self, x, mode="forward", max_memory=None, return_output=False,
                 intermediates=False, windowed=True, out=None):
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
            :data:`fwdderiv.config.DEFAULT_MAX_MEMORY`, or one direction of one example
            if that needs more). Directions and examples are split into chunks that fit;
            the result itself is not counted.
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
        out : array-like of shape (N, *S_out, *S_in), optional
            Where to write the Jacobian, chunk by chunk as it is computed: a
            ``numpy.memmap`` (``np.lib.format.open_memmap("J.npy", mode="w+",
            dtype=x.dtype, shape=...)``), a Zarr array, any array with slice assignment
            and a floating dtype. Then only ``max_memory`` (and the output ``F(x)``) is
            held in memory, and a result larger than memory is possible; without
            ``out``, a result larger than the machine's memory is refused before any
            work. Returned as ``J``.

        Returns
        -------
        J : ndarray of shape (N, *S_out, *S_in)
            The layout of ``torch.func.vmap(torch.func.jacfwd(f))`` (``out`` if given).
        """
        return driver.jacobian(self, x, mode, max_memory, return_output, intermediates,
                               windowed, out)

    def plan(self, in_shape, mode="forward", dtype=np.float32, batch=1, max_memory=None,
             windowed=True):
        """The plan that :meth:`jacobian` runs for ``batch`` examples of shape
        ``in_shape``: its steps, which rules fused which nodes, windowed or dense, and
        where the windowed run ends and why (``print(net.plan(shape).explain())``).

        Parameters
        ----------
        in_shape : tuple
            Per-example input shape.
        mode : {"forward", "reverse"}
        dtype, batch, max_memory, windowed :
            As for :meth:`jacobian`: they decide how far the windowed run reaches.

        Returns
        -------
        fwdderiv.core.plan.Plan
        """
        return driver.plan(self, in_shape, mode, dtype, batch, max_memory, windowed)
