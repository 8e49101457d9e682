"""Gathers with constant indices: ``Gather`` picks whole slices along one axis
(``x[:, idx]``, ``torch.index_select``, ONNX ``Gather`` on values, the patches that
``torch.onnx`` gathers for ``nn.Unfold``), ``GatherElements`` one entry per output entry
(``torch.gather``, ONNX ``GatherElements``).

Both are linear maps that read entries of the input by a constant index: with ``f`` the
flat (row-major, per-example) input position each output entry reads,

.. math:: y_n[o] = x_n[f(o)], \\qquad dy_n[o] = dx_n[f(o)], \\qquad
          g_{x,n}[i] = \\sum_{o:\\,f(o) = i} g_{y,n}[o],

so the tangent is gathered like the value and the cotangent scattered back, adding where
several outputs read one input (a scatter-add, :mod:`fwdderiv.kernels.gather`).
Indices computed from the input are not constants: such models are refused at import.
"""
import numbers

import numpy as np

from .. import schema
from ..core.layer import Layer
from ..kernels.gather import scatter_add
from ..registry import Example, register_layer
from ..validation import shape_str
from . import exchange

#: Largest number of indices a layer holds (they are saved in the architecture's JSON).
MAX_INDICES = 1 << 16


def _index_array(v, owner, field):
    """A nested list (or array) of ints as an int64 array; TypeError otherwise."""
    a = np.asarray(v)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise TypeError(f"{owner}: {field} must be an int or a nested list of ints (a "
                        f"constant index array), got {v!r:.80}")
    if a.size > MAX_INDICES:
        raise ValueError(f"{owner}: {field} holds {a.size} indices, more than "
                         f"{MAX_INDICES}; gather in several steps")
    return a.astype(np.int64)


def _dim(dim, owner):
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or dim == 0:
        raise ValueError(f"{owner}: dim must be a nonzero int (a per-example axis; 0 is the "
                         f"batch axis), got {dim!r}")
    return int(dim)


class _FlatGather(Layer):
    """The shared part: a subclass gives ``flat_index(in_shape)``, the flat input position
    read by each output entry, as an int array of the output's per-example shape."""

    linear = True

    def flat_index(self, in_shape):
        raise NotImplementedError

    def output_shape(self, in_shape):
        return tuple(self.flat_index(tuple(in_shape)).shape)

    def forward(self, x):
        flat = self.flat_index(x.shape[1:])
        return np.take(x.reshape(x.shape[0], -1), flat, axis=1), (x.shape[1:], flat)

    def jvp(self, cache, dx):
        _, flat = cache
        return np.take(dx.reshape(dx.shape[:2] + (-1,)), flat, axis=2)

    def vjp(self, cache, gy):
        shape, flat = cache
        g = scatter_add(gy.reshape(gy.shape[:2] + (-1,)), flat.reshape(-1),
                        int(np.prod(shape, dtype=np.int64)))
        return g.reshape(gy.shape[:2] + tuple(shape))

    def _axis(self, in_shape):
        """``self.dim`` as a 0-based axis of the per-example shape."""
        nd = len(in_shape)
        d = self.dim + nd + 1 if self.dim < 0 else self.dim
        if not 1 <= d <= nd:
            raise self._input_error(f"an input with axis {self.dim}", ("N",) + tuple(in_shape),
                                    f"gather along a per-example axis, 1..{nd} or -1..-{nd}")
        return d - 1

    def _in_range(self, index, n, in_shape):
        """``index`` with negative entries counted from the end, checked against ``n``."""
        if index.size and (index.min() < -n or index.max() >= n):
            raise self._input_error(f"an axis {self.dim} of size greater than "
                                    f"{max(index.max(), -index.min() - 1)}",
                                    ("N",) + tuple(in_shape),
                                    "indices must lie in -size..size-1 along that axis")
        return np.where(index < 0, index + n, index)


class Gather(_FlatGather):
    """Whole slices along axis ``dim`` picked by a constant index array, as ONNX's
    ``Gather`` and ``np.take``: ``y = x[:, ..., indices, ...]`` with the axis ``dim`` (the
    batch axis is 0) replaced by the axes of ``indices`` (an int removes it, as
    ``x[:, 0]`` does). ``x[:, idx]``, ``torch.index_select`` and ONNX ``Gather`` on values
    import as this layer. Linear: tangents are gathered, cotangents scatter-added back.

    Parameters
    ----------
    dim : int
        The axis gathered along, counting the batch axis as 0 (negative from the end).
    indices : int or nested list of ints
        Positions along that axis, negative ones counted from the end; repeats allowed.

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> fd.Gather(1, [2, 0, 0])(np.arange(6.0).reshape(2, 3)).tolist()
    [[2.0, 0.0, 0.0], [5.0, 3.0, 3.0]]
    """

    def __init__(self, dim, indices):
        self.dim = _dim(dim, "Gather")
        self.indices = _index_array(indices, "Gather", "indices")

    def get_config(self):
        return {"dim": self.dim, "indices": self.indices.tolist()}

    def flat_index(self, in_shape):
        axis = self._axis(in_shape)
        index = self._in_range(self.indices, in_shape[axis], in_shape)
        positions = np.arange(int(np.prod(in_shape, dtype=np.int64))).reshape(in_shape)
        return np.take(positions, index, axis=axis)


class GatherElements(_FlatGather):
    """One entry per output entry, read along axis ``dim`` at a constant index, as
    ``torch.gather(x, dim, index)`` and ONNX ``GatherElements``:
    ``y[n, i, j, k] = x[n, i, index[i, j, k], k]`` for ``dim=2``. ``index`` has one axis
    per per-example axis of ``x`` (no batch axis: the same for every example); along the
    others it is no longer than ``x``. Linear: tangents are gathered, cotangents
    scatter-added back.

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> fd.GatherElements(1, [1, 1, 0])(np.array([[5.0, 7.0, 9.0]])).tolist()
    [[7.0, 7.0, 5.0]]
    """

    def __init__(self, dim, index):
        self.dim = _dim(dim, "GatherElements")
        self.index = _index_array(index, "GatherElements", "index")

    def get_config(self):
        return {"dim": self.dim, "index": self.index.tolist()}

    def flat_index(self, in_shape):
        in_shape = tuple(in_shape)
        axis = self._axis(in_shape)
        index = self.index
        if index.ndim != len(in_shape) or any(
                m > n for k, (m, n) in enumerate(zip(index.shape, in_shape)) if k != axis):
            raise self._input_error(
                f"{index.ndim} per-example axes, each at least as long as the index "
                f"{shape_str(index.shape)} but axis {self.dim}", ("N",) + in_shape,
                "give the index one axis per per-example axis of the input")
        coords = list(np.indices(index.shape, dtype=np.int64))
        coords[axis] = self._in_range(index, in_shape[axis], in_shape)
        return np.ravel_multi_index(coords, in_shape) if index.size else \
            np.zeros(index.shape, np.int64)


# -- import rules ---------------------------------------------------------------------------
def _constant_index(ctx, arg, what):
    """The constant index tensor ``arg`` as an int array (looking through an ``expand`` of
    a constant to the batch size, as ``torch.gather`` needs); refuses one computed from
    the input."""
    c = ctx.constant(arg)
    target = str(getattr(arg, "target", ""))
    if c is None and arg is not None and target.startswith(("aten.expand", "aten.expand_as")):
        c = ctx.constant(arg.args[0])
    if c is None:
        ctx.fail(f"{what} with indices that depend on the input (or are not constants)",
                 "index with constant tensors (buffers, torch.tensor(...) literals)")
    c = np.asarray(c)
    if c.dtype == bool and c.ndim != 1:
        ctx.fail(f"{what} with a boolean mask of {c.ndim} axes", "index with integer tensors")
    return np.flatnonzero(c) if c.dtype == bool else c.astype(np.int64)


def _index_select_from_torch(ctx, a):
    x = a["self"]
    dim = exchange.torch_dim(ctx, x, a["dim"], "index_select")
    index = _constant_index(ctx, a["index"], "index_select")
    return ctx.emit(ctx.layer("Gather", dim=dim, indices=index.reshape(-1)), x)


def _index_from_torch(ctx, a):
    """``x[idx]`` with tensors: one constant index tensor (after slices ``:``) is a Gather;
    several adjacent ones are read as one on the merged axes."""
    x, indices = a["self"], list(a["indices"])
    shape = ctx.shape(x)
    given = [k for k, t in enumerate(indices) if t is not None]
    if not given or given[0] == 0:
        ctx.fail("indexing the batch axis with a tensor", "index per-example axes only")
    if given != list(range(given[0], given[-1] + 1)):
        ctx.fail("index tensors separated by slices", "index adjacent axes only")
    parts = [_constant_index(ctx, indices[k], "indexing") for k in given]
    first, sizes = given[0], [shape[k - 1] for k in given]
    try:
        parts = np.broadcast_arrays(*[np.where(p < 0, p + n, p) for p, n in zip(parts, sizes)])
    except ValueError:
        ctx.fail(f"index tensors of shapes {[p.shape for p in parts]}, which do not "
                 "broadcast", "give index tensors that broadcast")
    if len(parts) > 1:                  # several adjacent axes: one flat axis
        merged = list(shape[:first - 1]) + [int(np.prod(sizes))] + list(shape[given[-1]:])
        x = ctx.emit(ctx.layer("Reshape", shape=merged), x)
        index = np.ravel_multi_index(tuple(parts), sizes, mode="raise")
    else:
        index = parts[0]
    return ctx.emit(ctx.layer("Gather", dim=first, indices=index), x)


def _gather_from_torch(ctx, a):
    x = a["self"]
    dim = exchange.torch_dim(ctx, x, a["dim"], "gather")
    index = _constant_index(ctx, a["index"], "gather")
    if index.ndim == len(ctx.shape(x)) + 1:
        if (index != index[:1]).any():
            ctx.fail("a gather whose index differs between examples",
                     "use one index for every example")
        index = index[0]
    return ctx.emit(ctx.layer("GatherElements", dim=dim, index=index), x)


def _gather_from_onnx(imp, node, a):
    x = node.input[0]
    nd = len(imp.shape(x)) + 1
    axis = int(a.get("axis", 0)) % nd
    if axis == 0:
        imp.fail("gathering along the batch axis", "axis", "gather per-example axes only")
    index = imp.const(node.input[1], required=False)
    if index is None:
        imp.fail("indices that are computed from the input", fix="gather at constant indices")
    layer = imp.layer("Gather", "indices", dim=axis, indices=np.asarray(index, np.int64))
    exchange.onnx_output(imp, node, imp.emit(layer, x))


def _gather_elements_from_onnx(imp, node, a):
    x = node.input[0]
    nd = len(imp.shape(x)) + 1
    axis = int(a.get("axis", 0)) % nd
    index = imp.const(node.input[1], required=False)
    producer = next((n for n in imp.graph.node if node.input[1] in n.output), None)
    if index is None and producer is not None and producer.op_type == "Expand":
        index = imp.const(producer.input[0], required=False)    # broadcast to the batch
    if axis == 0:
        imp.fail("gathering along the batch axis", "axis", "gather per-example axes only")
    if index is None:
        imp.fail("indices that are computed from the input", fix="gather at constant indices")
    index = np.asarray(index, np.int64)
    if index.ndim == nd:                # a leading batch axis: the same for every example
        if index.shape[0] != 1 and (index != index[:1]).any():
            imp.fail("an index that differs between examples", fix="use one index for all")
        index = index[0]
    layer = imp.layer("GatherElements", "index", dim=axis, index=index)
    exchange.onnx_output(imp, node, imp.emit(layer, x))


# -- export and schema ---------------------------------------------------------------------
def _gather_to_torch(layer):
    import torch
    index = torch.from_numpy(layer.indices.copy())

    def fn(x):
        d = layer.dim % x.ndim
        key = int(index) if index.ndim == 0 else index
        return x[(slice(None),) * d + (key,)]
    return exchange.torch_function_module(fn, "Gather")


def _gather_elements_to_torch(layer):
    import torch
    index = torch.from_numpy(layer.index.copy())
    return exchange.torch_function_module(
        lambda x: torch.gather(x, layer.dim, index.expand((x.shape[0],) + index.shape)),
        "GatherElements")


def _indices(v, field):
    try:
        a = _index_array(v, "schema", field)
    except (TypeError, ValueError) as err:
        raise schema.SchemaError(f"field {field!r}: {err}") from None
    if a.ndim > schema.MAX_AXES or np.abs(a).max(initial=0) > 2 ** 40:
        raise schema.SchemaError(f"field {field!r} must hold indices of at most "
                                 f"{schema.MAX_AXES} axes and magnitude 2**40")
    return a.tolist()


def _nonzero_dim(v, field):
    if not schema.is_int(v) or v == 0 or abs(v) > schema.MAX_AXES:
        raise schema.SchemaError(f"field {field!r} must be a nonzero int (a per-example axis; "
                                 f"0 is the batch axis), got {schema.describe(v)}")
    return int(v)


register_layer(Gather, schema=schema.LayerSchema({"dim": (_nonzero_dim, schema.REQUIRED),
                                                  "indices": (_indices, schema.REQUIRED)}),
               torch={"index": _index_from_torch, "index_select": _index_select_from_torch},
               onnx={"Gather": _gather_from_onnx}, to_torch=_gather_to_torch,
               example=Example({"dim": 2, "indices": [[3, 0], [3, -1]]}, (2, 4, 3)))
register_layer(GatherElements,
               schema=schema.LayerSchema({"dim": (_nonzero_dim, schema.REQUIRED),
                                          "index": (_indices, schema.REQUIRED)}),
               torch={"gather": _gather_from_torch},
               onnx={"GatherElements": _gather_elements_from_onnx},
               to_torch=_gather_elements_to_torch,
               example=Example({"dim": -1, "index": [[2, 0, 2, 1], [1, 1, 0, 0]]}, (2, 3)))
