"""Softmax and log-softmax over one axis (``dim``, counted as in PyTorch)."""
import numbers

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ..core.layer import Layer
from ..kernels import rows


def _softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True), z, e


class _OverAxis(Layer):
    """The ``dim`` argument shared by Softmax and LogSoftmax (see :class:`Softmax`)."""

    def __init__(self, dim=-1):
        if dim is None:
            dim = -1
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
            raise TypeError(f"{type(self).__name__}: dim must be an int, got {dim!r}")
        if dim == 0:
            raise ValueError(f"{type(self).__name__}: dim=0 is the batch axis, which fwdderiv "
                             f"keeps independent; use dim >= 1 or a negative dim")
        self.dim = int(dim)

    def get_config(self):
        return {"dim": self.dim}

    def __repr__(self):
        return f"{type(self).__name__}()" if self.dim == -1 else \
            f"{type(self).__name__}(dim={self.dim})"

    def output_shape(self, in_shape):
        ndim = len(in_shape) + 1
        if not -ndim < self.dim < ndim:
            raise self._input_error(
                f"(N, ...) with an axis {self.dim} (not the batch axis)", ("N",) + tuple(in_shape),
                "choose dim within the input's axes (axis 0 is the batch, as in PyTorch)")
        return tuple(in_shape)

    def _axes(self, ndim_x):
        """The axis in ``x`` (N, *S) and in a tangent (N, D, *S)."""
        a = self.dim if self.dim > 0 else ndim_x + self.dim
        return a, a + 1



class Softmax(_OverAxis):
    r"""Softmax over axis ``dim``, the paper's output F.

    .. math::
        y = \frac{e^{x}}{\sum_j e^{x_j}}, \qquad
        dy = y \odot (dx - \langle y, dx \rangle)

    The Jacobian ``diag(y) - y y^T`` is symmetric, so the VJP has the same form.
    The forward pass caches ``y``.

    Parameters
    ----------
    dim : int, default -1
        The axis, counted as in PyTorch: 0 is the batch axis (not allowed: examples stay
        independent), 1 the first axis of an example, negative axes count from the end.
        PyTorch's ``nn.Softmax(dim=None)`` picks an axis from the input's rank and is
        deprecated; here the default is the last axis (what every saved fwdderiv model
        used), and ``dim=None`` means the same.
    """

    def forward(self, x):
        self.output_shape(x.shape[1:])
        a, _ = self._axes(x.ndim)
        if x.shape[a] == 0:
            return x.copy(), x.copy()
        y = _softmax(x, a)[0]
        return y, y

    def jvp(self, cache, dx):
        _, a = self._axes(cache.ndim)
        y = cache[:, None]
        if cache.ndim == 2 and dx.ndim == 3 and dx.dtype == cache.dtype:
            # a classifier's output (N, K): <y, dx> of every direction as one product per
            # example (NumPy's reduction over a short last axis took 3x as long)
            return y * (dx - np.matmul(dx, cache[:, :, None]))
        if a == dx.ndim - 1 and dx.dtype == cache.dtype:     # rows: one pass each
            return rows.softmax_jvp(cache, dx)
        return y * (dx - (y * dx).sum(axis=a, keepdims=True))

    vjp = jvp

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Gradient in ``x`` of :math:`s = \sum_d \langle a_d, y \odot (d_d - \langle y,
        d_d\rangle)\rangle` (``a = gdy``, ``d = dx``): :math:`\partial s/\partial y = \sum_d
        a_d \odot d_d - \langle a_d, y\rangle d_d - \langle y, d_d\rangle a_d`, pulled
        back through the softmax's own (symmetric) Jacobian."""
        a, ad = self._axes(cache.ndim)
        y = cache[:, None]
        g = (gdy * dx - (gdy * y).sum(axis=ad, keepdims=True) * dx
             - (y * dx).sum(axis=ad, keepdims=True) * gdy).sum(axis=1)
        return cache * (g - (cache * g).sum(axis=a, keepdims=True)), {}


class LogSoftmax(_OverAxis):
    r"""Log-softmax over axis ``dim`` (as :class:`Softmax`), computed stably as
    ``z - log(sum(exp(z)))`` with ``z = x - max(x)``.

    .. math::
        dy = dx - \langle p, dx \rangle, \qquad g_x = g_y - p \sum_j g_{y,j}

    with ``p = softmax(x)``, which the forward pass caches.
    """

    def forward(self, x):
        self.output_shape(x.shape[1:])
        a, _ = self._axes(x.ndim)
        if x.shape[a] == 0:
            return x.copy(), x.copy()
        p, z, e = _softmax(x, a)
        return z - np.log(e.sum(axis=a, keepdims=True)), p

    def jvp(self, cache, dx):
        _, a = self._axes(cache.ndim)
        return dx - (cache[:, None] * dx).sum(axis=a, keepdims=True)

    def vjp(self, cache, gy):
        _, a = self._axes(cache.ndim)
        return gy - cache[:, None] * gy.sum(axis=a, keepdims=True)

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Gradient in ``x`` of :math:`s = \sum_d \langle a_d, d_d - \langle p, d_d\rangle
        \rangle`: :math:`\partial s/\partial p = -\sum_d (\textstyle\sum_i a_{d,i})\, d_d`,
        pulled back through the softmax ``p``."""
        a, ad = self._axes(cache.ndim)
        g = -(gdy.sum(axis=ad, keepdims=True) * dx).sum(axis=1)
        return cache * (g - (cache * g).sum(axis=a, keepdims=True)), {}


# -- registry entries ------------------------------------------------------------------------
def _from_torch(name):
    def rule(ctx, a):
        x = exchange.torch_input(a)
        dim = exchange.torch_dim(ctx, x, a["dim"], "a softmax")
        if dim == len(ctx.shape(x)):
            return ctx.emit(ctx.layer(name), x)
        return ctx.emit(ctx.layer(name, dim=dim), x)
    return rule


def _from_onnx(name):
    def rule(imp, node, a):
        nd = len(imp.shape(node.input[0]))
        axis = int(a.get("axis", -1 if imp.opset >= 13 else 1)) % (nd + 1)
        if axis == 0:
            imp.fail("a softmax over the batch axis", "axis")
        if imp.opset < 13 and axis != nd:
            imp.fail(f"axis={axis} before opset 13 (coerces to 2-d)", "axis")
        layer = imp.layer(name) if axis == nd else imp.layer(name, "axis", dim=axis)
        exchange.onnx_output(imp, node, imp.emit(layer, node.input[0]))
    return rule


def _to_torch(layer):
    from torch import nn
    return getattr(nn, type(layer).__name__)(dim=layer.dim)


#: ``aten._safe_softmax`` (the softmax of PyTorch's math attention, which nn.MultiheadAttention
#: runs under the per-example trace of :mod:`fwdderiv.interop.torch_import`) is the softmax
#: except on a row that is -inf throughout, where it gives 0 and the softmax NaN: imported
#: as the softmax, such a row shows up as NaN, never as a silent difference.
_TORCH_EXTRA = {"softmax": ("_safe_softmax",), "log_softmax": ()}

for _cls, _op in ((Softmax, "softmax"), (LogSoftmax, "log_softmax")):
    register_layer(_cls, schema=schema.LayerSchema({"dim": (schema.dim, -1)}),
                   torch={op: _from_torch(_cls.__name__)
                          for op in (_op, "_" + _op) + _TORCH_EXTRA[_op]},
                   onnx={_cls.__name__: _from_onnx(_cls.__name__)}, to_torch=_to_torch,
                   example=Example({"dim": 2}, (3, 4)))
