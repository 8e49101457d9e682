"""Import an ONNX model as a fwdderiv network (opsets 11 to 25, dynamic batch axis).

Per-example shapes are tracked through the fwdderiv layers as they are built
(``layer.output_shape``), so no shape inference is needed; the small shape computations
that exporters emit for ``x.view(x.size(0), -1)`` (``Shape``, ``Gather``, ``Unsqueeze``,
``Concat``, ...) are evaluated at import time, with the batch size kept symbolic.
"""
import numpy as np

from .. import registry
from ..layers.exchange import BATCH

#: Opsets 21-25 changed the supported operators only by adding element types (bfloat16,
#: float8, int4); the onnx package's node tests of those versions run in the test suite.
MAX_OPSET = 25


class OnnxImportError(ValueError):
    """An ONNX node, operator or attribute value fwdderiv cannot represent exactly."""


class _Import:
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
        base = (out or self.node.output[0]).replace("/", "_").strip("_") or "node"
        name, k = base, 1
        while name in self.dims:
            name, k = f"{base}_{k}", k + 1
        try:
            self.dims[name] = tuple(layer.output_shape(*[self.dims[i] for i in inputs]))
        except (TypeError, ValueError) as err:
            self.fail(f"{layer!r} on per-example shapes {[self.dims[i] for i in inputs]} ({err})")
        self.nodes.append((name, layer, inputs[0] if len(inputs) == 1 else inputs))
        self.values[name] = name  # so that chained emits can read it
        return name


def from_onnx(model):
    """Import an ONNX model as a fwdderiv network computing the same function.

    Parameters
    ----------
    model : str, path or onnx.ModelProto
        One input of shape ``(N, *S)`` whose batch axis may be symbolic, one output.

    Returns
    -------
    Sequential or Graph
        Weights copied from the initializers, in ONNX's (= PyTorch's) layout and dtype.

    Raises
    ------
    OnnxImportError
        (a ``ValueError``) naming the node, the operator and the attribute of the first
        thing fwdderiv cannot represent exactly.
    """
    import onnx
    from .onnx_ops import RULES, SHAPE_RULES, on_shapes
    from .torch_import import _prune
    from .. import Graph, Sequential
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    imp = _Import(model)
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
        rule(imp, node, imp.attrs(node))
    out = imp.value(imp.graph.output[0].name)
    if out == "input":
        raise OnnxImportError("from_onnx: the model returns its input unchanged")
    nodes = _prune(imp.nodes, out)
    if all(inputs == (nodes[i - 1][0] if i else "input") for i, (_, _, inputs) in enumerate(nodes)):
        return Sequential([layer for _, layer, _ in nodes])
    return Graph(nodes)
