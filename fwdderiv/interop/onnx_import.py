"""Import an ONNX model as a fwdderiv network (opsets 11 to 25, dynamic batch axis).

Per-example shapes are tracked through the fwdderiv layers as they are built
(``layer.output_shape``), so no shape inference is needed; the small shape computations
that exporters emit for ``x.view(x.size(0), -1)`` (``Shape``, ``Gather``, ``Unsqueeze``,
``Concat``, ...) are evaluated at import time, with the batch size kept symbolic. A file
that does not keep the batch in axis 0 is read one example at a time instead
(:mod:`fwdderiv.interop.onnx_per_example`).
"""
import warnings

import numpy as np

from .. import registry
from ..layers.exchange import BATCH

#: Opsets 21-25 changed the supported operators only by adding element types (bfloat16,
#: float8, int4); the onnx package's node tests of those versions run in the test suite.
MAX_OPSET = 25


class OnnxImportError(ValueError):
    """An ONNX node, operator or attribute value fwdderiv cannot represent exactly."""


class _Import:
    error = OnnxImportError

    def __init__(self, model):
        import onnx
        from onnx import numpy_helper
        import fwdderiv
        self.onnx, self.fd, self.nh = onnx, fwdderiv, numpy_helper
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          None)
        if self.opset is None or not 11 <= self.opset <= MAX_OPSET:
            raise OnnxImportError(f"from_onnx: opset {self.opset} is not supported; export "
                                  f"with an opset between 11 and {MAX_OPSET}")
        g = model.graph
        self.consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.shapes = {}   # value name -> list (a shape computation), batch as None
        self.values = {}   # ONNX value name -> fwdderiv node name
        self.dims = {}     # fwdderiv node name -> per-example shape
        self.nodes, self.node = [], None
        self.producers = {}  # fwdderiv node name -> (layer, inputs)
        self.ahead = set()  # ONNX values given by an earlier node's rule
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1 or len(g.output) != 1:
            raise OnnxImportError(f"from_onnx: expected one input and one output, got "
                                  f"{len(inputs)} and {len(g.output)}")
        dims = inputs[0].type.tensor_type.shape.dim
        per = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
        if len(dims) < 2:
            raise OnnxImportError(f"from_onnx: input {inputs[0].name!r} has {len(dims)} axes; "
                                  f"fwdderiv needs a batch axis and at least one more")
        if None in per:
            raise OnnxImportError(f"from_onnx: input {inputs[0].name!r} must have fixed sizes "
                                  f"except the batch axis, got {[d.dim_param or d.dim_value for d in dims]}")
        self.values[inputs[0].name] = "input"
        self.dims["input"] = tuple(per)
        self.graph = g
        self.input_name = inputs[0].name
        self.input_batch = dims[0].dim_value if dims[0].HasField("dim_value") else None
        self.batching = None    # a PerExample reading (onnx_per_example), or None

    def fail_input(self, what):
        raise OnnxImportError(f"from_onnx: input {self.input_name!r}: {what}")

    def apply(self, rule, node, a):
        """Import ``node`` with its ``rule``, through the per-example reading if on."""
        if self.batching is None:
            return rule(self, node, a)
        return self.batching.apply(self, rule, node, a)

    # -- helpers -------------------------------------------------------------------
    def fail(self, what, attribute=None, fix="change the model or export it differently"):
        n = self.node
        attr = f", attribute {attribute!r}" if attribute else ""
        raise OnnxImportError(f"from_onnx: node {n.name or n.output[0]!r} (operator "
                              f"{n.op_type}{attr}): {what} is not supported; {fix}")

    def attrs(self, node):
        """The node's attributes. ONNX stores float attributes in float32, so PyTorch's
        ``eps=1e-5`` arrives as 9.99999975e-06: each is read back as the shortest decimal
        that rounds to it (1e-05), the number the exporter was given."""
        out = {}
        for a in node.attribute:
            v = self.onnx.helper.get_attribute_value(a)
            if a.type == self.onnx.AttributeProto.FLOAT:
                v = float(str(np.float32(v)))
            elif a.type == self.onnx.AttributeProto.FLOATS:
                v = [float(str(np.float32(f))) for f in v]
            out[a.name] = v
        return out

    def const(self, name, required=True):
        if name in self.consts:
            return self.consts[name]
        if name in self.shapes and BATCH not in self.shapes[name]:
            return np.array(self.shapes[name], np.int64)
        if required:
            self.fail(f"a non-constant operand {name!r} where a constant is needed")
        return None

    def fold(self, node):
        """Evaluate a node whose inputs are all constants (exporters compute padding
        widths and shapes this way) with onnx's reference evaluator; True when folded."""
        present = [i for i in node.input if i]
        if not present or node.op_type == "Constant" or \
                any(self.const(i, required=False) is None for i in present):
            return False
        from onnx.reference import ReferenceEvaluator
        h = self.onnx.helper
        graph = h.make_graph([node], "fold", [h.make_empty_tensor_value_info(i) for i in present],
                             [h.make_empty_tensor_value_info(o) for o in node.output if o])
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", self.opset)])
        feeds = {i: self.const(i) for i in present}
        outs = ReferenceEvaluator(model).run(None, feeds)
        for name, value in zip(node.output, outs):
            self.consts[name] = np.asarray(value)
        return True

    def value(self, name):
        if name not in self.values:
            self.fail(f"operand {name!r}, which is not computed from the input")
        return self.values[name]

    def shape(self, name):
        return self.dims[self.value(name)]

    def layer(self, cls_name, attribute=None, **kwargs):
        cls = getattr(self.fd, cls_name, None)
        if cls is None:
            self.fail(f"{cls_name} (no such fwdderiv layer in this version)", attribute)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            self.fail(f"{cls_name} with {kwargs} ({err})", attribute)

    def emit(self, layer, inputs, out=None):
        inputs = [self.value(i) for i in (inputs if isinstance(inputs, list) else [inputs])]
        return self.emit_node(layer, inputs, out)

    def emit_node(self, layer, inputs, out=None):
        """Emit ``layer`` on the fwdderiv nodes ``inputs``; its node's name."""
        base = (out or self.node.output[0]).replace("/", "_").strip("_") or "node"
        name, k = base, 1
        while name in self.dims:
            name, k = f"{base}_{k}", k + 1
        try:
            self.dims[name] = tuple(layer.output_shape(*[self.dims[i] for i in inputs]))
        except (TypeError, ValueError) as err:
            self.fail(f"{layer!r} on per-example shapes {[self.dims[i] for i in inputs]} ({err})")
        self.nodes.append((name, layer, inputs[0] if len(inputs) == 1 else inputs))
        self.producers[name] = self.nodes[-1][1:]
        self.values[name] = name  # so that chained emits can read it
        return name


def from_onnx(model, per_example=None):
    """Import an ONNX model as a fwdderiv network computing the same function.

    Parameters
    ----------
    model : str, path or onnx.ModelProto
        One input of shape ``(N, *S)`` whose batch axis may be symbolic, one output.
    per_example : bool or None
        How the file's batch axis is read. False: as the batch, node by node (ONNX axis 0
        of every value is the batch). True: the file is the function it computes for one
        example, its input at batch 1, and fwdderiv's batch is an axis in front of it
        (:mod:`fwdderiv.interop.onnx_per_example`); for exports that fold the batch into
        another axis (Swin's windows, ``nn.MultiheadAttention``'s heads) or froze sizes
        computed from it. None (the default): the batch first; if that refuses, one
        example at a time, kept only if the file at batch 2 gives, for each example, what
        it gives for that example alone (a file of fixed batch 1 defines nothing else).

    Returns
    -------
    Sequential or Graph
        Weights copied from the initializers, in ONNX's (= PyTorch's) layout and dtype.

    Raises
    ------
    OnnxImportError
        (a ``ValueError``) naming the node, the operator and the attribute of the first
        thing fwdderiv cannot represent exactly; or, for ``per_example=None``, saying that
        the file mixes examples at batch 2 and how to read it anyway.
    """
    import onnx
    if per_example not in (None, True, False):
        raise TypeError(f"from_onnx: per_example must be True, False or None, got "
                        f"{per_example!r}")
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    if per_example is not None:
        return _read(model, per_example)
    try:
        return _read(model, False)
    except OnnxImportError as err:
        first = err
    try:
        net = _read(model, True)
    except OnnxImportError as again:
        if str(again) == str(first):
            raise first from None
        raise OnnxImportError(f"{first}\nRead one example at a time (per_example=True), it "
                              f"does not import either: {again}") from None
    _check_examples_apart(model, net, first)
    return net


def _read(model, per_example):
    from .onnx_ops import RULES, SHAPE_RULES, on_shapes
    from .onnx_per_example import PerExample
    from .torch_import import _prune
    from .. import Graph, Sequential
    imp = _Import(model)
    if per_example:
        imp.batching = PerExample(imp, imp.input_name, imp.input_batch)
    for node in imp.graph.node:
        imp.node = node
        if all(o in imp.ahead for o in node.output if o) or imp.fold(node):
            continue
        rule = None
        if node.domain in ("", "ai.onnx"):
            rule = SHAPE_RULES[node.op_type] if on_shapes(imp, node) else \
                RULES.get(node.op_type) or registry.onnx_rule(node.op_type)
        if rule is None:
            imp.fail(f"the operator {node.domain + '.' if node.domain else ''}{node.op_type}",
                     fix="fwdderiv.interop.supported_operators('onnx') lists the supported "
                         "ones; fwdderiv.register_layer adds one")
        imp.apply(rule, node, imp.attrs(node))
    out = imp.value(imp.graph.output[0].name)
    if imp.batching is not None:
        out = imp.batching.output(imp, imp.graph.output[0].name)
    if out == "input":
        raise OnnxImportError("from_onnx: the model returns its input unchanged")
    nodes = _prune(imp.nodes, out)
    if all(inputs == (nodes[i - 1][0] if i else "input") for i, (_, _, inputs) in enumerate(nodes)):
        return Sequential([layer for _, layer, _ in nodes])
    return Graph(nodes)


#: How far the file at batch 2 may be from the per-example network, relative to its
#: largest output: rounding only (float64, float32).
_APART_RTOL = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 1e-3}


def _check_examples_apart(model, net, first):
    """Refuse a per-example reading that the file itself contradicts: a symbolic batch
    axis claims any batch, so at batch 2 the file must give each example's output alone."""
    import onnx
    tensor = next(i for i in model.graph.input
                  if i.name not in {t.name for t in model.graph.initializer})
    dims = tensor.type.tensor_type.shape.dim
    if dims[0].HasField("dim_value"):
        return                                          # fixed at 1: nothing else defined
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.type.tensor_type.elem_type))
    x = np.random.default_rng(0).standard_normal(
        (2,) + tuple(d.dim_value for d in dims[1:])).astype(dtype)
    run = _file_runner(model, tensor.name, x[:1])
    if run is None:
        warnings.warn("from_onnx: neither onnxruntime nor onnx's reference evaluator runs the "
                      "file, so whether it keeps examples apart at batch 2 is unchecked; it "
                      "was read as the function of one example (per_example=True)",
                      stacklevel=3)
        return
    try:
        whole = run(x)
    except Exception as err:    # noqa: BLE001 (any runtime's refusal: the file fixes batch 1)
        warnings.warn(f"from_onnx: the file runs at batch 1 but not at batch 2 "
                      f"({type(err).__name__}), so it was read as the function of one example "
                      f"(per_example=True)", stacklevel=3)
        return
    apart = np.asarray(net.forward(x), np.float64)
    scale = max(float(np.max(np.abs(apart))), np.finfo(dtype).tiny)
    whole = np.asarray(whole, np.float64)
    gap = float(np.max(np.abs(whole - apart))) if whole.shape == apart.shape else np.inf
    if gap > _APART_RTOL.get(dtype, 1e-3) * scale:
        raise OnnxImportError(
            f"{first}\nRead one example at a time (per_example=True) it imports, but at "
            f"batch 2 the file itself gives each example something else than at batch 1 "
            f"({_difference(gap, scale, whole.shape, apart.shape)}): it "
            f"mixes examples, or its export froze sizes computed from the batch (torch.onnx's "
            f"TorchScript exporter writes int(x.shape[0] / n) as a constant), so it is only "
            f"right at batch 1. If the file is meant at batch 1, pass per_example=True (on "
            f"the command line --per-example), or "
            f"export it with a fixed batch of 1") from None


def _difference(gap, scale, got, expected):
    if got != expected:
        return f"an output of shape {got} where each example's make {expected}"
    return f"largest difference {gap:.3g}, {gap / scale:.2g} of the largest output"


def _file_runner(model, name, one):
    """``run(x)``: the file's output for ``x`` (its input ``name``) by onnxruntime, or by
    onnx's reference evaluator where onnxruntime has no kernel (a float64 Conv); None if
    neither runs it on the batch of one ``one``."""
    for make in (_onnxruntime, _reference):
        try:
            run = make(model, name)
            run(one)
            return run
        except Exception:   # noqa: BLE001, S112 (this runtime cannot run it: the next)
            continue
    return None


def _onnxruntime(model, name):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4          # its errors are the caller's to report
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {name: x})[0]


def _reference(model, name):
    from onnx.reference import ReferenceEvaluator
    evaluator = ReferenceEvaluator(model)
    return lambda x: evaluator.run(None, {name: x})[0]
