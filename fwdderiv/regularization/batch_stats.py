"""The per-example Jacobian of a network with BatchNorm while it trains.

In its training form a BatchNorm2d layer normalises with the statistics of the whole
minibatch, so each output depends on every example of the batch and "the Jacobian of
one example" is not defined by that example alone. :func:`frozen_batch_statistics`
holds the current minibatch's statistics fixed: each BatchNorm becomes the per-channel
affine map the training step applies to this batch, and the Jacobian of an example is
that of the network the training step evaluates, minus the (order 1/batch) terms through
the statistics. At test time the running statistics take their place (the inference form).
"""
import contextlib

import numpy as np


def _batchnorms(net):
    return [layer for layer in net.layers
            if hasattr(type(layer), "training") and hasattr(layer, "running_var")]


@contextlib.contextmanager
def frozen_batch_statistics(net, x):
    """Inside the block, every BatchNorm2d of ``net`` uses the batch statistics of ``x``
    (its inference form with ``running_mean``/``running_var`` set to the batch's mean and
    biased variance, as the training form normalises); restored after.

    Parameters
    ----------
    net : Sequential or Graph
    x : ndarray of shape (N, *S)
        The minibatch.
    """
    layers = _batchnorms(net)
    saved = [(layer.running_mean, layer.running_var) for layer in layers]
    try:
        if layers:
            bns = {id(layer) for layer in layers}
            values = {"input": x}
            for name, layer, inputs in net.nodes:
                xs = [values[i] for i in inputs]
                if id(layer) in bns:
                    layer.running_mean = xs[0].mean(axis=(0, 2, 3))
                    layer.running_var = xs[0].var(axis=(0, 2, 3))
                values[name] = layer.forward(*xs)[0]
        yield
    finally:
        for layer, (mean, var) in zip(layers, saved):
            layer.running_mean, layer.running_var = mean, var
