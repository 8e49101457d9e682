"""Argument checks shared by the layer constructors."""
import numbers

import numpy as np


def pair(value, name, owner, minimum=1):
    """An int or a pair of ints -> a tuple of two ints, each at least ``minimum``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        a, b = value
        a, b = int(a), int(b)
        if a != value[0] or b != value[1]:
            raise TypeError
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}") from None
    if a < minimum or b < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return a, b


def finite_real(value, name, owner):
    """``value`` as a float; a TypeError naming ``owner`` and ``name`` unless it is a
    finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{owner}: {name} must be a finite real number, got {value!r}")
    return float(value)


def positive_int(value, name, owner):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


def chw(layer, in_shape, channels=None):
    """Check a per-example image shape (C, H, W); return it as a tuple of ints."""
    in_shape = tuple(in_shape)
    if len(in_shape) != 3:
        raise layer._input_error(
            f"(N, {channels if channels else 'C'}, H, W)", ("N",) + in_shape if in_shape else in_shape,
            "give a batch of images; add a batch axis with x[None], or a channel axis with x[:, None]")
    if channels is not None and in_shape[0] != channels:
        raise layer._input_error(
            f"(N, {channels}, H, W)", ("N",) + in_shape,
            f"the layer was built for {channels} input channel(s) but the input has {in_shape[0]}")
    return in_shape
