r"""Quadrature nodes (alphas) and weights for integrated gradients, as Captum computes them.

The path integral :math:`\int_0^1 \partial F/\partial x (b + \alpha (x - b))\,d\alpha` is
approximated by :math:`\sum_i w_i\, \partial F/\partial x(b + \alpha_i (x - b))`:

=====================  =====================================  ==========================
method                 alphas                                 weights
=====================  =====================================  ==========================
``riemann_left``       ``linspace(0, 1 - 1/n, n)``            ``1/n``
``riemann_right``      ``linspace(1/n, 1, n)``                ``1/n``
``riemann_middle``     ``linspace(1/(2n), 1 - 1/(2n), n)``    ``1/n``
``riemann_trapezoid``  ``linspace(0, 1, n)``                  ``1/n``, halved at the ends
``gausslegendre``      ``(1 + t_i) / 2``                      ``v_i / 2``
=====================  =====================================  ==========================

where ``t_i, v_i`` are the Gauss-Legendre nodes and weights on [-1, 1]
(``numpy.polynomial.legendre.leggauss``). Note that Captum's trapezoid weights sum to
``1 - 1/n``, not 1 (they are not ``1/(n-1)``); we keep Captum's values so that results
agree with it.

Captum (``captum/attr/_utils/approximation_methods.py`` and ``integrated_gradients.py``)
takes the Riemann alphas from ``torch.linspace`` in float32 and casts every weight to
float32 before using it; :func:`approximation_parameters` reproduces both roundings so
that attributions agree with Captum's to float64 rounding. The rounding changes the
quadrature by about 1e-8 relative, far below its discretisation error.
"""
import numpy as np

#: The ``method`` values of :meth:`IntegratedGradients.attribute`.
METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
           "gausslegendre")


def _linspace_float32(start, end, n):
    """``torch.linspace(start, end, n)`` in float32: from the start up to the middle, from
    the end after it, each value ``start + i * step`` rounded once (a fused multiply-add;
    float64 holds the product of two float32 numbers exactly)."""
    a, b = np.float32(start), np.float32(end)
    step = np.float32((b - a) / np.float32(n - 1))
    i = np.arange(n, dtype=np.float64)
    low = (np.float64(a) + np.float64(step) * i).astype(np.float32)
    high = (np.float64(b) - np.float64(step) * (n - 1 - i)).astype(np.float32)
    return np.where(np.arange(n) < n // 2, low, high).astype(np.float64)


def approximation_parameters(method, n_steps):
    """``(weights, alphas)``, two float64 arrays of length ``n_steps`` (see the module
    docstring for the formulas)."""
    if method not in METHODS:
        raise ValueError(f"IntegratedGradients expected method in {METHODS}, got "
                         f"{method!r}; the default is 'gausslegendre'")
    least = 1 if method == "gausslegendre" else 2
    if not isinstance(n_steps, (int, np.integer)) or isinstance(n_steps, bool) \
            or n_steps < least:
        raise ValueError(f"IntegratedGradients expected n_steps as an integer >= {least} "
                         f"for method {method!r}, got {n_steps!r}")
    n = int(n_steps)
    if method == "gausslegendre":
        t, v = np.polynomial.legendre.leggauss(n)
        alphas, weights = 0.5 * (1 + t), 0.5 * v
    else:
        weights = np.full(n, 1 / n)
        if method == "riemann_trapezoid":
            weights[0] /= 2
            weights[-1] /= 2
        start, end = {"riemann_trapezoid": (0, 1), "riemann_left": (0, 1 - 1 / n),
                      "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n)),
                      "riemann_right": (1 / n, 1)}[method]
        alphas = _linspace_float32(start, end, n)
    return weights.astype(np.float32).astype(np.float64), alphas
