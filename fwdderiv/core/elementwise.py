"""The base of entry-by-entry activations: one method makes a layer with every fast path.

A subclass writes ``value_and_slope(x) -> (f(x), f'(x))`` and, where ``f`` has kinks,
lists them in ``kink_points``. It then gets its JVP and VJP (``f'(x) * dx``), the windowed
forward mode, the fusion into a following max-pool in both modes and the kink census,
with nothing else to write (as stax builds ``LeakyRelu = elementwise(leaky_relu)``).
"""
import numpy as np

from ..kernels.local import scale_window
from .layer import Layer


class Elementwise(Layer):
    r"""An activation applied to every entry, :math:`y = f(x)`, :math:`dy = f'(x)\,dx`.

    The forward pass caches :math:`f'(x)`, the only thing the JVP and VJP need.

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> class Softsign(fd.Elementwise):
    ...     def value_and_slope(self, x):
    ...         d = 1 + np.abs(x)
    ...         return x / d, 1 / (d * d)
    >>> Softsign()(np.array([[1.0, -3.0]]))
    array([[ 0.5 , -0.75]])
    """

    pointwise = True
    elementwise = True
    #: Inputs at which ``f`` is not differentiable, for the kink census.
    kink_points = ()

    def value_and_slope(self, x):
        """Return ``(f(x), f'(x))``, both shaped and typed like ``x``."""
        raise NotImplementedError

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        y, slope = self.value_and_slope(x)
        return y, slope

    def slope(self, cache):
        """``f'(x)`` of shape ``(N, *S)`` from the forward cache."""
        return cache

    def jvp(self, cache, dx):
        return cache[:, None] * dx

    def vjp(self, cache, gy):
        return cache[:, None] * gy

    def window_rule(self, window):
        return window

    def window_jvp(self, cache, T, window, nxt, n):
        return scale_window(T, self.slope(cache), n)

    def kinks(self, x, tol):
        return sum(int(np.count_nonzero(np.abs(x - k) <= tol)) for k in self.kink_points)

    # -- second order (fwdderiv.core.second_order) ----------------------------------
    def second_slope(self, x):
        """``f''(x)``, shaped like ``x``; needed only for second-order derivatives."""
        raise NotImplementedError(
            f"{self!r} does not implement second_slope(x) = f''(x), which second-order "
            f"derivatives (Jacobian regularisation) need")

    def jvp_grad(self, cache, x, dx, gdy):
        r"""The gradient of :math:`\sum \langle g, f'(x)\,dx \rangle` in ``x``:
        :math:`f''(x) \sum_d g_d\,dx_d`; no parameters."""
        return self.second_slope(x) * np.einsum("nd...,nd...->n...", gdy, dx), {}
