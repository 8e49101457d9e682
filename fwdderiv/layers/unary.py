"""Entry-by-entry maps that tensor code writes as functions rather than modules:
``torch.exp``, ``torch.log``, ``x.abs()``, ``x.clamp(min, max)`` (either bound alone), and
``torch.where(mask, a, b)`` with a constant mask. ``-x`` (``torch.neg``, ONNX ``Neg``) is a
:class:`fwdderiv.Scale` of -1.

Derivatives at kinks follow PyTorch: ``abs'(0) = sign(0) = 0``; ``clamp`` passes the whole
derivative where ``min <= x <= max``, bounds included (unlike ``Hardtanh``, whose slope is
0 at its bounds); ``where`` treats its mask as a constant.
"""
import numpy as np

from .. import schema
from ..core.elementwise import Elementwise
from ..core.layer import Layer
from ..registry import Example, register_layer
from ..validation import shape_str
from . import exchange
from ._util import finite_real


class Exp(Elementwise):
    r""":math:`y = e^x`, :math:`y' = y'' = e^x` (``torch.exp``; ONNX ``Exp``). Smooth."""

    def value_and_slope(self, x):
        with np.errstate(over="ignore"):
            y = np.exp(x)
        return y, y

    def second_slope(self, x):
        with np.errstate(over="ignore"):
            return np.exp(x)


class Log(Elementwise):
    r""":math:`y = \log x`, :math:`y' = 1/x`, :math:`y'' = -1/x^2` (``torch.log``; ONNX
    ``Log``). Outside its domain the value is NaN (x < 0) or -Inf (x = 0), as in PyTorch."""

    def value_and_slope(self, x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(x), 1 / x

    def second_slope(self, x):
        with np.errstate(divide="ignore"):
            return -1 / (x * x)


class Abs(Elementwise):
    r""":math:`y = |x|`, :math:`y' = \mathrm{sign}(x)` (``x.abs()``; ONNX ``Abs``).

    Kink convention (PyTorch's): abs'(0) = sign(0) = 0; a NaN input passes NaN."""

    kink_points = (0.0,)

    def value_and_slope(self, x):
        return np.abs(x), np.sign(x)

    def second_slope(self, x):
        """Zero: piecewise linear (PyTorch's double backward also gives 0)."""
        return np.zeros_like(x)


class Clamp(Elementwise):
    r""":math:`y = \min(\max(x, a), b)` with either bound optional (None): ``x.clamp(min,
    max)``, ``clamp_min``, ``clamp_max``, ``torch.clip``; ONNX ``Clip`` with one bound.

    Kink convention (PyTorch's ``clamp``): the slope is ``1 if a <= x <= b else 0``, so 1
    at the bounds themselves (``Hardtanh``, PyTorch's other clipping, has 0 there)."""

    def __init__(self, min=None, max=None):
        lo = None if min is None else finite_real(min, "min", "Clamp")
        hi = None if max is None else finite_real(max, "max", "Clamp")
        if lo is None and hi is None:
            raise ValueError("Clamp: give min, max or both; with neither it is the identity")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"Clamp: min must not exceed max, got min={min!r}, max={max!r}")
        self.min, self.max = lo, hi
        self.kink_points = tuple(b for b in (lo, hi) if b is not None)

    def get_config(self):
        return {"min": self.min, "max": self.max}

    def value_and_slope(self, x):
        t = x.dtype.type
        y, inside = x, np.ones(x.shape, bool)
        if self.min is not None:
            y, inside = np.where(x < t(self.min), t(self.min), y), inside & (x >= t(self.min))
        if self.max is not None:
            y, inside = np.where(x > t(self.max), t(self.max), y), inside & (x <= t(self.max))
        return y.astype(x.dtype, copy=False), inside.astype(x.dtype)

    def second_slope(self, x):
        """Zero: piecewise linear (PyTorch's double backward also gives 0)."""
        return np.zeros_like(x)


class Where(Layer):
    r"""Selection by a constant mask, :math:`y = \mathrm{where}(m, a, b)`:
    ``torch.where(mask, a, b)`` (ONNX ``Where``) with a mask that does not depend on the
    input (a buffer, a constant). ``a`` and ``b`` are the layer's two inputs; a number or
    a constant tensor among them is a :class:`fwdderiv.Constant` input. The mask and both
    inputs broadcast as in PyTorch.

    Linear: :math:`dy = \mathrm{where}(m, da, db)`; the cotangent goes to ``a`` where the
    mask holds and to ``b`` elsewhere (summed over the axes an input was broadcast along).
    PyTorch differentiates ``where`` the same way, with the mask held constant.

    Parameters
    ----------
    mask_shape : sequence of int
        The per-example shape of the mask; ``mask`` (a buffer, saved with the model)
        holds it as floats, nonzero meaning true.
    """

    linear = True
    multi_input = True
    buffer_names = ("mask",)

    def __init__(self, mask_shape):
        try:
            self.mask_shape = tuple(int(s) for s in mask_shape)
        except (TypeError, ValueError):
            raise TypeError(f"Where: mask_shape must be a sequence of ints (per example), got "
                            f"{mask_shape!r}") from None
        if any(s < 0 for s in self.mask_shape):
            raise ValueError(f"Where: mask_shape must hold sizes >= 0, got "
                             f"{list(self.mask_shape)}")
        self.mask = np.ones(self.mask_shape, np.float32)

    def get_config(self):
        return {"mask_shape": list(self.mask_shape)}

    def output_shape(self, *in_shapes):
        shapes = [tuple(s) for s in in_shapes]
        try:
            if len(shapes) != 2:
                raise ValueError
            return tuple(int(d) for d in np.broadcast_shapes(self.mask_shape, *shapes))
        except ValueError:
            raise ValueError(f"{self!r} expected two inputs whose shapes broadcast with the "
                             f"mask's {shape_str(self.mask_shape)}, got "
                             f"{', '.join(shape_str(('N',) + s) for s in shapes)}") from None

    def _mask(self, nd):
        m = np.asarray(self.mask).reshape(self.mask_shape) != 0
        return m.reshape((1,) * (nd - m.ndim) + m.shape)

    def forward(self, a, b):
        out = self.output_shape(a.shape[1:], b.shape[1:])
        m = self._mask(len(out))
        y = np.where(m, _full(a, 1, len(out)), _full(b, 1, len(out)))
        return y, (m, a.shape[1:], b.shape[1:], out)

    def jvp(self, cache, da, db):
        m, _, _, out = cache
        nd = len(out)
        dy = np.where(m, _full(da, 2, nd), _full(db, 2, nd))
        n = max(da.shape[0], db.shape[0])
        return np.ascontiguousarray(np.broadcast_to(dy, (n, dy.shape[1]) + out))

    def vjp(self, cache, gy):
        m, sa, sb, _ = cache
        zero = gy.dtype.type(0)
        return _reduce(np.where(m, gy, zero), sa), _reduce(np.where(m, zero, gy), sb)


def _full(v, lead, nd):
    """``v`` with ones inserted after its ``lead`` leading axes, to ``nd`` example axes."""
    return v.reshape(v.shape[:lead] + (1,) * (nd - (v.ndim - lead)) + v.shape[lead:])


def _reduce(g, shape):
    """Cotangent ``g`` ``(N, K, *out)`` summed over the axes along which an input of
    per-example ``shape`` was broadcast, in that shape."""
    full = (1,) * (g.ndim - 2 - len(shape)) + tuple(shape)
    axes = tuple(2 + i for i, (n, m) in enumerate(zip(full, g.shape[2:])) if n == 1 != m)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return np.ascontiguousarray(g.reshape(g.shape[:2] + tuple(shape)))


# -- registry entries ------------------------------------------------------------------------
def _clamp_from_torch(lo_arg, hi_arg):
    """``clamp(self, min, max)``, ``clamp_min(self, min)``, ``clamp_max(self, max)``."""
    def rule(ctx, a):
        x = exchange.torch_input(a)
        bounds = []
        for arg in (lo_arg, hi_arg):
            v = a.get(arg) if arg else None
            b = None if v is None else exchange.torch_scalar(ctx, v)
            if v is not None and b is None:
                ctx.fail(f"a clamp bound {v!r} that is not a number",
                         "clamp to numbers (or one-element constant tensors)")
            bounds.append(b)
        if bounds == [None, None]:
            return ctx.value(x)
        return ctx.emit(ctx.layer("Clamp", min=bounds[0], max=bounds[1]), x)
    return rule


def _where_operand(ctx, v, out):
    """A value's name, or a Constant emitted for a number or constant tensor ``v``; a
    constant is broadcast to the per-example output shape ``out``."""
    if hasattr(v, "name") and v.name in ctx.values:
        return v
    c = exchange.torch_scalar(ctx, v) if not hasattr(v, "name") else None
    c = ctx.constant(v) if c is None else np.asarray(c)
    if c is None:
        ctx.fail(f"an operand {v!r} that is neither a value nor a constant",
                 "select between values of the network and constants")
    return np.broadcast_to(exchange.per_example(ctx, c, out), out).copy()


def _where_from_torch(ctx, a):
    """``where(condition, self, other)`` (``where.self``, ``.ScalarSelf``, ``.ScalarOther``)."""
    if "self" not in a:
        ctx.fail("torch.where(condition) (the indices of true entries)",
                 "use the three-argument torch.where(mask, a, b)")
    cond = ctx.constant(a["condition"])
    if cond is None:
        ctx.fail("a mask computed from the input",
                 "use a constant mask (a buffer); a selection by the input's own values, "
                 "such as torch.where(x > 0, x, 0), is F.relu(x) or x.clamp(min=0)")
    out = ctx.out_shape()
    mask = exchange.per_example(ctx, cond, out)
    ops = [_where_operand(ctx, v, out) for v in (a["self"], a["other"])]
    anchor = next(v for v in ops if hasattr(v, "name"))
    ops = [v if hasattr(v, "name") else exchange.emit_constant(ctx, anchor, v) for v in ops]
    return ctx.emit(_where_layer(ctx, mask), ops)


def _where_layer(ctx, mask):
    layer = ctx.layer("Where", mask_shape=list(mask.shape))
    layer.mask = np.ascontiguousarray(mask != 0, dtype=np.float32)
    return layer


def _where_from_onnx(imp, node, a):
    cond, ops = node.input[0], list(node.input[1:3])
    if cond in imp.values or imp.consts.get(cond) is None:
        imp.fail("a condition computed from the input", fix="use a constant mask; a "
                 "selection by the input's own values is Relu or Clip")
    values = [v for v in ops if v in imp.values]
    rank = max(len(imp.shape(v)) for v in values)
    consts = {}
    for v in [cond] + [v for v in ops if v not in imp.values]:
        c = np.asarray(imp.consts[v])
        if c.ndim == rank + 1 and c.shape[0] == 1:
            c = c[0]
        elif c.ndim > rank:
            imp.fail(f"a constant {v!r} of shape {c.shape} with values of per-example rank "
                     f"{rank}", fix="use constants that broadcast over one example")
        consts[v] = c
    out = tuple(int(d) for d in np.broadcast_shapes(*[imp.shape(v) for v in values],
                                                    *[c.shape for c in consts.values()]))
    names = []
    for v in ops:
        if v in imp.values:
            names.append(v)
        else:
            full = np.broadcast_to(consts[v], out).copy()
            names.append(exchange.emit_constant(imp, values[0], full))
    layer = imp.layer("Where", mask_shape=list(consts[cond].shape))
    layer.mask = np.ascontiguousarray(consts[cond] != 0, dtype=np.float32)
    exchange.onnx_output(imp, node, imp.emit(layer, names))


def _where_to_torch(layer):
    import torch
    mask = torch.from_numpy(np.asarray(layer.mask).reshape(layer.mask_shape) != 0)
    return exchange.torch_function_module(lambda a, b: torch.where(mask, a, b), "Where")


def _clamp_to_torch(layer):
    return exchange.torch_function_module(lambda x: x.clamp(layer.min, layer.max), "Clamp")


def _function_to_torch(fn):
    def export(layer):
        import torch
        return exchange.torch_function_module(getattr(torch, fn), type(layer).__name__)
    return export


def _clamp_relations(c):
    if c["min"] is None and c["max"] is None:
        raise schema.SchemaError("fields 'min' and 'max' are both null; give one or both")
    if c["min"] is not None and c["max"] is not None and c["min"] > c["max"]:
        raise schema.SchemaError(f"field 'min' ({c['min']}) exceeds field 'max' ({c['max']})")


_IMAGE = (2, 3, 4)

for _cls, _op, _onnx, _values in ((Exp, "exp", "Exp", "normal"), (Log, "log", "Log", "positive"),
                                  (Abs, "abs", "Abs", "normal")):
    register_layer(_cls, schema=schema.LayerSchema({}),
                   torch={_op: exchange.torch_elementwise(_cls.__name__),
                          _op + "_": exchange.torch_elementwise(_cls.__name__)},
                   onnx={_onnx: exchange.onnx_elementwise(_cls.__name__)},
                   to_torch=_function_to_torch(_op), example=Example({}, _IMAGE, values=_values))

_OPTIONAL_REAL = schema.optional(schema.ANY_REAL)
register_layer(Clamp, schema=schema.LayerSchema({"min": (_OPTIONAL_REAL, None),
                                                 "max": (_OPTIONAL_REAL, None)},
                                                relations=_clamp_relations),
               torch={**{op: _clamp_from_torch("min", "max")
                         for op in ("clamp", "clamp_", "clip", "clip_")},
                      "clamp_min": _clamp_from_torch("min", None),
                      "clamp_min_": _clamp_from_torch("min", None),
                      "clamp_max": _clamp_from_torch(None, "max"),
                      "clamp_max_": _clamp_from_torch(None, "max")},
               to_torch=_clamp_to_torch, example=Example({"min": -0.5}, _IMAGE),
               absent={"onnx": "ONNX Clip is the Hardtanh layer's rule, which makes a Clamp "
                               "for a clip with one bound"})
register_layer(Where, schema=schema.LayerSchema(
                   {"mask_shape": (schema.int_list(minimum=0, maximum=2**40), schema.REQUIRED)},
                   lambda c: {"mask": tuple(c["mask_shape"])}),
               torch={"where": _where_from_torch}, onnx={"Where": _where_from_onnx},
               to_torch=_where_to_torch, example=Example({"mask_shape": [1, 3]}, (2, 3),
                                                         inputs=2))
