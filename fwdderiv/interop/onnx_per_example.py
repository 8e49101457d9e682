"""Reading an ONNX file one example at a time (``from_onnx(..., per_example=True)``).

The batched import takes ONNX axis 0 as the batch everywhere, so it refuses exports that
tie the batch to another size: Swin's window partition folds the windows into axis 0,
``nn.MultiheadAttention`` works sequence-first and folds the batch into its heads, and
torch.onnx's TorchScript exporter writes sizes that Python computed from the batch
(``int(windows.shape[0] / n)``) as constants, so such a file is only right at batch 1.

Here the file is read as the function it computes for one example, its input at batch 1:
every ONNX value, of shape ``(1, ...)`` or ``(n, ...)``, is a per-example value of that
whole shape, and fwdderiv's batch is an axis in front of the file's. Each node is imported
in one of two ways, as a batching rule of ``torch.vmap`` would:

- *led*: when axis 0 of each value input has size 1, that axis stands for the batch and the
  node's own rule runs on the values without it, as in the batched import (whose rules
  refuse what would not keep that axis apart). Convolutions, pools and batch norm read
  their input this way.
- *whole*: otherwise, or when the led rule refuses, the rule runs on the whole values with
  the node's axes moved one place on (axis k of the file is per-example axis k + 1).

An ONNX value may have both forms; a Reshape converts between them, and the ones nothing
reads are pruned with the other unused nodes.
"""
import numpy as np

from ..layers import exchange

#: Operators whose rules need axis 0 to be the batch (items along it are independent):
#: imported led only.
LED_ONLY = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
                      "GlobalMaxPool", "BatchNormalization", "Resize", "DepthToSpace",
                      "SpaceToDepth", "PRelu", "Einsum"})


def _shift(v):
    """ONNX axis ``v`` of a value with the batch axis put in front of it."""
    v = int(v)
    return v + 1 if v >= 0 else v


class PerExample:
    """The per-example reading of one import; ``imp`` is the importer of
    :mod:`fwdderiv.interop.onnx_import`, whose ``values`` hold every ONNX value's whole
    form while this reading is on."""

    def __init__(self, imp, input_name, batch):
        if batch not in (None, 1):
            imp.fail_input(f"a fixed batch size {batch}; reading one example at a time "
                           "needs the input at batch 1 or a symbolic batch axis")
        self.led = {input_name: "input"}    # ONNX value -> fwdderiv node without axis 0
        imp.values[input_name] = self._reshape(imp, "input", (1,) + imp.dims["input"],
                                               input_name)

    # -- forms --------------------------------------------------------------------------
    @staticmethod
    def _reshape(imp, source, shape, base):
        """``source`` (a fwdderiv node) reshaped to per-example ``shape``; a reshape of a
        reshape is one reshape of the first one's input, and none if that has ``shape``."""
        layer, inputs = imp.producers.get(source, (None, None))
        if type(layer).__name__ in ("Reshape", "Flatten"):
            source = inputs
        if imp.dims[source] == tuple(shape):
            return source
        return imp.emit_node(imp.layer("Reshape", shape=list(shape)), [source], base)

    def _led_form(self, imp, name):
        if name not in self.led:
            whole = imp.values[name]
            self.led[name] = self._reshape(imp, whole, imp.dims[whole][1:], name + "_led")
        return self.led[name]

    def _can_lead(self, imp, name):
        return name in self.led or imp.dims[imp.values[name]][:1] == (1,)

    def output(self, imp, name):
        """The fwdderiv node of the network's output ``name``: its led form."""
        if not self._can_lead(imp, name):
            imp.fail_input(f"an output of shape {imp.dims[imp.values[name]]} at batch 1; "
                           "reading one example at a time needs an output of batch 1")
        return self._led_form(imp, name)

    # -- a node ---------------------------------------------------------------------------
    def apply(self, imp, rule, node, a):
        """Import ``node`` (attributes ``a``) whose rule is ``rule``."""
        inputs = [i for i in node.input if i in imp.values]
        if not inputs:                                  # shapes and constants
            return rule(imp, node, a)
        if node.op_type == "Shape":                     # known: the file at batch 1
            full = list(imp.shape(node.input[0]))
            imp.shapes[node.output[0]] = full[slice(a.get("start", 0), a.get("end", None))]
            return None
        if all(self._can_lead(imp, i) for i in inputs):
            saved = self._save(imp)
            try:
                return self._apply_led(imp, rule, node, a, inputs)
            except imp.error:
                if node.op_type in LED_ONLY:
                    raise
                self._restore(imp, saved)
        if node.op_type in LED_ONLY:
            shapes = [imp.shape(i) for i in inputs]
            imp.fail(f"an input of shape {shapes[0]} at batch 1 (axis 0 is not of size 1, "
                     "so it cannot stand for the batch)", fix="apply it to the batch axis")
        whole = _WHOLE.get(node.op_type)
        return rule(imp, node, a) if whole is None else whole(imp, rule, node, a)

    def _apply_led(self, imp, rule, node, a, inputs):
        wholes = {i: imp.values[i] for i in inputs}
        for i in inputs:
            imp.values[i] = self._led_form(imp, i)
        before = dict(imp.values)
        try:
            rule(imp, node, a)
        finally:
            made = {k: v for k, v in imp.values.items() if before.get(k) != v}
            imp.values.update(wholes)
        for k, v in made.items():
            self.led[k] = v
            imp.values[k] = self._reshape(imp, v, (1,) + imp.dims[v], k + "_whole")

    def _save(self, imp):
        return (len(imp.nodes), dict(imp.values), dict(imp.consts), dict(imp.shapes),
                set(imp.ahead), dict(self.led))

    def _restore(self, imp, saved):
        n, values, consts, shapes, ahead, led = saved
        del imp.nodes[n:]
        imp.values, imp.consts, imp.shapes, imp.ahead, self.led = \
            values, consts, shapes, ahead, led


# -- whole values: the node with its axes moved one place on ------------------------------
def _with_input(imp, node, k, value, tag):
    """A copy of ``node`` whose input ``k`` is the new constant ``value``."""
    from onnx import NodeProto
    copy = NodeProto()
    copy.CopyFrom(node)
    while len(copy.input) <= k:
        copy.input.append("")
    name = f"{node.output[0]}__{tag}"
    imp.consts[name] = np.asarray(value, np.int64)
    copy.input[k] = name
    return copy


def _input_ints(imp, node, k):
    if len(node.input) > k and node.input[k]:
        return [int(v) for v in np.asarray(imp.const(node.input[k])).reshape(-1)]
    return None


def _axis(default):
    """A rule for an operator with one ``axis`` attribute (``default`` when absent; a
    callable of the importer for Softmax, whose default changed with opset 13)."""
    def whole(imp, rule, node, a):
        axis = a.get("axis", default(imp) if callable(default) else default)
        return rule(imp, node, {**a, "axis": _shift(axis)})
    return whole


def _transpose(imp, rule, node, a):
    nd = len(imp.shape(node.input[0]))
    perm = a.get("perm", range(nd)[::-1])
    return rule(imp, node, {**a, "perm": [0] + [_shift(p) for p in perm]})


def _axes(k, default_all):
    """A rule for an operator with ``axes`` as an attribute (older opsets) or input ``k``;
    when absent, every axis if ``default_all`` (a reduction), given as the attribute
    (which the rules read when the input is absent)."""
    def whole(imp, rule, node, a):
        axes = _input_ints(imp, node, k)
        if axes is not None:
            return rule(imp, _with_input(imp, node, k, [_shift(v) for v in axes], "axes"), a)
        given = a.get("axes")
        if not given:
            if not default_all or a.get("noop_with_empty_axes", 0):
                return rule(imp, node, a)
            given = range(len(imp.shape(node.input[0])))
        return rule(imp, node, {**a, "axes": [_shift(v) for v in given]})
    return whole


def _squeeze(imp, rule, node, a):
    if _input_ints(imp, node, 1) is None and not a.get("axes"):     # every axis of size 1
        a = {**a, "axes": [k for k, n in enumerate(imp.shape(node.input[0])) if n == 1]}
    return _axes(1, False)(imp, rule, node, a)


def _slice(imp, rule, node, a):
    starts = _input_ints(imp, node, 1)
    axes = _input_ints(imp, node, 3)
    axes = range(len(starts)) if axes is None else axes
    return rule(imp, _with_input(imp, node, 3, [_shift(v) for v in axes], "axes"), a)


def _pad(imp, rule, node, a):
    pads = _input_ints(imp, node, 1)
    if _input_ints(imp, node, 3) is not None:                       # opset 18: axes
        node = _with_input(imp, node, 3, [_shift(v) for v in _input_ints(imp, node, 3)],
                           "axes")
        return rule(imp, node, a)
    n = len(pads) // 2
    return rule(imp, _with_input(imp, node, 1, [0] + pads[:n] + [0] + pads[n:], "pads"), a)


def _tile(imp, rule, node, a):
    return rule(imp, _with_input(imp, node, 1, [1] + _input_ints(imp, node, 1), "repeats"), a)


def _reshape(imp, rule, node, a):
    src = imp.shape(node.input[0])
    target = _input_ints(imp, node, 1)
    per = [src[i] if s == 0 and not a.get("allowzero", 0) else s for i, s in enumerate(target)]
    if per.count(-1) == 1:
        known = int(np.prod([s for s in per if s != -1]))
        per[per.index(-1)] = int(np.prod(src)) // known if known else 0
    if int(np.prod(per)) != int(np.prod(src)):
        imp.fail(f"reshaping {src} to {target}", "shape")
    exchange.onnx_reshape_to(imp, node, node.input[0], per)


def _flatten(imp, rule, node, a):
    src = imp.shape(node.input[0])
    axis = int(a.get("axis", 1)) % (len(src) + 1)
    per = [int(np.prod(src[:axis])), int(np.prod(src[axis:]))]
    exchange.onnx_reshape_to(imp, node, node.input[0], per)


def _expand(imp, rule, node, a):
    x = node.input[0]
    src = imp.shape(x)
    out = [int(d) for d in np.broadcast_shapes(tuple(src), tuple(_input_ints(imp, node, 1)))]
    if out == list(src):
        return exchange.onnx_output(imp, node, imp.value(x))
    name = imp.value(x)
    if len(out) > len(src):
        shape = [1] * (len(out) - len(src)) + list(src)
        name = imp.emit(imp.layer("Reshape", shape=shape), name, node.output[0] + "_rank")
    exchange.onnx_output(imp, node, imp.emit(imp.layer("Expand", shape=out), name))


def _concat(imp, rule, node, a):
    """Concat with the axis moved on; a constant part (a class token) as a Constant layer."""
    like = next(i for i in node.input if i in imp.values)
    rank = len(imp.shape(like))
    parts = []
    for i in node.input:
        if i in imp.values or not i:
            parts.append(i)
            continue
        c = np.asarray(imp.const(i))
        if c.ndim != rank:
            imp.fail(f"a constant part of shape {c.shape} with values of rank {rank}")
        parts.append(exchange.emit_constant(imp, like, c.copy()))
    from onnx import NodeProto
    copy = NodeProto()
    copy.CopyFrom(node)
    del copy.input[:]
    copy.input.extend(parts)
    return rule(imp, copy, {**a, "axis": _shift(a["axis"])})


#: ONNX op type -> how it reads whole values, for the operators with axes (the others,
#: elementwise operators, MatMul, Gemm on the last axis, Where, read them as they are).
_WHOLE = {"Transpose": _transpose, "Concat": _concat, "Reshape": _reshape,
          "Flatten": _flatten, "Expand": _expand, "Slice": _slice, "Pad": _pad,
          "Tile": _tile, "Squeeze": _squeeze, "Unsqueeze": _axes(1, False),
          "Softmax": _axis(lambda imp: -1 if imp.opset >= 13 else 1),
          "LogSoftmax": _axis(lambda imp: -1 if imp.opset >= 13 else 1),
          "Split": _axis(0), "Gather": _axis(0), "GatherElements": _axis(0),
          "LayerNormalization": _axis(-1),
          **{op: _axes(1, True) for op in ("ReduceSum", "ReduceMean", "ReduceMax")}}
