"""Softmax cross-entropy fused with log-softmax, and its gradient with respect to the logits."""
import numpy as np


def log_softmax(z):
    """Log-softmax over the last axis, stable for any finite logits.

    Parameters
    ----------
    z : ndarray of shape (N, C)
        Logits.

    Returns
    -------
    log_p : ndarray of shape (N, C)
        ``z - logsumexp(z)`` row by row, in the dtype of ``z``.

    Notes
    -----
    .. math:: \\log p_c = (z_c - m) - \\log \\sum_k e^{z_k - m}, \\quad m = \\max_k z_k

    Subtracting the row maximum first keeps every exponent at or below zero, so huge
    logits (1e4 in float32) neither overflow nor turn into NaN.
    """
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy of a batch and its gradient with respect to the logits.

    Parameters
    ----------
    logits : ndarray of shape (N, C)
        Unnormalised scores Z (the network without its final Softmax).
    labels : ndarray of shape (N,)
        Integer class labels in ``[0, C)``.

    Returns
    -------
    loss : float
        :math:`L = -\\frac{1}{N} \\sum_n \\log \\mathrm{softmax}(z_n)_{y_n}`.
    g_logits : ndarray of shape (N, C)
        :math:`\\partial L / \\partial z = (\\mathrm{softmax}(z) - \\mathrm{onehot}(y)) / N`,
        in the dtype of ``logits``.

    Examples
    --------
    >>> import numpy as np
    >>> loss, g = softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 6) == round(np.log(4), 6)
    True
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(
            f"softmax_cross_entropy expected logits of shape (N, C), got {logits.shape}; "
            "flatten the network output (add fd.Flatten()) before the loss")
    if labels.shape != (logits.shape[0],):
        raise ValueError(
            f"softmax_cross_entropy expected labels of shape ({logits.shape[0]},) to match "
            f"logits {logits.shape}, got {labels.shape}")
    n, n_classes = logits.shape
    log_p = log_softmax(logits)
    rows = np.arange(n)
    loss = -float(log_p[rows, labels].astype(np.float64).sum()) / n
    g_logits = np.exp(log_p)
    g_logits[rows, labels] -= 1
    g_logits /= n
    return loss, g_logits
