"""The per-example Jacobian of a network with BatchNorm while it trains.

In its training form a BatchNorm2d layer normalises with the statistics of the whole
minibatch, so each output depends on every example of the batch and "the Jacobian of
one example" is not defined by that example alone. :func:`frozen_batch_statistics`
holds the current minibatch's statistics fixed: each BatchNorm becomes the per-channel
affine map the training step applies to this batch, and the Jacobian of an example is
that of the network the training step evaluates, minus the (order 1/batch) terms through
the statistics. At test time the running statistics take their place (the inference form).

The statistics are held fixed in the Jacobian, not in its parameter gradient: they are
functions of the parameters (a convolution's weights before a BatchNorm set the variance
the BatchNorm divides by), and :func:`add_statistics_path` adds that path. Without it the
gradient of the penalty would see the factor gamma / sigma_B with sigma_B constant and keep
shrinking the weights before every BatchNorm, which changes nothing the network computes
(sigma_B shrinks with them) until the variance reaches eps and training collapses.
"""
import contextlib

import numpy as np

from fwdderiv.core.layer import train_mode
from fwdderiv.core.second_order import Linearization


def _batchnorms(net):
    return [layer for layer in net.layers
            if hasattr(type(layer), "training") and hasattr(layer, "running_var")]


def _set_statistics(layer, x):
    """The BatchNorm ``layer`` normalises with the mean and biased variance of ``x``."""
    axes = (0,) + tuple(range(2, x.ndim))
    layer.running_mean = x.mean(axis=axes)
    layer.running_var = x.var(axis=axes)


@contextlib.contextmanager
def frozen_batch_statistics(net, x, activations=None):
    """Inside the block, every BatchNorm of ``net`` uses the batch statistics of ``x``
    (its inference form with ``running_mean``/``running_var`` set to the batch's mean and
    biased variance, as the training form normalises); restored after.

    Parameters
    ----------
    net : Sequential or Graph
    x : ndarray of shape (N, *S)
        The minibatch.
    activations : list of ndarray, optional
        ``net``'s values at ``x`` in its training form, input first (as
        :func:`training_forward` returns them): the statistics are read from them
        instead of running the network once more.
    """
    layers = _batchnorms(net)
    saved = [(layer.running_mean, layer.running_var) for layer in layers]
    try:
        bns = {id(layer) for layer in layers}

        def freeze(k, node, xs):               # before the BatchNorm runs
            if id(node.layer) in bns:
                _set_statistics(node.layer, xs[0])

        if layers and activations is None:
            net.forward(x, visit=freeze)
        elif layers:                           # the values are known: no pass to run
            values = dict(zip(["input"] + [name for name, _, _ in net.nodes], activations))
            for _, layer, inputs in net.nodes:
                if id(layer) in bns:
                    _set_statistics(layer, values[inputs[0]])
        yield
    finally:
        for layer, (mean, var) in zip(layers, saved):
            layer.running_mean, layer.running_var = mean, var


def add_statistics_path(net, x, grads):
    r"""Add to ``grads`` the derivative of a penalty through the batch statistics.

    ``grads`` (one dict per node, as ``net.backward`` gives) holds the gradient of a
    function :math:`F(\theta, S)` of the parameters with the statistics
    :math:`S = (\mu_l, \sigma^2_l)` of each BatchNorm held fixed, as computed inside
    :func:`frozen_batch_statistics` (call this inside the same block). The statistics are
    functions of the parameters through the batch ``x``; this adds
    :math:`\sum_l \partial F/\partial S_l \cdot dS_l/d\theta`, so that ``grads``
    becomes the gradient of :math:`\theta \mapsto F(\theta, S(\theta))`.

    A BatchNorm's output depends on :math:`(\gamma, \sigma^2)` only through
    :math:`s = \gamma/\sqrt{\sigma^2+\epsilon}` and on :math:`(\beta, \mu)` only
    through :math:`\beta - s\mu`, so :math:`\partial F/\partial\sigma^2 =
    -\frac{\gamma}{2(\sigma^2+\epsilon)}\,\partial F/\partial\gamma` and
    :math:`\partial F/\partial\mu = -s\,\partial F/\partial\beta` (see
    :func:`statistics_cotangents`): no new layer method. They enter each BatchNorm's
    input and are pulled back by one reverse pass through the network in its training
    form (:func:`training_backward`), whose BatchNorm VJPs carry the earlier statistics'
    own dependence on the parameters. The running statistics are left as they were.
    """
    inject = statistics_cotangents(net, grads)
    if not inject:
        return grads
    saved = [(layer, layer.running_mean.copy(), layer.running_var.copy())
             for layer in _batchnorms(net)]
    try:
        caches = training_forward(net, x)[1]
    finally:
        for layer, mean, var in saved:
            layer.running_mean, layer.running_var = mean, var
    extra = training_backward(net, caches, None, inject)
    for k, g in enumerate(extra):
        for key, value in g.items():
            grads[k][key] = grads[k].get(key, 0) + value
    return grads


def statistics_cotangents(net, grads, scale=1.0):
    r"""``{node index: (dF/dmu, dF/dsigma2)}`` of every BatchNorm of ``net``, each of
    shape (C,), from the frozen-statistics gradients ``grads`` of its weight and bias
    (times ``scale``); call inside :func:`frozen_batch_statistics`, whose batch variance
    they use."""
    layers = {id(layer) for layer in _batchnorms(net)}
    inject = {}
    for k, layer in enumerate(net.layers):
        if id(layer) in layers and grads[k]:
            gamma = np.asarray(layer.weight, np.float64)
            var = np.asarray(layer.running_var, np.float64) + layer.eps
            inject[k] = (-scale * gamma / np.sqrt(var) * grads[k]["bias"],
                         -scale * gamma / (2 * var) * grads[k]["weight"])
    return inject


def inference_caches(net, caches):
    """``caches`` of :func:`training_forward` with each BatchNorm's training cache
    ``(xhat, inv_std)`` replaced by its inference-form cache ``xhat``: inside
    :func:`frozen_batch_statistics` (the batch's statistics as running statistics) the
    inference form computes the same ``xhat``, so its pass need not be run again."""
    layers = {id(layer) for layer in _batchnorms(net)}
    return [cache[0] if id(layer) in layers else cache
            for layer, cache in zip(net.layers, caches)]


def training_forward(net, x):
    """``(y, caches, activations)``: ``net`` at ``x`` in its training form, one cache per
    node and every node's value, input first (the BatchNorms update their running
    statistics, as in a training step)."""
    with train_mode(net):
        lin = Linearization(net, x)
    return lin.output, lin.caches, lin.values


def training_backward(net, caches, gy, inject):
    r"""Parameter gradients (one dict per node) of one reverse pass through the training
    form of ``net`` (``caches`` from :func:`training_forward`): the output cotangent ``gy``
    (N, *S_out), or None, plus the statistics cotangents ``inject`` of
    :func:`statistics_cotangents` entering each BatchNorm's input as
    :math:`(\partial F/\partial\mu + 2\,\partial F/\partial\sigma^2\,(x-\mu))/M`:
    ``net.backward`` with these as extra cotangents of the BatchNorms' inputs."""
    nodes, extra = net.nodes, {}
    for k, stats in inject.items():
        _, layer, (src,) = nodes[k]
        if src != "input":                     # the input's cotangent is not needed
            gin = _statistics_input_cotangent(layer, caches[k], stats)
            extra[src] = gin if src not in extra else extra[src] + gin
    return net.backward(caches, gy, input_grad=False, extra=extra)[1]


def _statistics_input_cotangent(layer, cache, stats):
    """The cotangent (N, C, ...) of a BatchNorm's input from ``stats`` = (dF/dmu,
    dF/dsigma2) of its batch statistics, from its training cache ``(xhat, inv_std)``."""
    xhat, inv = cache
    c = lambda a: layer._channels(a, xhat.ndim)  # noqa: E731
    M = xhat.size // xhat.shape[1]
    d_mean, d_var = (a.astype(xhat.dtype) / M for a in stats)
    return c(d_mean) + (2 * c(d_var) / c(inv)) * xhat
