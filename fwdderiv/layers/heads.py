"""One rule for "the network without its final softmax" (the logits Z of a classifier)."""


def logits_net(net):
    """The network that outputs logits: ``net`` without a final Softmax or LogSoftmax.

    A :class:`fwdderiv.Sequential` loses its last layer (``net[:-1]``); a
    :class:`fwdderiv.Graph` loses its output node (the node it reads becomes the output).
    The layers are shared, not copied, so parameter updates reach both. A network that
    does not end in a softmax is returned as it is, and so is a one-layer network.

    Parameters
    ----------
    net : Sequential or Graph

    Returns
    -------
    Sequential or Graph
        Same type as ``net``.

    Examples
    --------
    >>> import fwdderiv as fd
    >>> from fwdderiv.layers.heads import logits_net
    >>> logits_net(fd.Sequential([fd.Linear(3, 2), fd.Softmax()]))
    Sequential(
      (0) Linear(in_features=3, out_features=2, bias=True)
    )
    """
    from ..logits import split_final_softmax     # the project's one rule for it

    return split_final_softmax(net)[0]
