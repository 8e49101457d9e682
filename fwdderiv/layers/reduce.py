"""Reductions over chosen per-example axes, ``keepdim`` as in PyTorch: ``x.sum(dims)``,
``x.mean(dims)``, ``x.amax(dims)`` and ``x.max(dim).values``, ``x.var(dims)`` and
``x.std(dims)`` (ONNX ``ReduceSum``, ``ReduceMean``, ``ReduceMax``; ``torch.onnx`` writes
var and std with ``ReduceMean``, ``Sub``, ``Mul`` and ``Sqrt``, which import as the layers
of those). ``dims`` count the batch axis as 0, as PyTorch's do, and may not include it.
"""
import numpy as np

from .. import schema
from ..core.layer import Layer
from ..registry import Example, register_layer
from . import exchange


class Reduction(Layer):
    """What the reductions share: the axes (``dims``, 1 and up; negative ones count from
    the end), ``keepdim``, the output shape and the spreading of a reduced array back
    over the input."""

    def __init__(self, dims, keepdim=False):
        name = type(self).__name__
        try:
            dims = sorted({int(d) for d in dims})
        except (TypeError, ValueError):
            raise TypeError(f"{name}: dims must be a sequence of ints, got {dims!r}") from None
        if not dims or 0 in dims:
            raise ValueError(f"{name}: dims must name per-example axes (1 and up, or negative "
                             f"from the end; 0 is the batch axis), got {dims}")
        self.dims, self.keepdim = tuple(dims), bool(keepdim)

    def get_config(self):
        return {"dims": list(self.dims), "keepdim": self.keepdim}

    def _axes(self, in_shape):
        """The reduced axes of ``(N, *in_shape)``, batch axis 0."""
        nd = len(in_shape)
        axes = sorted({d % (nd + 1) for d in self.dims})
        if 0 in axes or max(self.dims) > nd or min(self.dims) < -nd:
            raise self._input_error(f"(N, ...) with an axis {max(self.dims, key=abs)}",
                                    ("N",) + tuple(in_shape),
                                    "reduce over axes the input has (the batch axis is 0)")
        return tuple(axes)

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        axes = self._axes(in_shape)
        return tuple(1 if i + 1 in axes else s for i, s in enumerate(in_shape)
                     if self.keepdim or i + 1 not in axes)

    def _reduce(self, v, axes, lead):
        """Sum ``v`` over ``axes`` (of an array with one leading axis) after ``lead``
        leading axes."""
        return v.sum(axis=tuple(a + lead - 1 for a in axes), keepdims=self.keepdim)

    def _spread(self, g, in_shape, lead):
        """``g`` (``lead`` leading axes, then the output) as an array broadcasting over
        ``(..., *in_shape)``: reduced axes of size 1."""
        axes = self._axes(in_shape)
        kept = tuple(1 if i + 1 in axes else s for i, s in enumerate(in_shape))
        return g.reshape(g.shape[:lead] + kept)


class Mean(Reduction):
    """The mean over per-example axes, ``x.mean(dims, keepdim)`` (ONNX ``ReduceMean``):
    ConvNeXt's channels-first layer norm takes ``x.mean(1, keepdim=True)``. Linear:
    tangents are averaged, and cotangents spread evenly back."""

    linear = True

    def forward(self, x):
        return x.mean(axis=self._axes(x.shape[1:]), keepdims=self.keepdim), x.shape[1:]

    def jvp(self, cache, dx):
        return dx.mean(axis=tuple(a + 1 for a in self._axes(cache)), keepdims=self.keepdim)

    def vjp(self, cache, gy):
        n = int(np.prod([cache[a - 1] for a in self._axes(cache)]))
        g = self._spread(gy, cache, 2) / gy.dtype.type(n)
        return np.ascontiguousarray(np.broadcast_to(g, gy.shape[:2] + tuple(cache)))


class Sum(Reduction):
    """The sum over per-example axes, ``x.sum(dims, keepdim)`` (ONNX ``ReduceSum``).
    Linear: tangents are summed, and each input entry receives its sum's cotangent."""

    linear = True

    def forward(self, x):
        return self._reduce(x, self._axes(x.shape[1:]), 1), x.shape[1:]

    def jvp(self, cache, dx):
        return self._reduce(dx, self._axes(cache), 2)

    def vjp(self, cache, gy):
        g = self._spread(gy, cache, 2)
        return np.ascontiguousarray(np.broadcast_to(g, gy.shape[:2] + tuple(cache)))


class Amax(Reduction):
    r"""The maximum over per-example axes, ``x.amax(dims, keepdim)``; ONNX ``ReduceMax``;
    ``x.max(dim, keepdim).values`` with ``ties="first"``.

    :math:`dy = \sum_r w_r\,dx_r` with weights :math:`w` on the maxima of each reduced
    group. Kink convention (PyTorch's): with ``ties="split"`` (``amax``) the derivative is
    split evenly among tied maxima; with ``ties="first"`` (``max(dim)``) it goes whole to
    the first maximum in row-major order of the reduced axes. Piecewise linear: no second
    derivative (PyTorch's double backward also gives 0)."""

    def __init__(self, dims, keepdim=False, ties="split"):
        super().__init__(dims, keepdim)
        if ties not in ("split", "first"):
            raise ValueError(f"Amax: ties must be 'split' (torch.amax) or 'first' "
                             f"(torch.max(dim)), got {ties!r}")
        self.ties = ties

    def get_config(self):
        return {**super().get_config(), "ties": self.ties}

    def _weights(self, x, axes):
        top = x.max(axis=axes, keepdims=True)
        hit = x == top
        if self.ties == "split":
            with np.errstate(invalid="ignore", divide="ignore"):
                return top, hit / hit.sum(axis=axes, keepdims=True).astype(x.dtype)
        rest = tuple(a for a in range(x.ndim) if a not in axes)
        moved = np.transpose(x, rest + axes).reshape(tuple(x.shape[a] for a in rest) + (-1,))
        first = np.argmax(moved, axis=-1)[..., None]    # the first maximum (NaN counts)
        w = np.zeros(moved.shape, x.dtype)
        np.put_along_axis(w, first, 1, axis=-1)
        w = w.reshape(tuple(x.shape[a] for a in rest + axes))
        return top, np.transpose(w, np.argsort(rest + axes))

    def forward(self, x):
        axes = self._axes(x.shape[1:])
        top, w = self._weights(x, axes)
        y = top if self.keepdim else top.squeeze(axis=axes)
        return np.ascontiguousarray(y), w

    def jvp(self, cache, dx):
        return self._reduce(cache[:, None] * dx, self._axes(cache.shape[1:]), 2)

    def vjp(self, cache, gy):
        return cache[:, None] * self._spread(gy, cache.shape[1:], 2)

    def jvp_grad(self, cache, x, dx, gdy):
        """None: the weights are piecewise constant in ``x``."""
        return None, {}

    def kinks(self, x, tol):
        """Entries within ``tol`` of their group's maximum, besides one per group."""
        axes = self._axes(x.shape[1:])
        near = (x.max(axis=axes, keepdims=True) - x <= tol).sum(axis=axes)
        return int(np.maximum(near - 1, 0).sum())


class Var(Reduction):
    r"""The variance over per-example axes, ``x.var(dims, correction=c, keepdim)``
    (``unbiased=True`` is c = 1, ``False`` c = 0):
    :math:`y = k \sum_r (x_r - \bar x)^2`, :math:`k = 1/\max(n - c, 0)` for :math:`n`
    reduced entries (Inf where :math:`n \le c`, as in PyTorch).

    .. math:: dy = 2k \sum_r (x_r - \bar x)\,dx_r, \qquad g_x = 2k\,(x - \bar x)\,g_y

    and for the Jacobian penalty the gradient of :math:`\sum_d g_d\,dy_d` in :math:`x` is
    :math:`2k \sum_d g_d\,(dx_d - \overline{dx_d})`."""

    def __init__(self, dims, correction=1.0, keepdim=False):
        super().__init__(dims, keepdim)
        self.correction = float(correction)
        if not np.isfinite(self.correction):
            raise TypeError(f"{type(self).__name__}: correction must be a finite number, got "
                            f"{correction!r}")

    def get_config(self):
        return {"dims": list(self.dims), "correction": self.correction, "keepdim": self.keepdim}

    def _moments(self, x):
        """The centred input, ``k`` and the reduced axes."""
        axes = self._axes(x.shape[1:])
        n = int(np.prod([x.shape[a] for a in axes]))
        with np.errstate(divide="ignore"):
            k = x.dtype.type(1) / x.dtype.type(max(n - self.correction, 0))
        return x - x.mean(axis=axes, keepdims=True), k, axes

    def forward(self, x):
        c, k, axes = self._moments(x)
        return k * self._reduce(c * c, axes, 1), (c, k)

    def jvp(self, cache, dx):
        c, k = cache
        return 2 * k * self._reduce(c[:, None] * dx, self._axes(c.shape[1:]), 2)

    def vjp(self, cache, gy):
        c, k = cache
        return 2 * k * c[:, None] * self._spread(gy, c.shape[1:], 2)

    def _centred(self, cache, dx):
        """``dx`` minus its mean over the reduced axes."""
        axes = tuple(a + 1 for a in self._axes(cache[0].shape[1:]))
        return dx - dx.mean(axis=axes, keepdims=True)

    def jvp_grad(self, cache, x, dx, gdy):
        c, k = cache
        g = self._spread(gdy, c.shape[1:], 2)
        return 2 * k * (g * self._centred(cache, dx)).sum(axis=1), {}


class Std(Var):
    r"""The standard deviation, ``x.std(dims, correction=c, keepdim)``:
    :math:`s = \sqrt{v}` for the variance :math:`v` of :class:`Var`.

    .. math:: ds = \frac{k}{s} \sum_r (x_r - \bar x)\,dx_r, \qquad
              g_x = \frac{k}{s}\,(x - \bar x)\,g_s

    and for the Jacobian penalty, with :math:`u_d = \sum_r (x_r - \bar x)\,dx_{d,r}`:
    :math:`\frac ks \sum_d g_d (dx_d - \overline{dx_d}) - \frac{k^2}{s^3}(x - \bar x)
    \sum_d g_d u_d`. Where :math:`s = 0` the derivative is Inf or NaN, as in PyTorch."""

    def forward(self, x):
        c, k, axes = self._moments(x)
        s = np.sqrt(k * (c * c).sum(axis=axes, keepdims=True))
        y = s if self.keepdim else s.squeeze(axis=axes)
        with np.errstate(divide="ignore"):
            r = k / s                               # k/s, shaped to broadcast over x
        return np.ascontiguousarray(y), (c, k, r)

    def jvp(self, cache, dx):
        c, k, r = cache
        axes = tuple(a + 1 for a in self._axes(c.shape[1:]))
        with np.errstate(invalid="ignore"):
            return (r[:, None] * c[:, None] * dx).sum(axis=axes, keepdims=self.keepdim)

    def vjp(self, cache, gy):
        c, k, r = cache
        with np.errstate(invalid="ignore"):
            return r[:, None] * c[:, None] * self._spread(gy, c.shape[1:], 2)

    def jvp_grad(self, cache, x, dx, gdy):
        c, k, r = cache
        axes = tuple(a + 1 for a in self._axes(c.shape[1:]))
        g = self._spread(gdy, c.shape[1:], 2)
        u = (c[:, None] * dx).sum(axis=axes, keepdims=True)
        with np.errstate(invalid="ignore"):
            first = r * (g * self._centred(cache, dx)).sum(axis=1)
            return first - r ** 3 / k * c * (g * u).sum(axis=1), {}


# -- registry entries ------------------------------------------------------------------------
def _torch_dims(ctx, x, dims, what):
    """An ATen ``dim`` list as per-example axes; refuses none (every axis) and the batch."""
    nd = len(ctx.shape(x)) + 1
    dims = [dims] if isinstance(dims, int) else list(dims or ())
    axes = sorted({int(d) % nd for d in dims})
    if not axes or 0 in axes:
        ctx.fail(f"{what} over axes {dims or 'all'}, the batch axis among them",
                 f"take the {what} over per-example axes, x.{what}(dim=(1, ...))")
    return axes


def _sum_from_torch(ctx, a):
    x = a["self"]
    axes = _torch_dims(ctx, x, a.get("dim"), "sum")
    return ctx.emit(ctx.layer("Sum", dims=axes, keepdim=bool(a.get("keepdim", False))), x)


def _amax_from_torch(ctx, a):
    x = a["self"]
    axes = _torch_dims(ctx, x, a.get("dim"), "amax")
    return ctx.emit(ctx.layer("Amax", dims=axes, keepdim=bool(a.get("keepdim", False))), x)


def _max_from_torch(ctx, a):
    """``max.dim`` (values and indices; the indices may not be used); not ``max.other``
    (the elementwise maximum of two tensors)."""
    x = a["self"]
    if "dim" not in a:
        ctx.fail("torch.max(a, b), the elementwise maximum of two tensors",
                 "use F.relu(a - b) + b, or a maximum over axes, x.amax(dim)")
    axes = _torch_dims(ctx, x, a["dim"], "max")
    ctx.tuples.add(ctx.node.name)       # getitem 0 reads the values
    layer = ctx.layer("Amax", dims=axes, keepdim=bool(a.get("keepdim", False)), ties="first")
    return ctx.emit(layer, x)


def _var_from_torch(name):
    """``var``/``std`` (``.dim`` with ``unbiased``, ``.correction`` with ``correction``)."""
    def rule(ctx, a):
        x = a["self"]
        axes = _torch_dims(ctx, x, a.get("dim"), name.lower())
        if "correction" in a:
            c = 1.0 if a["correction"] is None else float(a["correction"])
        else:
            c = 1.0 if a.get("unbiased", True) else 0.0
        return ctx.emit(ctx.layer(name, dims=axes, correction=c,
                                  keepdim=bool(a.get("keepdim", False))), x)
    return rule


def _reduce_from_onnx(name, **extra):
    """ReduceSum / ReduceMax: axes as an input (ReduceSum from opset 13, ReduceMax from
    18) or an attribute (before)."""
    def rule(imp, node, a):
        x = node.input[0]
        nd = len(imp.shape(x)) + 1
        if len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in np.asarray(imp.const(node.input[1])).reshape(-1)]
        else:
            axes = [int(v) for v in a.get("axes", [])]
        if not axes and a.get("noop_with_empty_axes", 0):
            return exchange.onnx_output(imp, node, imp.value(x))
        axes = sorted({v % nd for v in axes}) if axes else list(range(nd))
        if 0 in axes:
            imp.fail(f"a reduction over axes {axes}, the batch axis among them", "axes",
                     "reduce per-example axes only")
        layer = imp.layer(name, "axes", dims=axes, keepdim=bool(a.get("keepdims", 1)), **extra)
        exchange.onnx_output(imp, node, imp.emit(layer, x))
    return rule


def _to_torch(method, *fields):
    """Export as ``x.<method>(dim=dims, keepdim=keepdim, <fields of the layer>)``."""
    def export(layer):
        def fn(x):
            kwargs = {k: getattr(layer, k) for k in fields}
            return getattr(x, method)(dim=layer.dims, keepdim=layer.keepdim, **kwargs)
        return exchange.torch_function_module(fn, type(layer).__name__)
    return export


def _amax_to_torch(layer):
    def fn(x):
        if layer.ties == "split":
            return x.amax(dim=layer.dims, keepdim=layer.keepdim)
        dims = sorted(d % x.ndim for d in layer.dims)
        if len(dims) == 1:
            return x.max(dim=dims[0], keepdim=layer.keepdim).values
        flat = x.movedim(dims, tuple(range(-len(dims), 0))).flatten(-len(dims))
        top = flat.max(dim=-1).values           # the values; ties do not change them
        for d in dims if layer.keepdim else ():
            top = top.unsqueeze(d)
        return top
    return exchange.torch_function_module(fn, "Amax")


_DIMS = (schema.int_list(minimum=-schema.MAX_AXES, maximum=schema.MAX_AXES, min_len=1,
                         nonzero=True, distinct=True), schema.REQUIRED)
_KEEPDIM = (schema.boolean, False)
_CORRECTION = (schema.ANY_REAL, 1.0)

register_layer(Mean, schema=schema.LayerSchema({"dims": _DIMS, "keepdim": _KEEPDIM}),
               onnx={"ReduceMean": _reduce_from_onnx("Mean")}, to_torch=_to_torch("mean"),
               example=Example({"dims": [1, 3], "keepdim": True}, (3, 4, 5)),
               absent={"torch": "aten.mean is the AvgPool2d layer's rule, which makes a "
                                "Mean for axes other than the spatial ones"})
register_layer(Sum, schema=schema.LayerSchema({"dims": _DIMS, "keepdim": _KEEPDIM}),
               torch={"sum": _sum_from_torch}, onnx={"ReduceSum": _reduce_from_onnx("Sum")},
               to_torch=_to_torch("sum"),
               example=Example({"dims": [1, 3], "keepdim": True}, (3, 4, 5)))
register_layer(Amax, schema=schema.LayerSchema({"dims": _DIMS, "keepdim": _KEEPDIM,
                                                "ties": (schema.choice("split", "first"),
                                                         "split")}),
               torch={"amax": _amax_from_torch, "max": _max_from_torch},
               onnx={"ReduceMax": _reduce_from_onnx("Amax")}, to_torch=_amax_to_torch,
               example=Example({"dims": [2, -1], "keepdim": False}, (3, 4, 5),
                               values="distinct"))
register_layer(Var, schema=schema.LayerSchema({"dims": _DIMS, "correction": _CORRECTION,
                                               "keepdim": _KEEPDIM}),
               torch={"var": _var_from_torch("Var")}, to_torch=_to_torch("var", "correction"),
               example=Example({"dims": [1], "correction": 1.0, "keepdim": True}, (3, 4, 5)),
               absent={"onnx": "torch.onnx writes var with ReduceMean, Sub, Mul and Div, "
                               "which import as the Mean, Add, Mul and Scale layers"})
register_layer(Std, schema=schema.LayerSchema({"dims": _DIMS, "correction": _CORRECTION,
                                               "keepdim": _KEEPDIM}),
               torch={"std": _var_from_torch("Std")}, to_torch=_to_torch("std", "correction"),
               example=Example({"dims": [1, 2], "correction": 0.0, "keepdim": False},
                               (3, 4, 5)),
               absent={"onnx": "torch.onnx writes std with ReduceMean, Sub, Mul, Div and "
                               "Sqrt, which import as the Mean, Add, Mul, Scale and Pow "
                               "layers"})
