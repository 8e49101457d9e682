"""Softmax and log-softmax over the last axis."""
import numpy as np

from ..core.layer import Layer


def _softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True), z, e


class Softmax(Layer):
    r"""Softmax over the last axis, the paper's output F.

    .. math::
        y = \frac{e^{x}}{\sum_j e^{x_j}}, \qquad
        dy = y \odot (dx - \langle y, dx \rangle)

    The Jacobian ``diag(y) - y y^T`` is symmetric, so the VJP has the same form.
    The forward pass caches ``y``.
    """

    def output_shape(self, in_shape):
        if len(in_shape) < 1:
            raise self._input_error("(N, K)", ("N",), "give at least one class axis")
        return tuple(in_shape)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        y = _softmax(x)[0]
        return y, y

    def jvp(self, cache, dx):
        y = cache[:, None]
        return y * (dx - (y * dx).sum(axis=-1, keepdims=True))

    vjp = jvp

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Gradient in ``x`` of :math:`s = \sum_d \langle a_d, y \odot (d_d - \langle y,
        d_d\rangle)\rangle` (``a = gdy``, ``d = dx``): :math:`\partial s/\partial y = \sum_d
        a_d \odot d_d - \langle a_d, y\rangle d_d - \langle y, d_d\rangle a_d`, pulled
        back through the softmax's own (symmetric) Jacobian."""
        y = cache[:, None]
        g = (gdy * dx - (gdy * y).sum(axis=-1, keepdims=True) * dx
             - (y * dx).sum(axis=-1, keepdims=True) * gdy).sum(axis=1)
        return cache * (g - (cache * g).sum(axis=-1, keepdims=True)), {}


class LogSoftmax(Layer):
    r"""Log-softmax over the last axis, computed stably as ``z - log(sum(exp(z)))`` with
    ``z = x - max(x)``.

    .. math::
        dy = dx - \langle p, dx \rangle, \qquad g_x = g_y - p \sum_j g_{y,j}

    with ``p = softmax(x)``, which the forward pass caches.
    """

    output_shape = Softmax.output_shape

    def forward(self, x):
        self.output_shape(x.shape[1:])
        p, z, e = _softmax(x)
        return z - np.log(e.sum(axis=-1, keepdims=True)), p

    def jvp(self, cache, dx):
        return dx - (cache[:, None] * dx).sum(axis=-1, keepdims=True)

    def vjp(self, cache, gy):
        return gy - cache[:, None] * gy.sum(axis=-1, keepdims=True)

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Gradient in ``x`` of :math:`s = \sum_d \langle a_d, d_d - \langle p, d_d\rangle
        \rangle`: :math:`\partial s/\partial p = -\sum_d (\textstyle\sum_i a_{d,i})\, d_d`,
        pulled back through the softmax ``p``."""
        g = -(gdy.sum(axis=-1, keepdims=True) * dx).sum(axis=1)
        return cache * (g - (cache * g).sum(axis=-1, keepdims=True)), {}
