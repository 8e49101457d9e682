"""Finite differences: the float64 oracle every derivative in fwdderiv is tested against.

Step choice. For a forward difference the truncation error is O(h) and the rounding
error O(eps/h), balanced at h ~ sqrt(eps) ~ 1.5e-8; for a central difference truncation is
O(h^2), balanced at h ~ eps^(1/3) ~ 6e-6. Both are scaled by max(1, |x_i|) so the step is
relative for large inputs. These are the textbook choices (e.g. Nocedal & Wright,
*Numerical Optimization*, sec. 8.1).
"""
import numpy as np

from .validation import as_float_array

_EPS = np.finfo(np.float64).eps
#: Relative step of the forward difference, sqrt(machine epsilon).
FORWARD_STEP = np.sqrt(_EPS)
#: Relative step of the central difference, machine epsilon ** (1/3).
CENTRAL_STEP = _EPS ** (1 / 3)


def _steps(x, method, step):
    if method not in ("central", "forward"):
        raise ValueError(f"finite differences: method must be 'central' or 'forward', got {method!r}")
    base = (CENTRAL_STEP if method == "central" else FORWARD_STEP) if step is None else step
    return base * np.maximum(1.0, np.abs(x))


def jacobian_fd(f, x, method="central", step=None, batch=64):
    """Finite-difference Jacobian of a batched function, in float64.

    Parameters
    ----------
    f : callable
        Maps a batch ``(N, *S_in)`` to ``(N, *S_out)``, each example independently
        (a :class:`fwdderiv.Sequential` is such a function).
    x : ndarray of shape (N, *S_in)
        Evaluation point; computed in float64 whatever its dtype.
    method : {"central", "forward"}
    step : float, optional
        Relative step; default :data:`CENTRAL_STEP` or :data:`FORWARD_STEP`.
    batch : int
        Perturbed inputs evaluated per call of ``f``.

    Returns
    -------
    J : ndarray of shape (N, *S_out, *S_in), float64

    Examples
    --------
    >>> import numpy as np
    >>> J = jacobian_fd(lambda x: x ** 2, np.array([[1.0, 2.0]]))
    >>> np.round(J, 6)
    array([[[2., 0.],
            [0., 4.]]])
    """
    x = as_float_array(x, "jacobian_fd").astype(np.float64)
    N, s_in = x.shape[0], x.shape[1:]
    D = int(np.prod(s_in))
    h = _steps(x, method, step).reshape(N, D)
    f0 = np.asarray(f(x), dtype=np.float64)
    s_out = f0.shape[1:]
    J = np.empty((N, D) + s_out)
    flat = x.reshape(N, D)
    for d0 in range(0, D, batch):
        d1 = min(d0 + batch, D)
        idx = np.arange(d0, d1)
        # (N, d, D) perturbed copies: example-major so f sees each example's copies together
        xp = np.repeat(flat[:, None, :], d1 - d0, axis=1)
        xp[:, idx - d0, idx] += h[:, idx]
        fp = np.asarray(f(xp.reshape((-1,) + s_in)), np.float64).reshape((N, d1 - d0) + s_out)
        if method == "central":
            xm = np.repeat(flat[:, None, :], d1 - d0, axis=1)
            xm[:, idx - d0, idx] -= h[:, idx]
            fm = np.asarray(f(xm.reshape((-1,) + s_in)), np.float64).reshape(fp.shape)
            diff, width = fp - fm, 2 * h[:, idx]
        else:
            diff, width = fp - f0[:, None], h[:, idx]
        J[:, d0:d1] = diff / width.reshape(width.shape + (1,) * len(s_out))
    return np.moveaxis(J, 1, -1).reshape((N,) + s_out + s_in)


def gradient_fd(f, x, method="central", step=None):
    """Finite-difference gradient of a scalar function ``f(x) -> float``, in float64.

    Parameters
    ----------
    f : callable
        Any function of an array returning a scalar (e.g. a loss of all parameters).
    x : ndarray
        Any shape; the gradient has the same shape.
    """
    x = np.array(x, dtype=np.float64)
    h = _steps(x, method, step)
    g = np.empty_like(x)
    flat, gflat, hflat = x.reshape(-1), g.reshape(-1), h.reshape(-1)
    f0 = float(f(x)) if method == "forward" else None
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + hflat[i]
        fp = float(f(x))
        if method == "central":
            flat[i] = old - hflat[i]
            fm = float(f(x))
            gflat[i] = (fp - fm) / (2 * hflat[i])
        else:
            gflat[i] = (fp - f0) / hflat[i]
        flat[i] = old
    return g


def loss_gradient_fd(net, x, y, method="central", step=None, loss="cross_entropy",
                     reduction="sum", dtype=np.float64, batch=64):
    r"""The input gradient of a classifier's loss by difference quotients, pixel by pixel.

    The classic recipe: for each input feature i, ``(L(x + h e_i) - L(x)) / h``
    (``method="forward"``, D + 1 loss evaluations) or ``(L(x + h e_i) - L(x - h e_i)) /
    (2h)`` (``"central"``, 2D evaluations), where D is the number of features per
    example. Examples are independent, so feature i of every example is perturbed in the
    same pass. Compare :func:`fwdderiv.loss_gradient`, which is exact and costs about
    three forward passes.

    Parameters
    ----------
    net : network
        A classifier; the loss is taken as in :func:`fwdderiv.loss_gradient`.
    x : ndarray of shape (N, *S)
    y : ndarray of shape (N,), int
    method : {"central", "forward"}
    step : float, optional
        Relative step (scaled by ``max(1, |x_i|)``); default :data:`CENTRAL_STEP` or
        :data:`FORWARD_STEP`, the float64 optima.
    loss, reduction
        As in :func:`fwdderiv.loss_gradient`.
    dtype : {np.float64, np.float32}
        Arithmetic of the loss evaluations (float64, the oracle, by default; float32
        shows what the recipe gives in single precision).
    batch : int
        Features perturbed per pass (each pass evaluates ``N * batch`` inputs).

    Returns
    -------
    gx : ndarray of shape (N, *S), of ``dtype``
    """
    from .gradients import _prepare, example_losses

    x = np.asarray(x)
    x, y = _prepare(net, x.astype(dtype) if x.dtype.kind == "f" else x, y, loss, reduction,
                    "loss_gradient_fd")
    N, s_in = x.shape[0], x.shape[1:]
    D = int(np.prod(s_in))
    h = _steps(x, method, step).astype(dtype).reshape(N, D)
    flat = x.reshape(N, D)

    def losses(xp, d):
        return example_losses(net, xp.reshape((-1,) + s_in), np.repeat(y, d), loss
                              ).reshape(N, d)

    f0 = losses(flat, 1) if method == "forward" else None
    g = np.empty((N, D), dtype=dtype)
    for d0 in range(0, D, batch):
        d1 = min(d0 + batch, D)
        idx = np.arange(d0, d1)
        xp = np.repeat(flat[:, None, :], d1 - d0, axis=1)
        xp[:, idx - d0, idx] += h[:, idx]
        # the step actually taken, after rounding x + h to the working precision
        taken = xp[:, idx - d0, idx] - flat[:, idx]
        fp = losses(xp, d1 - d0)
        if method == "central":
            xm = np.repeat(flat[:, None, :], d1 - d0, axis=1)
            xm[:, idx - d0, idx] -= h[:, idx]
            taken = taken + (flat[:, idx] - xm[:, idx - d0, idx])
            g[:, d0:d1] = (fp - losses(xm, d1 - d0)) / taken
        else:
            g[:, d0:d1] = (fp - f0) / taken
    if reduction == "mean":
        g /= N
    return g.reshape(x.shape)
