"""The ONNX operators that are import plumbing rather than a layer's: constants, shape
computations (``Shape``, ``Gather``, ``Unsqueeze``, and ``Concat``, ``Slice`` and
arithmetic on shapes), ``Identity``, ``Cast`` and ``Dropout`` at inference, ``Squeeze``
and ``Unsqueeze`` of values (reshapes) and ``Split`` (one slice per output).

Shape computations are evaluated at import time with the batch size kept symbolic
(:data:`BATCH`). Every other operator's rule belongs to the layer it makes and is
registered with it (:func:`fwdderiv.registry.register_layer`, e.g. ``Conv`` next to
:class:`fwdderiv.Conv2d`). A rule reads the node's inputs and attributes, emits fwdderiv
nodes (``imp.emit``) and records which fwdderiv value stands for the node's output.
"""
import numpy as np

from ..layers.exchange import BATCH, BIG, onnx_output, onnx_reshape_to, onnx_unused_outputs


def identity(imp, node, a):
    x = node.input[0]
    if x in imp.shapes:
        imp.shapes[node.output[0]] = imp.shapes[x]
    elif x in imp.consts:
        imp.consts[node.output[0]] = imp.consts[x]
    else:
        onnx_output(imp, node, imp.value(x))


def dropout(imp, node, a):
    if len(node.input) > 2 and node.input[2] and bool(imp.const(node.input[2]).reshape(())):
        imp.fail("training_mode=True", "training_mode")
    onnx_unused_outputs(imp, node, "mask")
    identity(imp, node, a)


def constant(imp, node, a):
    from onnx import numpy_helper
    if "value" in a:
        imp.consts[node.output[0]] = numpy_helper.to_array(a["value"])
    elif "value_float" in a or "value_int" in a:
        imp.consts[node.output[0]] = np.array(a.get("value_float", a.get("value_int")))
    elif "value_floats" in a or "value_ints" in a:
        imp.consts[node.output[0]] = np.array(a.get("value_floats", a.get("value_ints")))
    else:
        imp.fail(f"attributes {sorted(a)}", sorted(a)[0] if a else None)


def split(imp, node, a):
    """One Slice of the input per output along ``axis``: sizes from the ``split`` input
    (opset 13) or attribute, else ``num_outputs`` pieces (opset 18: the last one smaller),
    else equal parts."""
    x = node.input[0]
    shape = [BATCH] + list(imp.shape(x))
    axis = int(a.get("axis", 0)) % len(shape)
    if axis == 0:
        imp.fail("splitting the batch axis", "axis", "split a per-example axis")
    n, k = shape[axis], len(node.output)
    if len(node.input) > 1 and node.input[1]:
        sizes = [int(v) for v in np.atleast_1d(imp.const(node.input[1]))]
    elif "split" in a:
        sizes = [int(v) for v in a["split"]]
    elif "num_outputs" in a or n % k == 0:
        size = -(-n // int(a.get("num_outputs", k)))
        sizes = [min(size, n - s) for s in range(0, n, size)]
    else:
        imp.fail(f"{k} equal parts of an axis of size {n}", fix="give the sizes")
    if len(sizes) != k or sum(sizes) != n:
        imp.fail(f"sizes {sizes} for {k} outputs of an axis of size {n}", "split")
    start = 0
    for out, size in zip(node.output, sizes):
        if out:
            layer = imp.layer("Slice", starts=[start], ends=[start + size], axes=[axis])
            imp.values[out] = imp.emit(layer, x, out)
        start += size


# -- shape computations -----------------------------------------------------------------
def shape(imp, node, a):
    x = node.input[0]
    if x in imp.shapes:                       # the shape of a shape: its length
        imp.shapes[node.output[0]] = [len(imp.shapes[x])][slice(a.get("start", 0),
                                                                a.get("end", None))]
        return
    full = [BATCH] + list(imp.shape(x))
    imp.shapes[node.output[0]] = full[slice(a.get("start", 0), a.get("end", None))]


def gather(imp, node, a):
    src = node.input[0]
    if src not in imp.shapes:
        imp.fail("Gather on values (only on shapes)")
    idx = imp.const(node.input[1])
    picked = [imp.shapes[src][int(i)] for i in np.atleast_1d(idx)]
    if BATCH not in picked:     # known sizes: a constant of the index's rank, which the
        # exact evaluation of later nodes (Imp.fold) needs (a scalar index: a scalar)
        imp.consts[node.output[0]] = np.array(picked, np.int64).reshape(np.shape(idx))
        return
    imp.shapes[node.output[0]] = picked


def unsqueeze(imp, node, a):
    x = node.input[0]
    if x in imp.shapes:
        imp.shapes[node.output[0]] = list(imp.shapes[x])
        return
    if x in imp.consts:
        imp.consts[node.output[0]] = np.atleast_1d(imp.consts[x])
        return
    _squeeze_value(imp, node, a, insert=True)


def squeeze(imp, node, a):
    _squeeze_value(imp, node, a, insert=False)


def _squeeze_value(imp, node, a, insert):
    """Unsqueeze or Squeeze of a value: a reshape, the batch axis kept."""
    x = node.input[0]
    shape = [BATCH] + list(imp.shape(x))
    if len(node.input) > 1 and node.input[1]:               # opset 13: axes input
        axes = [int(v) for v in np.atleast_1d(imp.const(node.input[1]))]
    else:
        axes = [int(v) for v in a.get("axes", [])]
    if insert:
        nd = len(shape) + len(axes)
        axes = sorted(v % nd for v in axes)
        for v in axes:
            shape.insert(v, 1)
    else:
        axes = [v % len(shape) for v in axes] or [k for k, n in enumerate(shape) if n == 1]
        shape = [n for k, n in enumerate(shape) if k not in axes]
    if 0 in axes:
        imp.fail(f"{node.op_type} of the batch axis", "axes", "keep the batch axis first")
    onnx_reshape_to(imp, node, x, shape[1:])


def cast(imp, node, a):
    identity(imp, node, a)


def is_nan(imp, node, a):
    """``IsNaN`` of a value: a constant False mask. Where a Jacobian exists, no entry is
    NaN (fwdderiv's layers propagate a NaN as PyTorch does); ``torch.onnx`` guards
    attention's softmax this way, ``Where(IsNaN(p), 0, p)``, which the Where layer's rule
    then takes as a selection by a constant mask."""
    imp.consts[node.output[0]] = np.zeros((1,) + tuple(imp.shape(node.input[0])), bool)


def _shape_arith(imp, node, kind):
    ops = {"Mul": lambda u, v: u * v, "Add": lambda u, v: u + v,
           "Sub": lambda u, v: u - v, "Div": lambda u, v: u // v}
    vals = [imp.shapes[i] if i in imp.shapes else list(np.atleast_1d(imp.const(i)))
            for i in node.input]
    if any(BATCH in v for v in vals):
        imp.fail("arithmetic on the batch size")
    imp.shapes[node.output[0]] = [int(ops[kind](u, v)) for u, v in zip(*vals)]


def _concat_shapes(imp, node, a):
    parts = [imp.shapes[i] if i in imp.shapes else list(imp.const(i).reshape(-1))
             for i in node.input]
    imp.shapes[node.output[0]] = [v for p in parts for v in p]


def _slice_shape(imp, node, a):
    starts, ends = imp.const(node.input[1]), imp.const(node.input[2])
    steps = imp.const(node.input[4]) if len(node.input) > 4 and node.input[4] else [1]
    imp.shapes[node.output[0]] = imp.shapes[node.input[0]][
        slice(int(starts[0]), int(min(ends[0], BIG)), int(steps[0]))]


def _reshape_shape(imp, node, a):
    """A shape reshaped to one axis (as exporters write ``expand(n, -1, -1)``)."""
    target = [int(v) for v in np.atleast_1d(imp.const(node.input[1]))]
    src = imp.shapes[node.input[0]]
    if target not in ([-1], [len(src)]):
        imp.fail(f"a shape reshaped to {target}", fix="reshape shapes to one axis only")
    imp.shapes[node.output[0]] = list(src)


def _entries(imp, name):
    return imp.shapes[name] if name in imp.shapes else list(np.atleast_1d(imp.const(name)))


def _equal_shapes(imp, node, a):
    """Entry-by-entry equality of shapes; the batch size (at least 1) is known to differ
    from a number below 1 (the ``-1`` of ``expand(n, -1, -1)``) and from nothing else."""
    def equal(u, v):
        if BATCH in (u, v):
            other = v if u is BATCH else u
            if other is BATCH or other >= 1:
                imp.fail("comparing the batch size with a size")
            return False
        return bool(u == v)
    us, vs = _entries(imp, node.input[0]), _entries(imp, node.input[1])
    n = max(len(us), len(vs))
    imp.shapes[node.output[0]] = [equal(u, v) for u, v in zip(us * (n // len(us)),
                                                                vs * (n // len(vs)))]


def _where_shapes(imp, node, a):
    """Entry-by-entry choice between shapes by a known condition."""
    cond, xs, ys = (_entries(imp, i) for i in node.input)
    if BATCH in cond:
        imp.fail("a condition computed from the batch size")
    n = max(len(cond), len(xs), len(ys))
    cond, xs, ys = (v * (n // len(v)) for v in (cond, xs, ys))
    imp.shapes[node.output[0]] = [x if c else y for c, x, y in zip(cond, xs, ys)]


def _arithmetic(kind):
    def rule(imp, node, a):
        _shape_arith(imp, node, kind)
    return rule


#: ONNX op type -> rule, for the operators that make no layer.
RULES = {"Identity": identity, "Dropout": dropout, "Cast": cast, "Constant": constant,
         "Shape": shape, "Unsqueeze": unsqueeze, "Squeeze": squeeze, "Split": split,
         "IsNaN": is_nan}
#: Rules for operators whose inputs include a shape computation (layers' rules otherwise:
#: Gather and Slice of a value are the Gather and Slice layers').
SHAPE_RULES = {"Concat": _concat_shapes, "Slice": _slice_shape, "Gather": gather,
               "Reshape": _reshape_shape, "Equal": _equal_shapes, "Where": _where_shapes,
               **{kind: _arithmetic(kind) for kind in ("Add", "Sub", "Mul", "Div")}}
#: Operators that compute on a shape only when their first input is one (Slice ends,
#: Gather indices and Reshape targets may be computed from shapes while the data is a
#: value).
_DATA_FIRST = ("Slice", "Gather", "Reshape")


def on_shapes(imp, node):
    """Whether ``node`` computes on shapes (then :data:`SHAPE_RULES` has its rule)."""
    if node.op_type in _DATA_FIRST:
        return node.input[0] in imp.shapes
    return node.op_type in SHAPE_RULES and any(i in imp.shapes for i in node.input)
