"""Elementwise activations, each a :class:`fwdderiv.core.Elementwise`: the forward pass
caches f'(x), the only thing the JVP (``f'(x) * dx``) and the VJP (``f'(x) * gy``) need."""
import numpy as np

from ..core.elementwise import Elementwise


class ReLU(Elementwise):
    r"""Rectifier, :math:`y = \max(x, 0)`.

    Kink convention (PyTorch's): relu'(0) = 0, so the derivative is ``1[not x <= 0]``;
    a NaN input gives a NaN output and passes the derivative through, as PyTorch does.
    """

    kink_points = (0.0,)

    def value_and_slope(self, x):
        return np.maximum(x, 0), (~(x <= 0)).astype(x.dtype)

    def second_slope(self, x):
        """Zero: ReLU is piecewise linear (its second derivative is zero everywhere but
        at the kink 0, where it does not exist; PyTorch's double backward also gives 0)."""
        return np.zeros_like(x)


class Sigmoid(Elementwise):
    r"""Logistic function, :math:`y = 1/(1+e^{-x})`, :math:`y' = y(1-y)`."""

    def value_and_slope(self, x):
        # exp of a non-positive number only: no overflow warning for large |x|
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return y, y * (1 - y)

    def second_slope(self, x):
        r""":math:`y'' = y(1-y)(1-2y)`."""
        y = self.value_and_slope(x)[0]
        return y * (1 - y) * (1 - 2 * y)


class Tanh(Elementwise):
    r"""Hyperbolic tangent, :math:`y' = 1 - y^2`."""

    def value_and_slope(self, x):
        y = np.tanh(x)
        return y, 1 - y * y

    def second_slope(self, x):
        r""":math:`y'' = -2y(1-y^2)`."""
        y = np.tanh(x)
        return -2 * y * (1 - y * y)
