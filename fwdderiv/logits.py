"""The one rule for dropping a classifier's final softmax: where logits come from.

Losses and attacks differentiate the cross-entropy of the *logits* Z (stable, and the
convention of cleverhans and ART), while zoo models end in :class:`~fwdderiv.Softmax`,
the paper's F. :func:`split_final_softmax` is the single place that decides whether a
network ends in a softmax and what its logits part is (for a Sequential, a Graph, or
anything listing its ``layers``).
"""
from .layers import LogSoftmax, Softmax

#: What :func:`split_final_softmax` reports for the final layer.
SOFTMAX, LOG_SOFTMAX = "softmax", "log_softmax"


def split_final_softmax(net):
    """``(logits_net, kind)``: the network without its final (Log)Softmax, and which it was.

    Parameters
    ----------
    net : network
        A :class:`~fwdderiv.Sequential`, a :class:`~fwdderiv.Graph` (its output node is
        inspected), or any network; others are taken as they are.

    Returns
    -------
    logits_net : network
        The network up to the input of a final Softmax or LogSoftmax over the class axis
        (``dim`` 1 or -1, as a classifier's ``(N, C)`` output has it) if there is a layer
        before it, else ``net`` itself, whose output is then taken to be logits.
    kind : {"softmax", "log_softmax", None}
        The final layer that was dropped, or None.

    Raises
    ------
    ValueError
        For a Graph whose final softmax reads a node other than the one evaluated just
        before it (the logits would not be the graph's last value).
    """
    from .core import Graph, Sequential

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
    if getattr(last, "dim", -1) not in (1, -1):
        return net, None            # over another axis than the classes: not a head
    if isinstance(net, Sequential):
        return net[:-1], kind
    if isinstance(net, Graph):
        nodes = net.nodes
        name, _, inputs = nodes[-1]
        if inputs != [nodes[-2][0]]:
            raise ValueError(
                f"Graph: the final {type(last).__name__} (node {name!r}) reads {inputs}, not "
                f"the node before it ({nodes[-2][0]!r}); order the nodes so that the logits "
                "node comes just before the softmax")
        return Graph(nodes[:-1]), kind
    return Sequential(layers[:-1]), kind
