r"""The gradient of a classification loss with respect to the input.

The question "how do I get the gradient of my cost with respect to the image?" has an
exact answer by reverse mode: one forward pass and one vector-Jacobian product per batch,
whatever the number of pixels. :func:`fwdderiv.numeric.loss_gradient_fd` computes the
same thing by the difference quotient, one (or two) losses per pixel, for comparison.
"""
import functools

import numpy as np

from .classifier import check_images, check_labels, n_outputs
from .logits import split_final_softmax
from .threads import holding_blas
from .training.loss import log_softmax

#: Losses :func:`loss_gradient` knows, and the reductions over the batch.
LOSSES = ("cross_entropy",)
REDUCTIONS = ("sum", "mean")


def _check_loss(loss, reduction, where):
    if loss not in LOSSES:
        raise ValueError(f"{where} expected loss in {LOSSES}, got {loss!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{where} expected reduction in {REDUCTIONS}, got {reduction!r}; "
                         "'sum' gives every example the gradient of its own loss")


def _prepare(net, x, y, loss, reduction, where):
    _check_loss(loss, reduction, where)
    x = check_images(x, where)
    K = n_outputs(net, x.shape[1:], where)
    y = check_labels(y, x.shape[0], K, where)
    return x, y


@holding_blas
def example_losses(net, x, y, loss="cross_entropy"):
    r"""Per-example loss of a classifier, from its logits.

    Parameters
    ----------
    net : network
        A classifier; if it ends in Softmax or LogSoftmax the loss is computed from the
        logits before it, otherwise its output is taken as logits.
    x : ndarray of shape (N, *S)
    y : ndarray of shape (N,), int

    Returns
    -------
    ndarray of shape (N,)
        :math:`\ell_n = -\log \mathrm{softmax}(z_n)_{y_n}`, in the dtype of ``x``.
    """
    x, y = _prepare(net, x, y, loss, "sum", "example_losses")
    logits_net, _ = split_final_softmax(net)
    z = logits_net.forward(x)
    return -log_softmax(z)[np.arange(len(y)), y]


@holding_blas
def loss_gradient(net, x, y, loss="cross_entropy", reduction="sum", return_loss=False):
    r"""Gradient of the cross-entropy loss with respect to the input, by reverse mode.

    .. math::
        L = \sum_n \ell_n \ (\text{or } \tfrac{1}{N}\sum_n \ell_n), \quad
        \ell_n = -\log \mathrm{softmax}(z_n)_{y_n}, \quad
        \frac{\partial \ell_n}{\partial z_n} = \mathrm{softmax}(z_n) - e_{y_n},

    then :math:`\partial L/\partial x_n = (\partial \ell_n/\partial z_n)\,
    \partial z_n/\partial x_n` by one ``vjp`` of the logits network. When ``net`` ends
    in Softmax or LogSoftmax the loss is computed from the logits before it (never as
    ``log`` of a probability that may underflow to 0).

    Parameters
    ----------
    net : network
        A classifier with output ``(N, K)``.
    x : ndarray of shape (N, *S), float32 or float64
    y : ndarray of shape (N,), int, or int
        Class labels in ``[0, K)``.
    loss : {"cross_entropy"}
    reduction : {"sum", "mean"}
        ``"sum"``: each example's gradient is that of its own loss; ``"mean"`` divides
        by N (PyTorch's ``CrossEntropyLoss()`` default).
    return_loss : bool
        Also return the reduced loss (a float).

    Returns
    -------
    gx : ndarray of shape (N, *S)
        In the dtype of ``x``.

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> net = fd.Sequential([fd.Linear(3, 2), fd.Softmax()])
    >>> fd.loss_gradient(net, np.ones((4, 3)), np.array([0, 1, 1, 0])).shape
    (4, 3)
    """
    x, y = _prepare(net, x, y, loss, reduction, "loss_gradient")
    gx, total = loss_pass(net, x, y, reduction)
    return (gx, total) if return_loss else gx


def loss_pass(net, x, y, reduction="sum"):
    """``(gx, total)`` from one forward pass of the logits and one pull-back: the work of
    :func:`loss_gradient` without its checks, for callers that have checked ``x`` and
    ``y`` already (the gradient attacks of :mod:`fwdderiv.attacks`).

    Parameters
    ----------
    net : network
        A classifier with output ``(N, K)``.
    x : ndarray of shape (N, *S), float32 or float64
    y : ndarray of shape (N,), int, or None
        Class labels in ``[0, K)``. None takes the network's predictions at ``x`` from
        that same pass (the argmax of its output, final softmax included), so that an
        untargeted attack needs no separate pass to label its images.
    reduction : {"sum", "mean"}

    Returns
    -------
    gx : ndarray of shape (N, *S)
        The cross-entropy's gradient with respect to ``x``, in the dtype of ``x``.
    total : float
        The reduced loss.
    """
    logits_net, kind = split_final_softmax(net)
    if hasattr(logits_net, "forward_cached") and hasattr(logits_net, "pullback"):
        z, caches = logits_net.forward_cached(x)
        pull = functools.partial(logits_net.pullback, caches)
    else:                                   # any network with the plain protocol
        z = logits_net.forward(x)
        pull = lambda g: logits_net.vjp(x, g)[1]      # noqa: E731
    if y is None:
        y = np.argmax(net.layers[-1].forward(z)[0] if kind else z, axis=1)
    log_p = log_softmax(z)
    rows = np.arange(len(y))
    g_z = np.exp(log_p)
    g_z[rows, y] -= 1
    total = -float(log_p[rows, y].astype(np.float64).sum())
    if reduction == "mean":
        g_z /= len(y)
        total /= len(y)
    return pull(g_z[:, None])[:, 0], total
