"""Repetition of a tensor along its per-example axes (``x.repeat(1, *repeats)``, ONNX
``Tile``); a constant repeated over the batch (``cls_token.repeat(n, 1, 1)``) imports as a
:class:`Constant`."""
import numbers

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ..core.layer import Layer
from ..validation import shape_str


class Tile(Layer):
    r"""Each example repeated ``repeats[i]`` times along per-example axis ``i``
    (``np.tile``; PyTorch's ``x.repeat(1, *repeats)``). Linear: tangents are tiled, and a
    cotangent is summed over its copies,

    .. math:: g_x[c] = \sum_{k} g_y[k \cdot s + c]

    along every axis (``s`` the input's size).

    Parameters
    ----------
    repeats : sequence of int
        One count (>= 1) per per-example axis.
    """

    linear = True

    def __init__(self, repeats):
        try:
            reps = tuple(repeats)
        except TypeError:
            reps = None
        if not reps or any(not isinstance(r, numbers.Integral) or isinstance(r, bool) or r < 1
                           for r in reps):
            raise ValueError(f"Tile: repeats must be a sequence of ints >= 1, one per "
                             f"per-example axis, got {repeats!r}")
        self.repeats = tuple(int(r) for r in reps)

    def get_config(self):
        return {"repeats": list(self.repeats)}

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        if len(in_shape) != len(self.repeats):
            raise self._input_error(f"{len(self.repeats)} axes per example (one per repeat "
                                    f"count)", ("N",) + in_shape,
                                    "give one repeat count per axis of the example")
        return tuple(n * r for n, r in zip(in_shape, self.repeats))

    def forward(self, x):
        self.output_shape(x.shape[1:])
        return np.tile(x, (1,) + self.repeats), x.shape[1:]

    def jvp(self, cache, dx):
        return np.tile(dx, (1, 1) + self.repeats)

    def vjp(self, cache, gy):
        split = [v for r, n in zip(self.repeats, cache) for v in (r, n)]
        g = gy.reshape(gy.shape[:2] + tuple(split))
        return g.sum(axis=tuple(range(2, g.ndim, 2)))


# -- registry entry: imports -----------------------------------------------------------------
def _constant_over_batch(ctx, c, reps, like):
    """A constant repeated ``reps`` times (``reps[0]`` the batch size) as a Constant layer
    fed by the value ``like``; ``ctx.fail`` unless its batch axis has one entry."""
    c = np.asarray(c)
    if c.ndim > len(reps):
        ctx.fail(f"repeating a constant of shape {c.shape} by {len(reps)} counts",
                 fix="give one count per axis")
    c = c.reshape((1,) * (len(reps) - c.ndim) + c.shape)
    if c.shape[0] != 1 or any(not isinstance(r, numbers.Integral) for r in reps[1:]):
        ctx.fail(f"repeating a constant of shape {c.shape} by {reps}",
                 fix="repeat a constant with one entry along the batch axis by the batch size")
    value = np.tile(c, [1] + [int(r) for r in reps[1:]])[0]
    return exchange.emit_constant(ctx, like, value)


def _tile_value(ctx, x, reps):
    """Emit the Tile of the value ``x`` by ``reps`` (batch count first, which must be 1)."""
    nd = len(ctx.shape(x))
    if len(reps) != nd + 1 or reps[0] != 1:
        ctx.fail(f"repeating a value of per-example shape {shape_str(ctx.shape(x))} by "
                 f"{reps}", fix="repeat along per-example axes only: x.repeat(1, ...)")
    if all(r == 1 for r in reps):
        return ctx.value(x)
    return ctx.emit(ctx.layer("Tile", repeats=[int(r) for r in reps[1:]]), x)


def _from_torch(ctx, a):
    x, reps = a["self"], list(a["repeats"])
    c = ctx.constant(x)
    if c is not None:           # a class token repeated over the batch
        return _constant_over_batch(ctx, c, reps, "input")
    return _tile_value(ctx, x, [r if isinstance(r, numbers.Integral) else None for r in reps])


def _from_onnx(imp, node, a):
    x, target = node.input[0], node.input[1]
    reps = list(imp.shapes[target]) if target in imp.shapes else \
        [int(v) for v in np.asarray(imp.const(target)).reshape(-1)]
    if x in imp.consts:
        if reps[:1] != [exchange.BATCH]:
            imp.fail(f"repeating a constant by {reps}",
                     fix="repeat constants by the batch size along the batch axis only")
        source = next(k for k, v in imp.values.items() if v == "input")
        out = _constant_over_batch(imp, imp.consts[x], [1] + reps[1:], source)
    else:
        out = _tile_value(imp, x, reps)
    exchange.onnx_output(imp, node, out)


def _to_torch(layer):
    return exchange.torch_function_module(lambda x: x.repeat(1, *layer.repeats), "Tile")


register_layer(Tile, schema=schema.LayerSchema(
                   {"repeats": (schema.int_list(minimum=1, maximum=schema.MAX_EXTENT,
                                                min_len=1), schema.REQUIRED)}),
               torch={"repeat": _from_torch}, onnx={"Tile": _from_onnx},
               to_torch=_to_torch, example=Example({"repeats": [2, 1, 3]}, (2, 3, 2)))
