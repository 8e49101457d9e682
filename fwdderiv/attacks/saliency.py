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

Numerics. When the differentiated output is a softmax, ``sum_j F_j = 1`` and therefore
``beta = -alpha`` exactly. Summing the other rows explicitly cancels catastrophically once
``F_t`` is tiny (the rows are of order ``F_j`` while their sum is of order ``F_t``), so
for a softmax output ``beta`` is set to ``-alpha`` (``softmax=True``; the attack functions
detect it from the network). For any other output (``logits=True``, or a network that
does not end in Softmax) the two terms are independent and ``beta`` is a compensated
(Neumaier) sum over the other rows, accurate to a few units in the last place even when
the rows cancel.
"""
import numpy as np

from ..logits import SOFTMAX, split_final_softmax
from ..validation import as_float_array, check_class_indices, check_classifier, check_finite

__all__ = ["forward_derivative", "target_terms", "target_terms_vjp", "saliency_from_jacobian",
           "saliency_map", "softmax_output"]


def _as_targets(targets, n, n_classes, who):
    return check_class_indices(targets, n, n_classes, who)


def softmax_output(net, logits=False):
    """True when the function the attack differentiates is a softmax: ``logits=False``
    and the network's last layer is a ``Softmax``. Then ``beta = -alpha`` exactly."""
    return not logits and split_final_softmax(net)[1] == SOFTMAX


def _neumaier_sum(rows):
    """Compensated sum over the first axis of ``rows`` (shape (K, ...)), Neumaier's
    variant of Kahan summation: the rounding error of every addition is carried in a
    second accumulator, so cancelling rows keep their small remainder."""
    s = np.array(rows[0], copy=True)
    c = np.zeros_like(s)
    for r in rows[1:]:
        t = s + r
        big = np.abs(s) >= np.abs(r)
        c += np.where(big, (s - t) + r, (r - t) + s)
        s = t
    return s + c


def _check_output_layer(net, logits, who):
    last = type(net[-1]).__name__
    if logits and split_final_softmax(net)[1] is None:
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


def target_terms(J, targets, softmax=False):
    """The two sums of the saliency map: ``alpha`` (target) and ``beta`` (others).

    Parameters
    ----------
    J : ndarray of shape (N, K, M)
        Forward derivative.
    targets : ndarray of shape (N,) or int
        Target class per sample.
    softmax : bool
        ``J`` is the Jacobian of a softmax output (its rows sum to zero), so
        ``beta = -alpha`` exactly and no sum is formed. Pass
        ``softmax_output(net, logits)``.

    Returns
    -------
    alpha : ndarray of shape (N, M)
        ``dF_t/dx_i``.
    beta : ndarray of shape (N, M)
        ``-alpha`` when ``softmax``; otherwise ``sum_{j != t} dF_j/dx_i`` as a
        compensated (Neumaier) sum over the other classes.
    """
    J = np.asarray(J)
    if J.ndim != 3:
        raise ValueError(f"target_terms expected a Jacobian of shape (N, K, M), got "
                         f"{J.shape}; reshape with J.reshape(N, K, -1).")
    n, k, _ = J.shape
    t = _as_targets(targets, n, k, "target_terms")
    rows = np.arange(n)
    alpha = J[rows, t]
    if softmax:
        return alpha, -alpha
    others = np.ones((n, k), dtype=bool)
    others[rows, t] = False
    beta = _neumaier_sum(np.moveaxis(np.where(others[:, :, None], J, 0), 1, 0))
    return alpha, beta.astype(J.dtype, copy=False)


def target_terms_vjp(net, x, targets, logits=False):
    """``alpha`` and ``beta`` as two vector-Jacobian products, without the full Jacobian.

    ``alpha = e_t^T J`` and ``beta = (1 - e_t)^T J``: cotangents pulled back through
    the network (reverse mode) instead of the ``M`` tangent directions of the forward
    derivative or the ``K`` cotangents of a reverse Jacobian. For a softmax output only
    ``alpha`` is pulled back and ``beta = -alpha`` exactly (pulling back ``1 - e_t``
    through the softmax forms ``1 - (1 - F_t)``, which loses all precision once ``F_t``
    is tiny); otherwise two cotangents are pulled back and ``beta`` is summed inside the
    backward pass. The numbers agree with :func:`target_terms` of
    :func:`forward_derivative` up to rounding.

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
    sm = softmax_output(net, logits)
    rows = 1 if sm else 2
    gy = np.zeros((n, rows, k), dtype=x.dtype)
    gy[np.arange(n), 0, t] = 1
    if not sm:
        gy[:, 1] = 1
        gy[np.arange(n), 1, t] = 0
    y, gx = f.vjp(x, gy.reshape((n, rows) + tuple(f.output_shape(x.shape[1:]))))
    gx = gx.reshape(n, rows, -1)
    alpha = gx[:, 0]
    return y.reshape(n, -1), alpha, (-alpha if sm else gx[:, 1])


def saliency_from_jacobian(J, targets, increasing=True, softmax=False):
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
    softmax : bool
        ``J`` differentiates a softmax output: ``beta = -alpha`` exactly (see
        :func:`target_terms`).

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
    alpha, beta = target_terms(J, targets, softmax=softmax)
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
    return saliency_from_jacobian(J, targets, increasing,
                                  softmax=softmax_output(net, logits)).reshape(x.shape)
