"""The one rule for dropping a classifier's final softmax: where logits come from.

Losses and attacks differentiate the cross-entropy of the *logits* Z (stable, and the
convention of cleverhans and ART), while zoo models end in :class:`~fwdderiv.Softmax`,
the paper's F. :func:`_split_final_softmax` is the single place that decides whether a
network ends in a softmax and what its logits part is; it knows networks only through
the attribute ``layers`` (and slicing, when the network supports it).
"""
from .layers import LogSoftmax, Softmax

#: What :func:`_split_final_softmax` reports for the final layer.
SOFTMAX, LOG_SOFTMAX = "softmax", "log_softmax"


def _split_final_softmax(net):
    """``(logits_net, kind)``: the network without its final (Log)Softmax, and which it was.

    Parameters
    ----------
    net : network
        Anything with ``forward``/``vjp``; a network whose layers are listed in
        ``net.layers`` (a :class:`~fwdderiv.Sequential`) is inspected.

    Returns
    -------
    logits_net : network
        ``net[:-1]`` if the last layer is Softmax or LogSoftmax (and there is a layer
        before it), else ``net`` itself, whose output is then taken to be logits.
    kind : {"softmax", "log_softmax", None}
        The final layer that was dropped, or None.
    """
    layers = getattr(net, "layers", None)
    if not isinstance(layers, (list, tuple)) or len(layers) < 2:
        return net, None
    last = layers[-1]
    if isinstance(last, Softmax):
        kind = SOFTMAX
    elif isinstance(last, LogSoftmax):
        kind = LOG_SOFTMAX
    else:
        return net, None
    try:
        body = net[:-1]
    except TypeError:
        from .core import Sequential
        body = Sequential(layers[:-1])
    return body, kind
