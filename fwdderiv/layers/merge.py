"""Layers with several inputs, the joints of a :class:`fwdderiv.Graph`: residual
addition, concatenation and the elementwise product."""
import numbers

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ..core import local
from ..core.layer import Layer
from ..validation import shape_str


def _dim(dim, ndim, owner):
    """A PyTorch ``dim`` (the batch axis is 0) -> the per-example axis it names."""
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{owner}: dim must be an int, got {dim!r}")
    d = dim + ndim + 1 if dim < 0 else dim
    if not 1 <= d <= ndim:
        raise ValueError(f"{owner}: dim={dim} is not a per-example axis of an input with "
                         f"{ndim + 1} axes (batch included); use 1..{ndim} or -1..-{ndim}")
    return d - 1


class Add(Layer):
    r"""The sum of its inputs, :math:`y = \sum_i x_i` (a residual connection).

    All inputs have the same shape (no broadcasting). Linear: :math:`dy = \sum_i dx_i`,
    and every input receives the output's cotangent.
    """

    linear = True
    multi_input = True

    def output_shape(self, *in_shapes):
        shapes = [tuple(s) for s in in_shapes]
        if len(shapes) < 2 or any(s != shapes[0] for s in shapes):
            raise ValueError(
                f"Add() expected two or more inputs of one shape, got "
                f"{', '.join(shape_str(('N',) + s) for s in shapes)}; make the branches "
                f"agree (a 1x1 conv or a channel pad on the shortcut)")
        return shapes[0]

    def forward(self, *xs):
        self.output_shape(*(x.shape[1:] for x in xs))
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        return y, len(xs)

    def jvp(self, cache, *dxs):
        dy = dxs[0] + dxs[1]
        for dx in dxs[2:]:
            dy = dy + dx
        return dy

    def vjp(self, cache, gy):
        return (gy,) * cache

    def window_rule(self, *windows):
        """Windows of one stride add inside their union."""
        return local.union(windows)

    def window_jvp(self, cache, Ts, windows, nxt, n):
        N = max(T.shape[0] for T in Ts)
        out = local.embed(Ts[0], windows[0], nxt, N).copy()
        for T, w in zip(Ts[1:], windows[1:]):
            out[:, :, :, :, nxt.offset[0] - w.offset[0]:nxt.offset[0] - w.offset[0] + w.size[0],
                nxt.offset[1] - w.offset[1]:nxt.offset[1] - w.offset[1] + w.size[1]] += T
        return out


class Mul(Layer):
    r"""The elementwise product of two inputs, :math:`y = a \odot b`, broadcast as NumPy
    and PyTorch do over the per-example axes (a squeeze-and-excitation block multiplies
    ``(C, H, W)`` by ``(C, 1, 1)``).

    .. math:: dy = da \odot b + a \odot db, \qquad g_a = \Sigma(g_y \odot b),\;
              g_b = \Sigma(g_y \odot a)

    where :math:`\Sigma` sums over the axes along which that input was broadcast.
    """

    multi_input = True

    def output_shape(self, *in_shapes):
        shapes = [tuple(s) for s in in_shapes]
        try:
            if len(shapes) != 2:
                raise ValueError
            return tuple(int(d) for d in np.broadcast_shapes(*shapes))
        except ValueError:
            raise ValueError(f"Mul() expected two inputs whose shapes broadcast, got "
                             f"{', '.join(shape_str(('N',) + s) for s in shapes)}") from None

    def forward(self, a, b):
        out = self.output_shape(a.shape[1:], b.shape[1:])
        a_full, b_full = _full(a, 1, len(out)), _full(b, 1, len(out))
        return a_full * b_full, (a_full, b_full, a.shape[1:], b.shape[1:])

    def jvp(self, cache, da, db):
        a, b, _, _ = cache
        nd = a.ndim - 1
        return _full(da, 2, nd) * b[:, None] + a[:, None] * _full(db, 2, nd)

    def vjp(self, cache, gy):
        a, b, sa, sb = cache
        return _reduce(gy * b[:, None], 2, sa), _reduce(gy * a[:, None], 2, sb)

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum_d \langle g_d, da_d \odot b + a \odot db_d\rangle`:
        :math:`\Sigma \sum_d g_d \odot db_d` in ``a`` and :math:`\Sigma \sum_d g_d \odot
        da_d` in ``b``."""
        a, b, sa, sb = cache
        nd = a.ndim - 1
        da, db = _full(dx[0], 2, nd), _full(dx[1], 2, nd)
        return (_reduce((gdy * db).sum(axis=1), 1, sa),
                _reduce((gdy * da).sum(axis=1), 1, sb)), {}


def _full(v, lead, nd):
    """``v`` with ones inserted after its ``lead`` leading axes, to ``nd`` example axes."""
    return v.reshape(v.shape[:lead] + (1,) * (nd - (v.ndim - lead)) + v.shape[lead:])


def _reduce(g, lead, shape):
    """``g`` summed over the axes along which an input of example shape ``shape`` was
    broadcast, in that shape."""
    full = (1,) * (g.ndim - lead - len(shape)) + tuple(shape)
    axes = tuple(lead + i for i, (n, m) in enumerate(zip(full, g.shape[lead:])) if n == 1 != m)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(g.shape[:lead] + tuple(shape))


class Concat(Layer):
    """Concatenation of the inputs along ``dim`` (``torch.cat``; the batch axis is 0, so
    ``dim=1`` joins channels). Linear: tangents are concatenated, cotangents split."""

    linear = True
    multi_input = True

    def __init__(self, dim=1):
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
            raise TypeError(f"Concat: dim must be an int, got {dim!r}")
        if dim == 0:
            raise ValueError("Concat: dim=0 is the batch axis; a network maps each example "
                             "on its own, so concatenate along a per-example axis (dim >= 1)")
        self.dim = int(dim)

    def get_config(self):
        return {"dim": self.dim}

    def output_shape(self, *in_shapes):
        shapes = [tuple(s) for s in in_shapes]
        if not shapes:
            raise ValueError("Concat expected one or more inputs, got none")
        d = _dim(self.dim, len(shapes[0]), repr(self))
        rest = [s[:d] + s[d + 1:] for s in shapes]
        if any(len(s) != len(shapes[0]) for s in shapes) or any(r != rest[0] for r in rest):
            raise ValueError(
                f"{self!r} expected inputs that agree on every axis but dim={self.dim}, got "
                f"{', '.join(shape_str(('N',) + s) for s in shapes)}")
        return shapes[0][:d] + (sum(s[d] for s in shapes),) + shapes[0][d + 1:]

    def forward(self, *xs):
        self.output_shape(*(x.shape[1:] for x in xs))
        d = _dim(self.dim, xs[0].ndim - 1, repr(self))
        return np.concatenate(xs, axis=d + 1), (d, [x.shape[d + 1] for x in xs])

    def jvp(self, cache, *dxs):
        d, _ = cache
        n = max(t.shape[0] for t in dxs)
        dxs = [np.broadcast_to(t, (n,) + t.shape[1:]) for t in dxs]
        return np.concatenate(dxs, axis=d + 2)

    def vjp(self, cache, gy):
        d, sizes = cache
        return tuple(np.split(gy, np.cumsum(sizes)[:-1], axis=d + 2))

    def window_rule(self, *windows):
        """Channels of images (dim 1 of (N, C, H, W)) join inside the union window."""
        return local.union(windows) if self.dim in (1, -3) else None

    def window_jvp(self, cache, Ts, windows, nxt, n):
        N = max(T.shape[0] for T in Ts)
        return np.concatenate([local.embed(T, w, nxt, N) for T, w in zip(Ts, windows)],
                              axis=-1)


# -- registry entries ------------------------------------------------------------------------
def _add_from_torch(sign):
    """``self + sign * alpha * other``; a number on either side makes a Shift."""
    def rule(ctx, a):
        x, y, factor = a["self"], a["other"], sign * float(a.get("alpha", 1))
        cx, cy = exchange.torch_scalar(ctx, x), exchange.torch_scalar(ctx, y)
        if cy is not None and cx is None:                       # x + c, x - c
            return ctx.emit(ctx.layer("Shift", value=factor * cy), x)
        if cx is not None and cy is None:                       # c + y, c - y
            if factor != 1:
                y = ctx.emit(ctx.layer("Scale", factor=factor), y)
            return ctx.emit(ctx.layer("Shift", value=cx), y)
        tx, ty = ctx.constant(x), ctx.constant(y)
        if ty is not None:                                      # x + c, c a tensor
            c = exchange.per_example(ctx, factor * ty, ctx.shape(x))
            full = np.broadcast_to(c, ctx.shape(x)).copy()
            return ctx.emit(ctx.layer("Add"), [x, exchange.emit_constant(ctx, x, full)])
        if tx is not None:                                      # c + y, c - y
            y = ctx.emit(ctx.layer("Scale", factor=factor), y) if factor != 1 else y
            full = np.broadcast_to(exchange.per_example(ctx, tx, ctx.shape(y)),
                                   ctx.shape(y)).copy()
            return ctx.emit(ctx.layer("Add"), [exchange.emit_constant(ctx, y, full), y])
        sx, sy, out = ctx.shape(x), ctx.shape(y), ctx.out_shape()
        if sx != out:                               # broadcasting: expand the smaller
            x = ctx.emit(ctx.layer("Expand", shape=list(out)), x)
        if sy != out:
            y = ctx.emit(ctx.layer("Expand", shape=list(out)), y)
        if factor != 1:
            y = ctx.emit(ctx.layer("Scale", factor=factor), y)
        return ctx.emit(ctx.layer("Add"), [x, y])
    return rule


def _rsub_from_torch(ctx, a):
    """``other - alpha * self``."""
    return _add_from_torch(-1)(ctx, {"self": a["other"], "other": a["self"],
                                     "alpha": a.get("alpha", 1)})


def _mul_from_torch(ctx, a):
    x, y = a["self"], a["other"]
    for u, v in ((x, y), (y, x)):
        c = exchange.torch_scalar(ctx, v)
        if c is not None:
            return ctx.emit(ctx.layer("Scale", factor=c), u)
    for u, v in ((x, y), (y, x)):
        c = ctx.constant(v)
        if c is not None:                                       # x * c, c a tensor
            c = exchange.per_example(ctx, c, ctx.shape(u))
            return ctx.emit(ctx.layer("Mul"), [u, exchange.emit_constant(ctx, u, c)])
    return ctx.emit(ctx.layer("Mul"), [x, y])


def _cat_from_torch(ctx, a):
    xs = list(a["tensors"])
    dim = exchange.torch_dim(ctx, xs[0], a["dim"], "a concatenation")
    return ctx.emit(ctx.layer("Concat", dim=dim), xs)


def _bias_free_producer(imp, x, c):
    """The bias-free Linear/Conv2d whose output ``x`` is, read only here, that the
    constant ``c`` can become the bias of; None otherwise."""
    src = imp.values.get(x)
    entry = next((e for e in imp.nodes if e[0] == src), None)
    layer = entry[1] if entry else None
    if layer is None or sum(x in n.input for n in imp.graph.node) != 1 or \
            getattr(layer, "bias", 0) is not None or not hasattr(layer, "weight"):
        return None
    out = layer.weight.shape[0]
    if c.size != out or (c.ndim > 1 and c.shape[-1] != c.size and c.shape[-c.ndim] != 1
                         and type(layer).__name__ == "Linear"):
        return None
    return layer


def _add_constant(imp, node, v, c):
    """``v + c`` for a constant tensor ``c``: the bias of the Gemm/MatMul/Conv before it
    (as exporters split them), else a Constant operand of an Add."""
    layer = _bias_free_producer(imp, v, c)
    if layer is not None:
        layer.bias = c.reshape(layer.weight.shape[0]).astype(layer.weight.dtype)
        if hasattr(layer, "param_names"):
            layer.param_names = ("weight", "bias")
        return exchange.onnx_output(imp, node, imp.values[v])
    shape = imp.shape(v)
    full = np.broadcast_to(exchange.per_example(imp, c, shape), shape).copy()
    out = imp.emit(imp.layer("Add"), [v, exchange.emit_constant(imp, v, full)])
    exchange.onnx_output(imp, node, out)


def _two_values(imp, node, kind, x, y):
    if kind == "Div":                                           # x / y = x * y^-1
        y = imp.emit(imp.layer("Pow", exponent=-1.0), y, node.output[0] + "_inv")
        kind = "Mul"
    if kind != "Mul" and imp.shape(x) != imp.shape(y):          # broadcasting
        try:
            out = [int(d) for d in np.broadcast_shapes(imp.shape(x), imp.shape(y))]
        except ValueError:
            imp.fail(f"adding shapes {imp.shape(x)} and {imp.shape(y)}, which do not "
                     "broadcast")
        x, y = (v if list(imp.shape(v)) == out else
                imp.emit(imp.layer("Expand", shape=out), v, node.output[0] + "_expand")
                for v in (x, y))
    if kind == "Sub":
        y = imp.emit(imp.layer("Scale", factor=-1.0), y, node.output[0] + "_neg")
    joint = imp.layer("Mul") if kind == "Mul" else imp.layer("Add")
    exchange.onnx_output(imp, node, imp.emit(joint, [x, y]))


def _binary_from_onnx(kind):
    """ONNX Add, Sub, Mul or Div on values (shape arithmetic is the importer's own)."""
    def rule(imp, node, a):
        x, y = node.input[0], node.input[1]
        xv, yv = x in imp.values, y in imp.values
        if xv and yv:
            return _two_values(imp, node, kind, x, y)
        if not (xv or yv):
            imp.fail("an operation between constants (fold constants before importing)")
        v, c = (x, y) if xv else (y, x)
        s = exchange.onnx_scalar(imp, c)
        if kind == "Mul" and s is not None:
            return exchange.onnx_output(imp, node, imp.emit(imp.layer("Scale", factor=s), v))
        if kind == "Div" and xv and s not in (None, 0.0):
            layer = imp.layer("Scale", factor=1.0 / s)
            return exchange.onnx_output(imp, node, imp.emit(layer, v))
        if kind in ("Add", "Sub") and s is not None:          # v + s, v - s, s - v
            if kind == "Sub" and yv:
                v = imp.emit(imp.layer("Scale", factor=-1.0), v, node.output[0] + "_neg")
            value = -s if kind == "Sub" and xv else s
            return exchange.onnx_output(imp, node, imp.emit(imp.layer("Shift", value=value), v))
        return _constant_tensor(imp, node, kind, v, c, xv)
    return rule


def _constant_tensor(imp, node, kind, v, c, v_first):
    """``kind`` between the value ``v`` and the constant tensor ``c``."""
    t = imp.consts[c]
    if kind == "Sub" and not v_first:                       # c - v = c + (-v)
        v = imp.emit(imp.layer("Scale", factor=-1.0), v, node.output[0] + "_neg")
    if kind in ("Add", "Sub"):
        return _add_constant(imp, node, v, -t if kind == "Sub" and v_first else t)
    if kind == "Div" and (not v_first or np.any(t == 0)):
        imp.fail(f"a division {'of' if not v_first else 'by'} the constant {c!r}",
                 fix="divide by nonzero constants only")
    factor = exchange.per_example(imp, 1.0 / t if kind == "Div" else t, imp.shape(v))
    out = imp.emit(imp.layer("Mul"), [v, exchange.emit_constant(imp, v, factor)])
    exchange.onnx_output(imp, node, out)


def _concat_from_onnx(imp, node, a):
    nd = len(imp.shape(node.input[0]))
    axis = int(a["axis"]) % (nd + 1)
    if axis == 0:
        imp.fail("concatenation along the batch axis", "axis")
    exchange.onnx_output(imp, node, imp.emit(imp.layer("Concat", dim=axis), list(node.input)))


def _concat_dim(v, field):
    if not schema.is_int(v) or v == 0 or abs(v) > schema.MAX_AXES:
        raise schema.SchemaError(f"field {field!r} must be a nonzero int (a per-example axis; 0 "
                                 f"is the batch axis) of magnitude <= {schema.MAX_AXES}, got "
                                 f"{schema.describe(v)}")
    return int(v)


def _sum(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _concat_to_torch(layer):
    import torch
    return exchange.torch_function_module(lambda *xs: torch.cat(xs, layer.dim), "Concat")


register_layer(Add, schema=schema.LayerSchema({}),
               torch={"add": _add_from_torch(1), "add_": _add_from_torch(1),
                      "sub": _add_from_torch(-1), "sub_": _add_from_torch(-1),
                      "rsub": _rsub_from_torch},
               onnx={"Add": _binary_from_onnx("Add"), "Sub": _binary_from_onnx("Sub")},
               to_torch=lambda layer: exchange.torch_function_module(_sum, "Add"),
               example=Example({}, (2, 3), inputs=3))
register_layer(Mul, schema=schema.LayerSchema({}),
               torch={"mul": _mul_from_torch, "mul_": _mul_from_torch},
               onnx={"Mul": _binary_from_onnx("Mul"), "Div": _binary_from_onnx("Div")},
               to_torch=lambda layer: exchange.torch_function_module(lambda a, b: a * b, "Mul"),
               example=Example({}, (2, 3), inputs=2))
register_layer(Concat, schema=schema.LayerSchema({"dim": (_concat_dim, 1)}),
               torch={"cat": _cat_from_torch, "concat": _cat_from_torch},
               onnx={"Concat": _concat_from_onnx}, to_torch=_concat_to_torch,
               example=Example({"dim": 2}, (2, 3), inputs=2))
