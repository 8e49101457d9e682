r"""Estimates of :math:`\|\partial Z/\partial x\|_F^2` per example, and the penalty
:math:`\tfrac12\,\mathrm{mean}_n \|J_n\|_F^2` with its exact parameter gradients.

Three ways to the squared Frobenius norm of an example's Jacobian :math:`J` (C outputs,
D inputs):

- ``"exact"``: the whole Jacobian, by reverse mode (C cotangents) when :math:`C \le D`,
  by forward mode (D tangents) otherwise; :math:`\sum_{ij} J_{ij}^2`.
- ``"output"`` (Hoffman et al. 2019): :math:`C\,\|v^\top J\|^2` with :math:`v` uniform on
  the unit sphere of :math:`\mathbb{R}^C`; unbiased because
  :math:`\mathbb{E}[v v^\top] = I/C`. One VJP per projection.
- ``"input"``: :math:`\|J u\|^2` with :math:`u \sim N(0, I_D)`; unbiased because
  :math:`\mathbb{E}[u u^\top] = I`. One JVP per projection.

With ``n_proj`` projections the estimate is their mean (variance divided by ``n_proj``).

Every gradient reduces to :func:`fwdderiv.core.second_order.jvp_param_grads`, the
parameter gradient of :math:`\sum \langle g, J\,w\rangle` for fixed ``g`` and ``w``:

- output: :math:`\nabla_\theta \tfrac{C}{2NP}\sum\|J^\top v\|^2 = \nabla_\theta \sum
  \langle v, J\,w\rangle` with :math:`w = \tfrac{C}{NP} J^\top v` held fixed;
- input: :math:`\nabla_\theta \tfrac{1}{2NP}\sum\|J u\|^2 = \nabla_\theta \sum
  \langle g, J u\rangle` with :math:`g = \tfrac{1}{NP} J u` held fixed;
- exact: the output form with :math:`v` the C unit vectors (or the input form with the
  D unit vectors), without the factor C and the mean over projections.
"""
import numbers

import numpy as np

from fwdderiv.validation import as_float_array, shape_str
from fwdderiv.layers.heads import logits_net
from fwdderiv.threads import blas_limited
from fwdderiv.core.layer import cast_scope
from fwdderiv.core.second_order import Linearization

#: The estimators of :func:`jacobian_norm`.
METHODS = ("exact", "output", "input")
_ON = ("logits", "output")


def _setup(where, net, x, method, n_proj, seed, on):
    if method not in METHODS:
        raise ValueError(f"{where}: method must be one of {', '.join(map(repr, METHODS))}, "
                         f"got {method!r}")
    if isinstance(n_proj, bool) or not isinstance(n_proj, numbers.Integral) or n_proj < 1:
        raise ValueError(f"{where}: n_proj must be an integer >= 1 (random projections per "
                         f"example), got {n_proj!r}")
    if on not in _ON:
        raise ValueError(f"{where}: on must be 'logits' (the network without a final "
                         f"Softmax/LogSoftmax) or 'output' (the network as it is), got {on!r}")
    for m in ("nodes", "jvp", "vjp", "jacobian", "output_shape"):
        if not hasattr(net, m):
            raise TypeError(f"{where}: net must be a fwdderiv.Sequential or fwdderiv.Graph, "
                            f"got {type(net).__name__}")
    x = as_float_array(x, where)
    if x.ndim < 2:
        raise ValueError(f"{where}: expected a batch x of shape (N, *S), got "
                         f"{shape_str(x.shape)}; add a batch axis with x[None]")
    target = logits_net(net) if on == "logits" else net
    out = tuple(target.output_shape(x.shape[1:]))
    if len(out) != 1:
        raise ValueError(f"{where}: expected a classifier whose output per example is a "
                         f"vector of C class scores, got output shape "
                         f"{shape_str(('N',) + out)}; end the network with fd.Flatten() and "
                         f"fd.Linear(..., n_classes)")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return target, x, out[0], rng


def _unit_vectors(rng, n, p, c, dtype):
    """``(n, p, c)`` vectors uniform on the unit sphere of R^c (normalised Gaussians)."""
    v = rng.standard_normal((n, p, c))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return v.astype(dtype, copy=False)


def _flat_sq(a, lead):
    return np.square(a).reshape(a.shape[:lead] + (-1,)).sum(axis=-1)


def _exact_mode(C, D):
    return "reverse" if C <= D else "forward"


def _estimate(target, x, method, n_proj, rng, C, lin=None):
    """``(per-example estimates (N,), dx, gdy)`` with ``dx``, ``gdy`` the fixed tangent and
    cotangent whose :func:`~fwdderiv.core.second_order.jvp_param_grads` is the gradient of
    ``sum(estimates) / 2``. With ``lin`` (a :class:`Linearization` of ``target`` at ``x``)
    the VJPs reuse its primal pass."""
    N, s_in = x.shape[0], x.shape[1:]
    D = int(np.prod(s_in, dtype=np.int64))
    if method == "output":
        v = _unit_vectors(rng, N, n_proj, C, x.dtype)
        u = target.vjp(x, v)[1] if lin is None else lin.vjp(v)   # (N, P, *S)
        return C * _flat_sq(u, 2).mean(axis=1), u * x.dtype.type(C / n_proj), v
    if method == "input":
        u = rng.standard_normal((N, n_proj) + s_in).astype(x.dtype, copy=False)
        _, dz = target.jvp(x, u)                                 # (N, P, C)
        return _flat_sq(dz, 2).mean(axis=1), u, dz / x.dtype.type(n_proj)
    J = target.jacobian(x, mode=_exact_mode(C, D)).reshape(N, C, D)
    if C <= D:                                                    # rows: C unit cotangents
        eye = np.broadcast_to(np.eye(C, dtype=x.dtype), (N, C, C))
        return _flat_sq(J, 1), J.reshape((N, C) + s_in), eye
    eye = np.broadcast_to(np.eye(D, dtype=x.dtype).reshape((1, D) + s_in), (N, D) + s_in)
    return _flat_sq(J, 1), eye, np.ascontiguousarray(J.transpose(0, 2, 1))


def jacobian_norm(net, x, method="exact", n_proj=1, seed=None, on="logits"):
    r"""Per-example estimates of the squared Frobenius norm :math:`\|\partial Z/\partial x\|_F^2`.

    Parameters
    ----------
    net : Sequential or Graph
        A classifier: its output per example is a vector of C scores.
    x : ndarray of shape (N, *S)
    method : {"exact", "output", "input"}
        ``"exact"``: the full Jacobian (reverse mode when C <= D inputs, forward mode
        otherwise). ``"output"``: Hoffman et al. (2019), :math:`C\|v^\top J\|^2` with
        :math:`v` uniform on the unit C-sphere, one VJP per projection. ``"input"``:
        :math:`\|J u\|^2` with :math:`u \sim N(0, I)`, one JVP per projection.
    n_proj : int
        Random projections per example (their mean is returned); ignored by ``"exact"``.
    seed : int, numpy.random.Generator or None
        The projections' randomness.
    on : {"logits", "output"}
        ``"logits"`` differentiates the network without a final Softmax/LogSoftmax
        (:func:`fwdderiv.layers.heads.logits_net`); ``"output"`` the network as it is.

    Returns
    -------
    ndarray of shape (N,)
        In the dtype of ``x``.

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> from fwdderiv.regularization import jacobian_norm
    >>> net = fd.Sequential([fd.Linear(4, 3), fd.Softmax()])
    >>> x = np.ones((2, 4))
    >>> exact = jacobian_norm(net, x)            # = sum(W**2) for a linear map
    >>> bool(np.allclose(exact, np.sum(net[0].weight.astype(float) ** 2)))
    True
    >>> jacobian_norm(net, x, method="output", n_proj=4, seed=0).shape
    (2,)
    """
    target, x, C, rng = _setup("jacobian_norm", net, x, method, n_proj, seed, on)
    if method == "exact":
        N, D = x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64))
        J = target.jacobian(x, mode=_exact_mode(C, D))
        return _flat_sq(J, 1)
    return _estimate(target, x, method, n_proj, rng, C)[0]


def jacobian_penalty(net, x, method="output", n_proj=1, seed=None, on="logits"):
    r"""The Jacobian penalty :math:`\tfrac12\,\mathrm{mean}_n \widehat{\|J_n\|_F^2}` and its
    exact gradient with respect to every parameter.

    The random projections are drawn as in :func:`jacobian_norm` with the same ``seed``
    and then held fixed: the gradient is that of the estimate actually computed (an
    unbiased estimate of the gradient of the exact penalty).

    Parameters
    ----------
    net, x, method, n_proj, seed, on
        As in :func:`jacobian_norm`.

    Returns
    -------
    value : float
    grads : list of dict
        One dict per layer (node) of ``net``, keyed like ``layer.params``: the layout of
        ``net.backward``. A final softmax dropped by ``on="logits"`` gets an empty dict.

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> from fwdderiv.regularization import jacobian_penalty
    >>> net = fd.Sequential([fd.Linear(4, 3), fd.Tanh(), fd.Linear(3, 2), fd.Softmax()])
    >>> value, grads = jacobian_penalty(net, np.ones((5, 4)), method="exact")
    >>> [sorted(g) for g in grads]
    [['bias', 'weight'], [], ['bias', 'weight'], []]
    """
    target, x, C, rng = _setup("jacobian_penalty", net, x, method, n_proj, seed, on)
    if x.shape[0] == 0:
        raise ValueError("jacobian_penalty: expected at least one example, got an empty x")
    with blas_limited(target.uses_kernels), cast_scope():
        value, grads = penalty_at(target, Linearization(target, x), method, n_proj, rng, C)
    grads += [{} for _ in range(len(net.layers) - len(grads))]
    return value, grads


def penalty_at(target, lin, method, n_proj, rng, C):
    """:func:`jacobian_penalty` of ``target`` (its output the logits, C of them) from its
    :class:`~fwdderiv.core.second_order.Linearization` ``lin`` at the batch: the primal
    pass is made (or reused, as the training step does) by the caller."""
    x = lin.input
    with blas_limited(target.uses_kernels), cast_scope():
        est, dx, gdy = _estimate(target, x, method, n_proj, rng, C, lin)
        grads = lin.param_grads(dx, gdy / x.dtype.type(x.shape[0]))
    return 0.5 * float(est.mean()), grads
