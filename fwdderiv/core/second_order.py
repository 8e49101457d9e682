r"""Second-order pieces of the layer protocol: the gradient of a JVP.

For a layer :math:`y = f(x; \theta)` with Jacobian :math:`J(x; \theta) = \partial f/\partial x`,
the optional method ``jvp_grad(cache, x, dx, gdy)`` returns the gradient of the scalar

.. math:: s(x, \theta) = \sum_{n, d} \langle g_{n,d},\; J(x_n; \theta)\, dx_{n,d} \rangle

with respect to the input :math:`x` (per example) and to the parameters :math:`\theta`
(summed over the batch), for fixed tangents ``dx`` ``(N, D, *S)`` and cotangents ``gdy``
``(N, D, *S_out)``. Because :math:`\langle g, J\,dx\rangle = \langle J^\top g, dx\rangle`,
it is also the gradient of a VJP paired with a fixed vector: the "double backward" of
PyTorch and Chainer. Its gradients with respect to ``dx`` and ``gdy`` are the ordinary
VJP and JVP, so they need no new method.

It returns ``(gx, gparams)``: ``gx`` of shape ``(N, *S)``, or None where it is zero (every
layer whose JVP does not depend on ``x``: Linear, Conv2d, pooling, reshapes; and, almost
everywhere, the piecewise-linear ReLU and MaxPool2d), a tuple of them for a layer with
several inputs; ``gparams`` a dict keyed like ``layer.params``.

:func:`jvp_param_grads` runs a whole network with the interpreter
(:mod:`fwdderiv.core.interpret`): a forward pass carrying the primal and the tangent, a
reverse pass of the tangent's cotangent (pulled back by each layer's ``vjp``) that calls
each layer's ``jvp_grad`` on the way, then a reverse pass of the primal's cotangent (fed by
``jvp_grad`` and pulled back by ``vjp``); each layer's parameter gradient is its
``jvp_grad`` part plus its ``param_vjp`` of the primal cotangent.
:func:`jvp_grad_reference` is the dense reference every layer's ``jvp_grad`` is tested
against.
"""
import numpy as np

from ..threads import blas_limited
from .layer import cast_scope


def _second_order(layer, cache, xs, dxs, gdy, residual=None):
    method = getattr(layer, "jvp_grad", None)
    if method is None:
        if getattr(layer, "linear", False) and not getattr(layer, "param_names", ()):
            return None, {}          # a linear map without parameters: nothing to add
        raise TypeError(f"{layer!r} does not implement jvp_grad(cache, x, dx, gdy), which "
                        f"second-order derivatives (Jacobian regularisation) need; see "
                        f"fwdderiv.core.second_order")
    extra = {} if residual is None else {"residual": residual}
    if getattr(layer, "multi_input", False):
        return method(cache, tuple(xs), tuple(dxs), gdy, **extra)
    return method(cache, xs[0], dxs[0], gdy, **extra)


def _add(store, v, g):
    if g is not None:
        store[v] = g if v not in store else store[v] + g


def jvp_param_grads(net, x, dx, gdy):
    r"""Parameter gradients of :math:`\sum_{n,d} \langle g_{n,d}, J_n\, dx_{n,d}\rangle`.

    ``J_n`` is the input Jacobian of ``net`` at example ``x[n]``, ``dx`` and ``gdy`` are
    held fixed. Jacobian penalties reduce to this: see :mod:`fwdderiv.regularization`.

    Parameters
    ----------
    net : Graph or Sequential
        Every layer implements ``jvp_grad`` (or is linear without parameters).
    x : ndarray of shape (N, *S_in)
    dx : ndarray of shape (N, D, *S_in)
    gdy : ndarray of shape (N, D, *S_out)

    Returns
    -------
    list of dict
        One dict per node of ``net`` (empty for layers without parameters), keyed like
        ``layer.params``: the layout of ``net.backward``.
    """
    with blas_limited(net.uses_kernels), cast_scope():
        return Linearization(net, x).param_grads(dx, gdy)


class Linearization:
    """``net`` at ``x``: one primal pass whose caches serve several derivative passes
    (a VJP, then the second-order pass of the penalty, without recomputing the primal).
    Every pass is the interpreter's (:mod:`fwdderiv.core.interpret`).

    Parameters
    ----------
    net : Graph or Sequential
    x : ndarray of shape (N, *S_in)
    """

    def __init__(self, net, x):
        self.net = net
        self._H, self._caches = net._primal(x, keep=True, every=True)

    @classmethod
    def from_pass(cls, net, values, caches):
        """A linearization from a primal pass already made: ``values`` every node's value,
        the input first, and ``caches`` each node's forward cache (one per node)."""
        self = cls.__new__(cls)
        L = len(net)
        if len(values) != L + 1 or len(caches) != L:
            raise ValueError(f"Linearization.from_pass: expected {L + 1} values and {L} "
                             f"caches for {L} nodes, got {len(values)} and {len(caches)}")
        self.net, self._H, self._caches = net, list(values), list(caches)
        return self

    @property
    def output(self):
        return self._H[-1]

    @property
    def input(self):
        return self._H[0]

    @property
    def values(self):
        """Every node's value at the input, the input first."""
        return self._H

    @property
    def caches(self):
        """Every node's forward cache."""
        return self._caches

    def vjp(self, gy):
        """Cotangents ``gy`` (N, K, *S_out) pulled back to the input: (N, K, *S_in), node
        by node (the penalty pulls back one or two cotangents per example, too few for
        the fused pull-backs to pay)."""
        return self.net._pull(self._caches, gy, fuse=False)

    def param_grads(self, dx, gdy):
        """See :func:`jvp_param_grads`.

        A forward pass of the tangent ``dx`` node by node keeps every node's tangent (and
        each layer's JVP residual); a reverse pass of ``gdy`` node by node gives each node
        its ``jvp_grad`` (the parameter part, and the part of the primal's cotangent that
        enters its inputs); one training reverse pass pulls the latter back with the
        parameter gradients ``param_vjp`` adds."""
        T, kept = self._every_tangent(dx)
        grads, gx2 = self._jvp_grads(T, kept, gdy)
        del T[:], kept[:]
        extra = {v: g[:, None] for v, g in gx2.items()}
        primal = [{} for _ in grads]
        self.net._pull(self._caches, None, grads=primal, need_input=False, extra=extra)
        for gparams, more in zip(grads, primal):
            for name, g in more.items():
                gparams[name] = gparams[name] + g if name in gparams else g
        return grads

    def _every_tangent(self, dx):
        """Every node's tangent of ``dx`` (the input's first), with the batch axis of the
        examples, and each node's JVP residual."""
        n, L = self._H[0].shape[0], len(self._caches)
        T, kept = [np.broadcast_to(dx, (n,) + dx.shape[1:])] + [None] * L, [None] * L

        def record(k, h, dh):
            T[k + 1] = np.broadcast_to(dh, (n,) + dh.shape[1:])

        self.net._tangents(T[0], n, record=record, caches=self._caches, residuals=kept)
        return T, kept

    def _jvp_grads(self, T, kept, gdy):
        """Each node's ``jvp_grad`` at its tangent's cotangent (the reverse pass of
        ``gdy``): ``(parameter parts, one dict per node; primal cotangents by value)``."""
        H, caches = self._H, self._caches
        grads, gx2 = [{} for _ in caches], {}

        def visit(k, node, gt):
            src = node.inputs
            gx, gparams = _second_order(node.layer, caches[k], [H[v] for v in src],
                                        [T[v] for v in src], gt, kept[k])
            kept[k] = None
            grads[k] = dict(gparams)
            multi = getattr(node.layer, "multi_input", False)
            for i, v in enumerate(src):
                _add(gx2, v, gx[i] if multi and gx is not None else gx)

        self.net._pull(caches, gdy, need_input=False, fuse=False, visit=visit)
        return grads, gx2


def jvp_grad_reference(layer, x, dx, gdy, step=1e-6):
    r"""Dense reference for ``layer.jvp_grad``: central differences, float64.

    Differentiates :math:`s = \sum \langle g, \mathrm{jvp}(\mathrm{forward}(x), dx)\rangle`
    entry by entry with respect to ``x`` and to every parameter array (perturbed in
    place and restored). Slow (two JVPs per entry): for tests on small layers.

    Parameters
    ----------
    layer : layer
    x : ndarray of shape (N, *S), float64; a tuple of them for a multi-input layer
    dx : ndarray of shape (N, D, *S); a tuple of them for a multi-input layer
    gdy : ndarray of shape (N, D, *S_out)

    Returns
    -------
    gx : ndarray of shape (N, *S), or a tuple of them
    gparams : dict of ndarray
        Keyed like ``layer.params``.
    """
    multi = getattr(layer, "multi_input", False)
    xs = [np.array(a, dtype=np.float64) for a in (x if multi else (x,))]
    dxs = tuple(dx) if multi else (dx,)

    def s():
        _, cache = layer.forward(*xs)
        return float(np.sum(gdy * layer.jvp(cache, *dxs)))

    def central(a):
        g = np.zeros(a.shape)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            h = step * max(1.0, abs(old))
            flat[i] = old + h
            fp = s()
            flat[i] = old - h
            fm = s()
            flat[i] = old
            gflat[i] = (fp - fm) / (2 * h)
        return g

    gparams = {name: central(value) for name, value in layer.params.items()
               if value is not None}
    gxs = tuple(central(a) for a in xs)
    return (gxs if multi else gxs[0]), gparams
