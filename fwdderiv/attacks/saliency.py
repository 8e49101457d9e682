"""Adversarial saliency maps built from the forward derivative.

Papernot et al., "The Limitations of Deep Learning in Adversarial Settings" (EuroS&P
2016), Section III-B: for a target class ``t`` the saliency of input feature ``i``
combines how much ``x_i`` moves the target output (``alpha``) with how much it moves
all the other outputs together (``beta``):

.. math::

    \\alpha_i = \\frac{\\partial F_t}{\\partial x_i}, \\qquad
    \\beta_i = \\sum_{j \\neq t} \\frac{\\partial F_j}{\\partial x_i}

Eq. (8) (features to increase) keeps ``alpha_i * |beta_i|`` where ``alpha_i >= 0`` and
``beta_i <= 0``; eq. (9) (features to decrease) keeps ``|alpha_i| * beta_i`` where
``alpha_i <= 0`` and ``beta_i >= 0``; every other feature scores 0.

Both maps come from the full Jacobian ``J[n, j, i] = dF_j/dx_i`` that the engine
computes in forward mode (``net.jacobian(x)``), one column per input feature.

Note: when ``F`` ends in a softmax, ``sum_j F_j = 1`` and therefore
``beta = -alpha`` up to rounding; differentiating the logits ``Z`` (``logits=True``)
keeps the two terms independent.
"""
import numpy as np

from .._validation import as_float_array, check_class_indices, check_classifier, check_finite

__all__ = ["forward_derivative", "target_terms", "target_terms_vjp", "saliency_from_jacobian",
           "saliency_map"]


def _as_targets(targets, n, n_classes, who):
    return check_class_indices(targets, n, n_classes, who)


def _check_output_layer(net, logits, who):
    last = type(net[-1]).__name__
    if logits and last not in ("Softmax", "LogSoftmax"):
        raise ValueError(f"{who}(logits=True) differentiates net[:-1], which needs a network "
                         f"ending in Softmax; its last layer is {last}. Pass logits=False "
                         "if the network already outputs logits.")


def forward_derivative(net, x, logits=False, mode="forward", max_memory=None):
    """Output and flattened forward derivative of a classifier.

    Parameters
    ----------
    net : Sequential
        Classifier; with ``logits=False`` its output is differentiated as it is (the
        paper's ``F``, probabilities for the zoo models), with ``logits=True`` the
        final Softmax is dropped and the logits ``Z = net[:-1]`` are differentiated.
    x : ndarray of shape (N, *S)
        Input batch.
    logits : bool
        Differentiate ``Z`` instead of ``F``.
    mode : {"forward", "reverse"}
        Passed to ``net.jacobian``; forward mode is the paper's forward derivative.
    max_memory : int or None
        Byte budget passed to ``net.jacobian``.

    Returns
    -------
    y : ndarray of shape (N, K)
        Output of the differentiated function (``F`` or ``Z``); its argmax is the
        network's prediction in both cases.
    J : ndarray of shape (N, K, M)
        ``J[n, j, i] = dy_j / dx_i`` with ``M = prod(S)``.
    """
    _check_output_layer(net, logits, "forward_derivative")
    f = net[:-1] if logits else net
    y, J = f.jacobian(x, mode=mode, max_memory=max_memory, return_output=True)
    n = x.shape[0]
    y = y.reshape(n, -1)
    return y, J.reshape(n, y.shape[1], -1)


def target_terms(J, targets):
    """The two sums of the saliency map: ``alpha`` (target) and ``beta`` (others).

    Parameters
    ----------
    J : ndarray of shape (N, K, M)
        Forward derivative.
    targets : ndarray of shape (N,) or int
        Target class per sample.

    Returns
    -------
    alpha : ndarray of shape (N, M)
        ``dF_t/dx_i``.
    beta : ndarray of shape (N, M)
        ``sum_{j != t} dF_j/dx_i``, summed over the other classes explicitly (not as the
        total minus the target, which would cancel catastrophically for softmax outputs).
    """
    J = np.asarray(J)
    if J.ndim != 3:
        raise ValueError(f"target_terms expected a Jacobian of shape (N, K, M), got "
                         f"{J.shape}; reshape with J.reshape(N, K, -1).")
    n, k, _ = J.shape
    t = _as_targets(targets, n, k, "target_terms")
    rows = np.arange(n)
    alpha = J[rows, t]
    others = np.ones((n, k), dtype=bool)
    others[rows, t] = False
    beta = np.where(others[:, :, None], J, 0).sum(axis=1, dtype=J.dtype)
    return alpha, beta


def target_terms_vjp(net, x, targets, logits=False):
    """``alpha`` and ``beta`` as two vector-Jacobian products, without the full Jacobian.

    ``alpha = e_t^T J`` and ``beta = (1 - e_t)^T J``: two cotangents pulled back through
    the network (reverse mode) instead of the ``M`` tangent directions of the forward
    derivative or the ``K`` cotangents of a reverse Jacobian. The numbers agree with
    :func:`target_terms` of :func:`forward_derivative` up to rounding (``beta`` is summed
    inside the backward pass rather than row by row).

    Parameters
    ----------
    net : Sequential
    x : ndarray of shape (N, *S)
    targets : ndarray of shape (N,) or int
    logits : bool
        Differentiate ``Z = net[:-1]`` instead of ``F``.

    Returns
    -------
    y : ndarray of shape (N, K)
        Output of the differentiated function.
    alpha, beta : ndarray of shape (N, M)
    """
    _check_output_layer(net, logits, "target_terms_vjp")
    f = net[:-1] if logits else net
    n = x.shape[0]
    k = int(np.prod(f.output_shape(x.shape[1:])))
    t = _as_targets(targets, n, k, "target_terms_vjp")
    gy = np.zeros((n, 2, k), dtype=x.dtype)
    gy[np.arange(n), 0, t] = 1
    gy[:, 1] = 1
    gy[np.arange(n), 1, t] = 0
    y, gx = f.vjp(x, gy.reshape((n, 2) + tuple(f.output_shape(x.shape[1:]))))
    gx = gx.reshape(n, 2, -1)
    return y.reshape(n, -1), gx[:, 0], gx[:, 1]


def saliency_from_jacobian(J, targets, increasing=True):
    """Single-feature adversarial saliency map, eq. (8) or eq. (9).

    Parameters
    ----------
    J : ndarray of shape (N, K, M)
        Forward derivative ``dF_j/dx_i``.
    targets : ndarray of shape (N,) or int
        Target class per sample.
    increasing : bool
        True for eq. (8) (features whose increase favours ``t``), False for eq. (9)
        (features whose decrease favours ``t``).

    Returns
    -------
    S : ndarray of shape (N, M)
        Non-negative saliency; zero where the sign conditions fail.

    Examples
    --------
    >>> J = np.array([[[1.0, -1.0], [-2.0, 3.0]]])     # K=2 classes, M=2 features
    >>> saliency_from_jacobian(J, [0])
    array([[2., 0.]])
    """
    alpha, beta = target_terms(J, targets)
    if increasing:
        keep = (alpha >= 0) & (beta <= 0)
        s = alpha * np.abs(beta)
    else:
        keep = (alpha <= 0) & (beta >= 0)
        s = np.abs(alpha) * beta
    return np.where(keep, s, 0).astype(J.dtype, copy=False)


def saliency_map(net, x, targets, increasing=True, logits=False, mode="forward",
                 max_memory=None):
    """Adversarial saliency map ``S(x, t)`` of a network, shaped like the input.

    Parameters
    ----------
    net : Sequential
        Classifier.
    x : ndarray of shape (N, *S)
        Inputs.
    targets : ndarray of shape (N,) or int
        Target class per sample.
    increasing : bool
        Eq. (8) if True, eq. (9) if False.
    logits : bool
        Differentiate the logits ``Z`` instead of the output ``F`` (the paper's).
    mode, max_memory
        Passed to ``net.jacobian``.

    Returns
    -------
    S : ndarray of shape (N, *S)

    Examples
    --------
    >>> import fwdderiv as fd
    >>> net = fd.models.digits_net()
    >>> x = np.zeros((1, 1, 8, 8), dtype=np.float32)
    >>> saliency_map(net, x, 3).shape
    (1, 1, 8, 8)
    """
    x = check_finite(as_float_array(x, "saliency_map"), "saliency_map")
    check_classifier(net, x.shape[1:], "saliency_map")
    _, J = forward_derivative(net, x, logits=logits, mode=mode, max_memory=max_memory)
    return saliency_from_jacobian(J, targets, increasing).reshape(x.shape)
