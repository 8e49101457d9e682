"""Input checks shared by loss gradients, attacks and attributions of classifiers.

Messages name the function, what it expected, what it got and how to fix it.
"""
import numbers

import numpy as np

from .validation import as_float_array, shape_str


def check_images(x, where, name="x"):
    """``x`` as a float32/float64 batch ``(N, *S)`` with finite values."""
    x = as_float_array(x, where, name)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"{where} expected {name} as a non-empty batch of shape (N, *S), got "
            f"{shape_str(x.shape)}; add a batch axis with {name}[None]")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(
            f"{where} expected finite values in {name}, got {bad} NaN or infinite "
            f"entries; clean the images first (e.g. np.nan_to_num({name}))")
    return x


def n_outputs(net, in_shape, where):
    """K, the length of the network's output vector for inputs of shape ``in_shape``."""
    out = tuple(net.output_shape(tuple(in_shape)))
    if len(out) != 1:
        raise ValueError(
            f"{where} expected a network whose output per example is a vector (K,), got "
            f"{shape_str(out)}; end the network with fd.Flatten() and fd.Linear(..., K)")
    return out[0]


def check_labels(y, n, n_classes, where, name="y"):
    """Integer labels of shape ``(n,)`` in ``[0, n_classes)``; a scalar is broadcast."""
    if isinstance(y, numbers.Integral):
        y = np.full(n, int(y))
    y = np.asarray(y)
    if y.ndim == 0 and np.issubdtype(y.dtype, np.integer):
        y = np.full(n, int(y))
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,):
        raise TypeError(
            f"{where} expected {name} as one integer class label per example, shape "
            f"({n},), got dtype {y.dtype} and shape {shape_str(y.shape)}; pass class "
            f"indices (e.g. one_hot.argmax(axis=1)), not one-hot rows or floats")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{where} expected {name} in [0, {n_classes}) for a network with {n_classes} "
            f"outputs, got values from {y.min()} to {y.max()}; use class indices of this "
            "network")
    return y.astype(np.intp)
