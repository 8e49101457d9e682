"""The table from ONNX operators to fwdderiv layers: one rule per operator.

A rule reads the node's inputs and attributes, emits fwdderiv nodes (``imp.emit``) and
records which fwdderiv value stands for the node's output. Operators on shapes (``Shape``,
``Gather``, ``Unsqueeze``, ``Concat`` of shapes, ...) are evaluated at import time, with
the batch size kept symbolic (``None``).
"""
import numpy as np

#: The batch size inside shape computations: unknown at import time.
BATCH = None

_BIG = 2 ** 62


def _out(imp, node, name):
    imp.values[node.output[0]] = name


def _unused_extra_outputs(imp, node, what):
    used = {i for n in imp.graph.node for i in n.input} | {o.name for o in imp.graph.output}
    if any(o and o in used for o in node.output[1:]):
        imp.fail(f"using its {what} output", fix="use only the first output")


def _sym_pads(imp, pads, n=2):
    pads = list(pads or [0] * (2 * n))
    if pads[:n] != pads[n:]:
        imp.fail(f"asymmetric pads {pads}", "pads", "pad explicitly with a Pad node")
    return pads[:n]


def _auto_pad(imp, a):
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        imp.fail(f"auto_pad={a['auto_pad']!r}", "auto_pad", "export with explicit pads")


def conv(imp, node, a):
    _auto_pad(imp, a)
    x = node.input[0]
    if len(imp.shape(x)) != 3:
        imp.fail(f"a {len(imp.shape(x)) - 1}-d convolution", "kernel_shape")
    w = imp.const(node.input[1]).copy()
    b = imp.const(node.input[2]).copy() if len(node.input) > 2 and node.input[2] else None
    g = int(a.get("group", 1))
    layer = imp.layer("Conv2d", "pads", in_channels=w.shape[1] * g, out_channels=w.shape[0],
                      kernel_size=w.shape[2:], stride=list(a.get("strides", [1, 1])),
                      padding=_sym_pads(imp, a.get("pads")),
                      dilation=list(a.get("dilations", [1, 1])), groups=g, bias=b is not None)
    layer.weight, layer.bias = w, b
    _out(imp, node, imp.emit(layer, x))


def gemm(imp, node, a):
    x = node.input[0]
    if a.get("transA", 0):
        imp.fail("transA=1", "transA")
    w = imp.const(node.input[1])
    w = (w if a.get("transB", 0) else w.T) * w.dtype.type(a.get("alpha", 1.0))
    c = imp.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if c is not None:
        if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
            imp.fail(f"C of shape {c.shape} (a bias per output is needed)", "C")
        c = np.broadcast_to(c.reshape(-1) * c.dtype.type(a.get("beta", 1.0)),
                            (w.shape[0],)).astype(w.dtype)
    _linear(imp, node, x, np.ascontiguousarray(w), c)


def _linear(imp, node, x, w, b):
    if imp.shape(x) != (w.shape[1],):
        imp.fail(f"a product of per-example shape {imp.shape(x)} with weights {w.shape[::-1]}")
    layer = imp.layer("Linear", in_features=w.shape[1], out_features=w.shape[0],
                      bias=b is not None)
    layer.weight, layer.bias = w, b
    _out(imp, node, imp.emit(layer, x))


def matmul(imp, node, a):
    if node.input[0] not in imp.values:
        imp.fail("a constant on the left of MatMul")
    if imp.const(node.input[1]).ndim != 2 or len(imp.shape(node.input[0])) != 1:
        imp.fail("a batched or broadcast MatMul", fix="only (N, K) @ (K, M) with constant weights")
    _linear(imp, node, node.input[0], np.ascontiguousarray(imp.const(node.input[1]).T), None)


def _elementwise(name, **names):
    def rule(imp, node, a):
        kwargs = {k: a.get(src, default) for k, (src, default) in names.items()}
        kwargs = {k: v.decode() if isinstance(v, bytes) else v for k, v in kwargs.items()}
        _out(imp, node, imp.emit(imp.layer(name, **kwargs), node.input[0]))
    return rule


def _pool(imp, node, a, name):
    _auto_pad(imp, a)
    x = node.input[0]
    k = list(a["kernel_shape"])
    kwargs = {"kernel_size": k, "stride": list(a.get("strides", [1, 1])),
              "padding": _sym_pads(imp, a.get("pads"))}
    if a.get("ceil_mode", 0):
        kwargs["ceil_mode"] = True
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        kwargs["dilation"] = list(a["dilations"])
    if name == "AvgPool2d" and any(kwargs["padding"]) and not a.get("count_include_pad", 0):
        kwargs["count_include_pad"] = False
    if a.get("storage_order", 0):
        imp.fail("storage_order=1", "storage_order")
    _unused_extra_outputs(imp, node, "Indices")
    _out(imp, node, imp.emit(imp.layer(name, "kernel_shape", **kwargs), x))


def maxpool(imp, node, a):
    _pool(imp, node, a, "MaxPool2d")


def averagepool(imp, node, a):
    _pool(imp, node, a, "AvgPool2d")


def global_average_pool(imp, node, a):
    shape = imp.shape(node.input[0])
    if len(shape) != 3:
        imp.fail(f"per-example shape {shape}, expected (C, H, W)")
    _out(imp, node, imp.emit(imp.layer("AvgPool2d", kernel_size=shape[1:]), node.input[0]))


def batchnorm(imp, node, a):
    if a.get("training_mode", 0):
        imp.fail("training_mode=1", "training_mode")
    _unused_extra_outputs(imp, node, "running statistics")
    scale, bias, mean, var = (imp.const(n).copy() for n in node.input[1:5])
    nd = len(imp.shape(node.input[0]))
    layer = imp.layer("BatchNorm2d" if nd == 3 else "BatchNorm1d", num_features=mean.size,
                      eps=float(a.get("epsilon", 1e-5)))
    layer.weight, layer.bias, layer.running_mean, layer.running_var = scale, bias, mean, var
    _out(imp, node, imp.emit(layer, node.input[0]))


def _scalar(imp, name):
    c = imp.consts.get(name)
    return None if c is None or c.size != 1 else float(c.reshape(()))


def _fold_bias(imp, node, x, c):
    """x + constant where x is a bias-free Linear/Conv2d output used only here."""
    src = imp.values.get(x)
    entry = next((e for e in imp.nodes if e[0] == src), None)
    users = sum(x in n.input for n in imp.graph.node)
    layer = entry[1] if entry else None
    if layer is None or users != 1 or getattr(layer, "bias", 0) is not None or \
            not hasattr(layer, "weight"):
        imp.fail("adding a constant that is not the bias of the preceding Gemm/MatMul/Conv")
    out = layer.weight.shape[0]
    if c.size != out or (c.ndim > 1 and c.shape[-1] != c.size and c.shape[-c.ndim] != 1
                         and type(layer).__name__ == "Linear"):
        imp.fail(f"a constant of shape {c.shape} added to {layer!r}")
    layer.bias = c.reshape(out).astype(layer.weight.dtype)
    if hasattr(layer, "param_names"):
        layer.param_names = ("weight", "bias")
    _out(imp, node, src)


def _binary(kind):
    def rule(imp, node, a):
        x, y = node.input[0], node.input[1]
        if x in imp.shapes or y in imp.shapes:
            return _shape_arith(imp, node, kind)
        xv, yv = x in imp.values, y in imp.values
        if xv and yv:
            if imp.shape(x) != imp.shape(y):
                imp.fail(f"broadcasting {imp.shape(x)} with {imp.shape(y)}")
            if kind in ("Add", "Sub"):
                if kind == "Sub":
                    y = imp.emit(imp.layer("Scale", factor=-1.0), y, node.output[0] + "_neg")
                _out(imp, node, imp.emit(imp.layer("Add"), [x, y]))
            elif kind == "Mul":
                _out(imp, node, imp.emit(imp.layer("Mul"), [x, y]))
            else:
                imp.fail("a division by a computed value", fix="divide by constants only")
            return
        if not (xv or yv):
            imp.fail("an operation between constants (fold constants before importing)")
        v, c = (x, y) if xv else (y, x)
        s = _scalar(imp, c)
        if kind == "Mul" and s is not None:
            return _out(imp, node, imp.emit(imp.layer("Scale", factor=s), v))
        if kind == "Div" and xv and s not in (None, 0.0):
            return _out(imp, node, imp.emit(imp.layer("Scale", factor=1.0 / s), v))
        if kind == "Add":
            return _fold_bias(imp, node, v, imp.consts[c])
        if kind == "Sub" and xv:
            return _fold_bias(imp, node, v, -imp.consts[c])
        imp.fail(f"{kind} with the constant {c!r} of shape {imp.consts[c].shape}")
    return rule


def concat(imp, node, a):
    if any(i in imp.shapes or i in imp.consts for i in node.input):
        parts = [imp.shapes[i] if i in imp.shapes else list(imp.const(i).reshape(-1))
                 for i in node.input]
        imp.shapes[node.output[0]] = [v for p in parts for v in p]
        return
    nd = len(imp.shape(node.input[0]))
    axis = int(a["axis"]) % (nd + 1)
    if axis == 0:
        imp.fail("concatenation along the batch axis", "axis")
    _out(imp, node, imp.emit(imp.layer("Concat", dim=axis), list(node.input)))


def flatten(imp, node, a):
    nd = len(imp.shape(node.input[0]))
    if int(a.get("axis", 1)) % (nd + 1) != 1:
        imp.fail(f"axis={a.get('axis')} (only 1 keeps the batch axis)", "axis")
    _out(imp, node, imp.emit(imp.layer("Flatten"), node.input[0]))


def _reshape_to(imp, node, x, per):
    src = imp.shape(x)
    if tuple(per) == tuple(src):
        return _out(imp, node, imp.value(x))
    if len(per) == 1 and per[0] in (-1, int(np.prod(src))):
        layer = imp.layer("Flatten")
    else:
        layer = imp.layer("Reshape", shape=list(per))
    _out(imp, node, imp.emit(layer, x))


def reshape(imp, node, a):
    x, target = node.input[0], node.input[1]
    if x in imp.shapes:
        imp.fail("reshaping a shape computation")
    shape = imp.shapes[target] if target in imp.shapes else list(imp.const(target))
    src = imp.shape(x)
    per = []
    for i, s in enumerate(shape[1:], start=1):
        if s == 0 and not a.get("allowzero", 0):
            s = src[i - 1] if i - 1 < len(src) else imp.fail("a 0 past the input's rank")
        per.append(int(s) if s is not BATCH else imp.fail("the batch size inside a shape"))
    first = shape[0]
    if first not in (BATCH, 0, -1):
        imp.fail(f"a fixed batch size {first} in the target shape {shape}", "shape",
                 "export with a dynamic batch axis (dynamic_axes / dynamic_shapes)")
    if first == -1 and -1 in per:
        imp.fail(f"two -1 in the target shape {shape}")
    _reshape_to(imp, node, x, per)


def transpose(imp, node, a):
    x = node.input[0]
    shape = (None,) + imp.shape(x)
    perm = list(a.get("perm", range(len(shape))[::-1]))
    moved = [p for p in perm if shape[p] != 1]
    if perm[0] != 0 or moved != sorted(moved):
        imp.fail(f"perm={perm} moves data on a per-example shape {shape[1:]}", "perm",
                 "only transposes that are no-ops on the memory layout are supported")
    _reshape_to(imp, node, x, [shape[p] for p in perm[1:]])


def _softmax(name):
    def rule(imp, node, a):
        nd = len(imp.shape(node.input[0]))
        axis = int(a.get("axis", -1 if imp.opset >= 13 else 1)) % (nd + 1)
        if axis == 0:
            imp.fail("a softmax over the batch axis", "axis")
        if imp.opset < 13 and axis != nd:
            imp.fail(f"axis={axis} before opset 13 (coerces to 2-d)", "axis")
        layer = imp.layer(name) if axis == nd else imp.layer(name, "axis", dim=axis)
        _out(imp, node, imp.emit(layer, node.input[0]))
    return rule


def pad(imp, node, a):
    x = node.input[0]
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = [int(p) for p in imp.const(node.input[1])]
    value = 0.0
    if len(node.input) > 2 and node.input[2]:
        value = float(imp.const(node.input[2]).reshape(()))
    nd = len(imp.shape(x)) + 1
    axes = list(range(nd))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(v) % nd for v in imp.const(node.input[3])]
    begin, end = pads[:len(axes)], pads[len(axes):]
    widths = {ax: (b, e) for ax, b, e in zip(axes, begin, end)}
    if widths.get(0, (0, 0)) != (0, 0):
        imp.fail("padding the batch axis", "pads")
    torch_order = []
    for ax in range(nd - 1, 0, -1):
        torch_order += list(widths.get(ax, (0, 0)))
    if min(torch_order) < 0:
        imp.fail("negative pads (cropping)", "pads", "use Slice")
    if mode == "constant":
        layer = imp.layer("Pad", pad=torch_order, value=value)
    elif mode in ("reflect", "edge") and not any(torch_order[4:]):
        layer = imp.layer({"reflect": "ReflectionPad2d", "edge": "ReplicationPad2d"}[mode],
                          "mode", padding=torch_order[:4])
    else:
        imp.fail(f"mode={mode!r}", "mode")
    _out(imp, node, imp.emit(layer, x))


def slice_(imp, node, a):
    x = node.input[0]
    get = lambda i: [int(v) for v in imp.const(node.input[i])] if len(node.input) > i and \
        node.input[i] else None  # noqa: E731
    starts, ends, axes, steps = get(1), get(2), get(3), get(4)
    if x in imp.shapes:
        sh = imp.shapes[x]
        imp.shapes[node.output[0]] = sh[slice(starts[0], ends[0], (steps or [1])[0])]
        return
    nd = len(imp.shape(x)) + 1
    axes = [v % nd for v in (axes or range(len(starts)))]
    steps = steps or [1] * len(axes)
    keep = [(s, min(e, _BIG), ax, st) for s, e, ax, st in zip(starts, ends, axes, steps)]
    if any(st < 1 for *_, st in keep):
        imp.fail("negative steps", "steps")
    for s, e, ax, st in keep:
        if ax == 0 and not (s == 0 and e >= _BIG // 2 and st == 1):
            imp.fail("slicing the batch axis", "axes")
    keep = [k for k in keep if k[2] != 0]
    if not keep:
        return _out(imp, node, imp.value(x))
    s, e, ax, st = zip(*keep)
    _out(imp, node, imp.emit(imp.layer("Slice", starts=s, ends=e, axes=ax, steps=st), x))


def identity(imp, node, a):
    x = node.input[0]
    if x in imp.shapes:
        imp.shapes[node.output[0]] = imp.shapes[x]
    elif x in imp.consts:
        imp.consts[node.output[0]] = imp.consts[x]
    else:
        _out(imp, node, imp.value(x))


def dropout(imp, node, a):
    if len(node.input) > 2 and node.input[2] and bool(imp.const(node.input[2]).reshape(())):
        imp.fail("training_mode=True", "training_mode")
    _unused_extra_outputs(imp, node, "mask")
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


RULES = {
    "Conv": conv, "Gemm": gemm, "MatMul": matmul,
    "Relu": _elementwise("ReLU"), "Sigmoid": _elementwise("Sigmoid"),
    "Tanh": _elementwise("Tanh"),
    "LeakyRelu": _elementwise("LeakyReLU", negative_slope=("alpha", 0.01)),
    "Gelu": _elementwise("GELU", approximate=("approximate", "none")),
    "MaxPool": maxpool, "AveragePool": averagepool, "GlobalAveragePool": global_average_pool,
    "BatchNormalization": batchnorm,
    "Add": _binary("Add"), "Sub": _binary("Sub"), "Mul": _binary("Mul"), "Div": _binary("Div"),
    "Concat": concat, "Flatten": flatten, "Reshape": reshape, "Transpose": transpose,
    "Softmax": _softmax("Softmax"), "LogSoftmax": _softmax("LogSoftmax"),
    "Pad": pad, "Slice": slice_, "Dropout": dropout, "Identity": identity,
    "Constant": constant,
    "Shape": shape, "Gather": gather, "Unsqueeze": unsqueeze, "Cast": cast,
}
