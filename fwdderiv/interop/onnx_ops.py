"""The ONNX operators that are import plumbing rather than a layer's: constants, shape
computations (``Shape``, ``Gather``, ``Unsqueeze``, and ``Concat``, ``Slice`` and
arithmetic on shapes), ``Identity``, ``Cast`` and ``Dropout`` at inference.

Shape computations are evaluated at import time with the batch size kept symbolic
(:data:`BATCH`). Every other operator's rule belongs to the layer it makes and is
registered with it (:func:`fwdderiv.registry.register_layer`, e.g. ``Conv`` next to
:class:`fwdderiv.Conv2d`). A rule reads the node's inputs and attributes, emits fwdderiv
nodes (``imp.emit``) and records which fwdderiv value stands for the node's output.
"""
import numpy as np

from ..layers.exchange import BATCH, BIG, onnx_output, onnx_unused_outputs


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


# -- shape computations -----------------------------------------------------------------
def shape(imp, node, a):
    full = [BATCH] + list(imp.shape(node.input[0]))
    imp.shapes[node.output[0]] = full[slice(a.get("start", 0), a.get("end", None))]


def gather(imp, node, a):
    src = node.input[0]
    if src not in imp.shapes:
        imp.fail("Gather on values (only on shapes)")
    idx = imp.const(node.input[1])
    picked = [imp.shapes[src][int(i)] for i in np.atleast_1d(idx)]
    imp.shapes[node.output[0]] = picked


def unsqueeze(imp, node, a):
    x = node.input[0]
    if x in imp.shapes:
        imp.shapes[node.output[0]] = list(imp.shapes[x])
        return
    if x in imp.consts:
        imp.consts[node.output[0]] = np.atleast_1d(imp.consts[x])
        return
    imp.fail("Unsqueeze on values (only on shapes)")


def cast(imp, node, a):
    identity(imp, node, a)


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


def _arithmetic(kind):
    def rule(imp, node, a):
        _shape_arith(imp, node, kind)
    return rule


#: ONNX op type -> rule, for the operators that make no layer.
RULES = {"Identity": identity, "Dropout": dropout, "Cast": cast, "Constant": constant,
         "Shape": shape, "Gather": gather, "Unsqueeze": unsqueeze}
#: Rules for operators whose inputs include a shape computation (layers' rules otherwise).
SHAPE_RULES = {"Concat": _concat_shapes, "Slice": _slice_shape,
               **{kind: _arithmetic(kind) for kind in ("Add", "Sub", "Mul", "Div")}}


def on_shapes(imp, node):
    """Whether ``node`` computes on shapes (then :data:`SHAPE_RULES` has its rule)."""
    return node.op_type in SHAPE_RULES and any(i in imp.shapes for i in node.input)
