"""Input checks shared by every component; messages say what, got, and how to fix."""
import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, component, name="x"):
    """Return ``x`` as a C-contiguous float32/float64 array, or raise a clear error.

    Read-only and non-contiguous inputs are accepted (copied if needed, never written).
    """
    if not isinstance(x, np.ndarray):
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            raise TypeError(
                f"{component} expected {name} as a NumPy array, got a {type(x).__name__}; "
                f"convert it with {name}.detach().cpu().numpy()")
        try:
            x = np.asarray(x)
        except ValueError as err:
            raise ValueError(
                f"{component} expected {name} as an array of numbers, got a ragged nested "
                f"sequence ({err}); give every row the same length, or pass an ndarray"
            ) from None
    if x.dtype not in FLOAT_DTYPES:
        if x.dtype.kind in "fc":
            fix = f"cast it with {name}.astype(np.float32) or np.float64"
        else:
            fix = (f"cast it with {name}.astype(np.float32) (for images, also scale "
                   "them to [0, 1], e.g. x / 255)")
        raise TypeError(
            f"{component} expected {name} of dtype float32 or float64, got {x.dtype}; {fix}")
    return np.ascontiguousarray(x)


def shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tangent(x, dx, component, name="dx", what="tangent"):
    """``dx`` must be shaped ``(N, D, *x.shape[1:])`` and have ``x``'s dtype kind."""
    dx = as_float_array(dx, component, name)
    if dx.ndim != x.ndim + 1 or dx.shape[0] != x.shape[0] or dx.shape[2:] != x.shape[1:]:
        raise ValueError(
            f"{component} expected {name} ({what}) of shape (N, D, *x.shape[1:]) = "
            f"({x.shape[0]}, D, {', '.join(map(str, x.shape[1:]))}), got {shape_str(dx.shape)}; "
            f"a single direction v goes in as v[:, None]")
    if dx.dtype != x.dtype:
        dx = dx.astype(x.dtype)
    return dx


def _kind(value):
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def check_int(value, name, component, minimum=None, maximum=None):
    """``value`` as a Python int (bools and floats refused), within the bounds given."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{component} expected {name} as an integer, got {_kind(value)}; "
                        f"pass e.g. {name}={minimum if minimum is not None else 0}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (f">= {minimum}" if maximum is None else
                  f"<= {maximum}" if minimum is None else f"in [{minimum}, {maximum}]")
        raise ValueError(f"{component} expected {name} as an integer {bounds}, got {value}")
    return value


def check_real(value, name, component, lo=-math.inf, hi=math.inf, lo_open=False,
               hi_open=False, nonzero=False, hint=""):
    """``value`` as a finite Python float in the interval given (bools and strings
    refused). ``hint`` is appended to the range error."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{component} expected {name} as a number, got {_kind(value)}"
                        + (f"; {hint}" if hint else ""))
    value = float(value)
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and \
        (value < hi if hi_open else value <= hi) and not (nonzero and value == 0)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        kind = f"a finite{' nonzero' if nonzero else ''} number"
        what = f"in {rng}, {kind}" if math.isfinite(lo) or math.isfinite(hi) else f"as {kind}"
        raise ValueError(f"{component} expected {name} {what}, got {value!r}"
                         + (f"; {hint}" if hint else ""))
    return value


def check_max_memory(max_memory, component):
    """``None`` or a positive int number of bytes (the memory budget of a call)."""
    if max_memory is None:
        return None
    if not isinstance(max_memory, numbers.Integral) or isinstance(max_memory, (bool, np.bool_)):
        raise TypeError(f"{component} expected max_memory as a positive int number of "
                        f"bytes or None, got {_kind(max_memory)}; e.g. max_memory=2**30 "
                        "for 1 GiB")
    if max_memory < 1:
        raise ValueError(f"{component} expected max_memory as a positive number of bytes, "
                         f"got {max_memory}; e.g. max_memory=2**30 for 1 GiB, or None for "
                         "the default")
    return int(max_memory)


def check_finite(x, component, name="x", what="images"):
    """Refuse NaN and Inf in ``x`` (an attack or a training run would report nonsense);
    say how many there are and where the first one is."""
    if x.size and not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        first = np.unravel_index(int(np.argmax(bad)), x.shape)
        n_nan = int(np.isnan(x).sum())
        raise ValueError(
            f"{component} expected finite {what} in {name}, got {n_nan} NaN and "
            f"{int(bad.sum()) - n_nan} infinite value(s) (the first at index "
            f"{tuple(int(i) for i in first)}); clean the data, e.g. drop those examples "
            f"with {name}[np.isfinite({name}).reshape(len({name}), -1).all(axis=1)]")
    return x


def check_classifier(net, in_shape, component):
    """The number of classes K of ``net`` on inputs of per-example shape ``in_shape``;
    refuses a network whose output per example is not a vector of at least 2 classes."""
    out_shape = tuple(net.output_shape(tuple(in_shape)))
    if len(out_shape) != 1 or out_shape[0] < 2:
        raise ValueError(
            f"{component} expected a classifier whose output per example is a vector of "
            f"K >= 2 class scores, got output shape {shape_str(out_shape)} for input "
            f"{shape_str(tuple(in_shape))}; end the network with fd.Flatten() and "
            "fd.Linear(..., n_classes) (and fd.Softmax())")
    return out_shape[0]


def check_class_indices(targets, n, n_classes, component, name="targets"):
    """Integer class indices, one per example (a scalar is repeated): shape ``(n,)``,
    values in ``[0, n_classes)``; floats (``1.7``), bools and one-hot rows are refused."""
    if isinstance(targets, (bool, np.bool_)):
        raise TypeError(f"{component} expected integer class indices as {name}, got a bool")
    try:
        t = np.asarray(targets)
    except ValueError as err:
        raise ValueError(f"{component} expected {name} as integer class indices, one per "
                         f"example; got a ragged sequence ({err})") from None
    if t.dtype.kind not in "iu":
        raise TypeError(f"{component} expected integer class indices as {name}, got "
                        f"{'value' if t.ndim == 0 else 'dtype'} "
                        f"{t.item() if t.ndim == 0 and t.dtype.kind != 'O' else t.dtype}; "
                        f"pass labels such as np.array([3, 7]) (not one-hot rows, not "
                        f"floats: round or cast with .astype(np.int64) if that is meant)")
    if t.ndim == 0:
        t = np.full(n, int(t), dtype=np.int64)
    if t.shape != (n,):
        raise ValueError(f"{component} expected one target per sample, shape ({n},), got "
                         f"{t.shape}; pass an int or an array with one class per row of x.")
    if n and (t.min() < 0 or t.max() >= n_classes):
        raise ValueError(f"{component} expected {name} in [0, {n_classes}), got values from "
                         f"{t.min()} to {t.max()}; the network has {n_classes} outputs.")
    return t.astype(np.int64)
