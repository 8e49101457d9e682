"""Input checks shared by every component; messages say what, got, and how to fix."""
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
        x = np.asarray(x)
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
