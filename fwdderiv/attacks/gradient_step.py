r"""Fast gradient attacks: one gradient step (FGSM, FGM) and its iterated, projected form (PGD).

The names, arguments and step formulas follow cleverhans 4 (``fast_gradient_method``,
``projected_gradient_descent``, ``optimize_linear``, ``clip_eta``) so code written against
it reads the same; the gradient is that of the cross-entropy of the logits
(:func:`fwdderiv.loss_gradient`), taken from the logits before a final Softmax.

References: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples"
(ICLR 2015); Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world"
(2016); Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks"
(ICLR 2018).
"""
import numbers

import numpy as np

from ..classifier import check_images, check_labels, n_outputs
from ..gradients import loss_pass
from ..threads import holding_blas

#: Floor on a squared L2 norm before dividing by its root (cleverhans's
#: ``avoid_zero_div``): a zero gradient gives a zero step instead of NaN.
AVOID_ZERO_DIV = 1e-12

#: The norms of the step and of the ball.
NORMS = (np.inf, 1, 2)


def _check_norm(norm, where):
    if isinstance(norm, str) and norm.lower() in ("inf", "linf"):
        return np.inf
    if isinstance(norm, numbers.Real) and not isinstance(norm, bool) and norm in NORMS:
        return np.inf if norm == np.inf else int(norm)
    raise ValueError(f"{where} expected norm np.inf, 1 or 2, got {norm!r}; use np.inf for "
                     "the sign step (FGSM)")


def _check_nonneg(value, name, where):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not np.isfinite(value) or value < 0):
        raise ValueError(f"{where} expected {name} as a finite number >= 0, got {value!r}; "
                         f"{name} is a distance in input units (e.g. 0.1 for images in "
                         "[0, 1])")
    return float(value)


def _check_clip(clip_min, clip_max, where):
    for name, v in (("clip_min", clip_min), ("clip_max", clip_max)):
        if v is not None and (not isinstance(v, numbers.Real) or not np.isfinite(v)):
            raise ValueError(f"{where} expected {name} as a finite number or None, got {v!r}")
    if clip_min is not None and clip_max is not None and clip_min > clip_max:
        raise ValueError(f"{where} expected clip_min <= clip_max, got {clip_min} > "
                         f"{clip_max}; swap them")


def _clip(x, clip_min, clip_max):
    if clip_min is None and clip_max is None:
        return x
    return np.clip(x, clip_min, clip_max)


def _labels(net, x, y, targeted, where):
    """The labels the loss uses: ``y`` checked, or None for the model's predictions
    (untargeted), which :func:`_fgm` takes from its own forward pass."""
    K = n_outputs(net, x.shape[1:], where)
    if y is None:
        if targeted:
            raise ValueError(f"{where} with targeted=True needs y, the target classes; "
                             "pass y=np.array([...]) (one target per example)")
        return None                    # the predictions, from the gradient's own pass
    return check_labels(y, x.shape[0], K, where, "y")


def optimize_linear(grad, eps, norm=np.inf):
    r"""The step of norm ``eps`` that maximises the linear model ``<grad, step>``.

    Per example: ``eps * sign(g)`` for the L-inf norm; ``eps * g / ||g||_2`` for L2
    (``||g||_2^2`` floored at :data:`AVOID_ZERO_DIV`); for L1, ``eps * sign(g)`` spread
    evenly over the coordinates where ``|g|`` is largest (ties share it). The formulas
    of cleverhans 4's ``optimize_linear``.

    Parameters
    ----------
    grad : ndarray of shape (N, *S)
    eps : float
    norm : {np.inf, 1, 2}

    Returns
    -------
    ndarray of shape (N, *S)
    """
    norm = _check_norm(norm, "optimize_linear")
    n = grad.shape[0]
    flat = grad.reshape(n, -1)
    if norm == np.inf:
        step = np.sign(flat)
    elif norm == 1:
        a = np.abs(flat)
        top = a == a.max(axis=1, keepdims=True)
        step = np.sign(flat) * top / top.sum(axis=1, keepdims=True)
    else:
        sq = np.maximum(AVOID_ZERO_DIV, (flat ** 2).sum(axis=1, keepdims=True))
        step = flat / np.sqrt(sq)
    return (eps * step).astype(grad.dtype, copy=False).reshape(grad.shape)


def _project_l1(v, eps):
    """Euclidean projection of each row of ``v`` onto the L1 ball of radius eps
    (Duchi, Shalev-Shwartz, Singer, Chandra, ICML 2008, Figure 1)."""
    if eps == 0:
        return np.zeros_like(v)
    a = np.abs(v)
    out = v.copy()
    outside = a.sum(axis=1) > eps
    if not outside.any():
        return out
    u = -np.sort(-a[outside], axis=1)
    css = np.cumsum(u, axis=1)
    k = np.arange(1, u.shape[1] + 1)
    rho = (u - (css - eps) / k > 0).sum(axis=1)
    theta = (css[np.arange(len(u)), rho - 1] - eps) / rho
    out[outside] = np.sign(v[outside]) * np.maximum(a[outside] - theta[:, None], 0)
    return out


def clip_eta(eta, norm, eps):
    """Project each example's perturbation ``eta`` onto the ``norm`` ball of radius eps.

    L-inf: clip every coordinate to [-eps, eps]. L2: scale by ``min(1, eps / ||eta||_2)``
    (cleverhans 4's ``clip_eta``). L1: the exact Euclidean projection onto the L1 ball
    (Duchi et al. 2008; cleverhans 4 has none).

    Parameters
    ----------
    eta : ndarray of shape (N, *S)
    norm : {np.inf, 1, 2}
    eps : float

    Returns
    -------
    ndarray of shape (N, *S)
    """
    norm = _check_norm(norm, "clip_eta")
    if norm == np.inf:
        return np.clip(eta, -eps, eps)
    flat = eta.reshape(eta.shape[0], -1)
    if norm == 2:
        length = np.sqrt(np.maximum(AVOID_ZERO_DIV, (flat ** 2).sum(axis=1, keepdims=True)))
        out = flat * np.minimum(1.0, eps / length)
    else:
        out = _project_l1(flat, eps)
    return out.astype(eta.dtype, copy=False).reshape(eta.shape)


@holding_blas
def fast_gradient_method(net, x, eps, norm, y=None, targeted=False, clip_min=None,
                         clip_max=None):
    r"""One gradient step on the cross-entropy loss: FGSM (``norm=np.inf``) and FGM.

    .. math::
        x' = \mathrm{clip}\big(x \pm \mathrm{optimize\_linear}(\nabla_x L(x, y),
        \varepsilon, \mathrm{norm})\big)

    with ``+`` (ascend the loss of the true/predicted class) when untargeted and ``-``
    (descend the loss of the target) when ``targeted``.

    Parameters
    ----------
    net : network
        A classifier; the loss is taken on its logits (before a final Softmax).
    x : ndarray of shape (N, *S), float32 or float64
    eps : float
        Size of the step in the given norm, >= 0.
    norm : {np.inf, 1, 2}
    y : ndarray of shape (N,), int, optional
        True labels (untargeted) or target classes (targeted). None: the model's
        predictions, which avoids label leaking (Kurakin et al. 2016); required when
        ``targeted``.
    targeted : bool
    clip_min, clip_max : float, optional
        Bounds of valid inputs (e.g. 0 and 1 for images).

    Returns
    -------
    x_adv : ndarray of shape (N, *S), the dtype of ``x``

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> net = fd.models.digits_net()
    >>> x = np.full((2, 1, 8, 8), 0.5)
    >>> x_adv = fd.attacks.fast_gradient_method(net, x, 0.1, np.inf, clip_min=0, clip_max=1)
    >>> bool(np.allclose(np.abs(x_adv - x), 0.1))
    True
    """
    where = "fast_gradient_method"
    x = check_images(x, where)
    eps = _check_nonneg(eps, "eps", where)
    norm = _check_norm(norm, where)
    _check_clip(clip_min, clip_max, where)
    y = _labels(net, x, y, targeted, where)
    return _fgm(net, x, eps, norm, y, targeted, clip_min, clip_max)


def _fgm(net, x, eps, norm, y, targeted, clip_min, clip_max):
    """One step; ``y`` None labels ``x`` by the model's predictions (same pass)."""
    g, _ = loss_pass(net, x, y)
    if targeted:
        g = -g
    return _clip(x + optimize_linear(g, eps, norm), clip_min, clip_max)


@holding_blas
def projected_gradient_descent(net, x, eps, eps_iter, nb_iter, norm, y=None, targeted=False,
                               rand_init=True, rand_minmax=None, clip_min=None,
                               clip_max=None, seed=None):
    r"""Iterated fast gradient steps, projected onto the eps-ball around ``x`` (BIM/PGD).

    Start at ``x + eta``, ``eta`` uniform in ``[-rand_minmax, rand_minmax]`` projected
    onto the ball (or ``eta = 0`` without ``rand_init``: the basic iterative method), then
    ``nb_iter`` times: a :func:`fast_gradient_method` step of size ``eps_iter`` (clipped),
    the perturbation projected onto the ``norm`` ball of radius ``eps``
    (:func:`clip_eta`), clipped again. Labels are fixed before the first step: ``y``, or
    the predictions on the clean ``x``. As cleverhans 4's ``projected_gradient_descent``.

    Parameters
    ----------
    net : network
    x : ndarray of shape (N, *S)
    eps : float
        Radius of the ball, >= 0.
    eps_iter : float
        Size of each step, >= 0.
    nb_iter : int
        Number of steps, >= 0.
    norm : {np.inf, 1, 2}
    y : ndarray of shape (N,), int, optional
        As in :func:`fast_gradient_method`.
    targeted : bool
    rand_init : bool, default True
    rand_minmax : float, optional
        Half-width of the random start; default ``eps``.
    clip_min, clip_max : float, optional
    seed : int or numpy Generator, optional
        Seeds the random start.

    Returns
    -------
    x_adv : ndarray of shape (N, *S)
        Within ``eps`` of ``x`` in ``norm`` and within the clip bounds.
    """
    where = "projected_gradient_descent"
    x = check_images(x, where)
    eps = _check_nonneg(eps, "eps", where)
    eps_iter = _check_nonneg(eps_iter, "eps_iter", where)
    norm = _check_norm(norm, where)
    _check_clip(clip_min, clip_max, where)
    if not isinstance(nb_iter, numbers.Integral) or isinstance(nb_iter, bool) or nb_iter < 0:
        raise ValueError(f"{where} expected nb_iter as an integer >= 0, got {nb_iter!r}")
    rand_minmax = eps if rand_minmax is None else _check_nonneg(rand_minmax, "rand_minmax",
                                                                where)
    y = _labels(net, x, y, targeted, where)
    if y is None:                           # fixed on the clean images
        y = np.argmax(net.forward(x), axis=1)
    if rand_init:
        rng = np.random.default_rng(seed)
        eta = rng.uniform(-rand_minmax, rand_minmax, size=x.shape).astype(x.dtype)
        eta = clip_eta(eta, norm, eps)
    else:
        eta = np.zeros_like(x)
    x_adv = _clip(x + eta, clip_min, clip_max)
    for _ in range(int(nb_iter)):
        x_adv = _fgm(net, x_adv, eps_iter, norm, y, targeted, clip_min, clip_max)
        x_adv = _clip(x + clip_eta(x_adv - x, norm, eps), clip_min, clip_max)
    return x_adv
