"""The table from ATen operators (as ``torch.export`` records them) to fwdderiv layers.

One short rule per operator, in the manner of autograd's derivative tables. A rule gets the
import context and the operator's arguments by schema name, emits fwdderiv nodes through
``ctx.emit(layer, inputs)`` and returns the name of the value that stands for the
operator's result. Layers that exist only in newer fwdderiv versions are looked up by
their torch.nn class name (:meth:`_Context.layer`), so they are wired in once they exist.
"""
import numbers

_BIG = 2 ** 62  # "to the end" for Slice (PyTorch records sys.maxsize)


def _ints(v, n=2):
    if isinstance(v, numbers.Integral):
        return [int(v)] * n
    v = [int(i) for i in v]
    return v * n if len(v) == 1 else v


def _identity(ctx, a):
    return ctx.value(a["self"] if "self" in a else a["input"])


def _dropout(ctx, a):
    if a.get("train"):
        ctx.fail("dropout in training mode", "call module.eval() before importing")
    return _identity(ctx, a)


def _elementwise(name, **fixed):
    def rule(ctx, a):
        x = a["self"] if "self" in a else a["input"]
        kwargs = {k: a[src] for k, src in fixed.items()}
        return ctx.emit(ctx.layer(name, **kwargs), x)
    return rule


def _elu(ctx, a):
    if a["scale"] != 1 or a["input_scale"] != 1:
        ctx.fail("scale/input_scale other than 1 (SELU, CELU)", "use nn.ELU")
    return ctx.emit(ctx.layer("ELU", alpha=float(a["alpha"])), a["self"])


def _hardtanh(ctx, a):
    lo, hi = float(a["min_val"]), float(a["max_val"])
    if (lo, hi) == (0.0, 6.0) and ctx.has("ReLU6"):  # nn.ReLU6 records hardtanh
        return ctx.emit(ctx.layer("ReLU6"), a["self"])
    return ctx.emit(ctx.layer("Hardtanh", min_val=lo, max_val=hi), a["self"])


def _conv(ctx, a):
    x = a["input"]
    if a.get("transposed"):
        ctx.fail("transposed convolution", "not supported")
    if len(ctx.shape(x)) != 3:
        ctx.fail(f"a {len(ctx.shape(x)) - 1}-d convolution", "only 2-d convolution (N, C, H, W)")
    w = ctx.param(a["weight"])
    b = None if a["bias"] is None else ctx.param(a["bias"])
    out_c, in_g, kh, kw = w.shape
    groups = int(a["groups"])
    dilation = _ints(a["dilation"])
    padding = a["padding"]
    if padding == "valid":
        padding = [0, 0]
    elif padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, (kh, kw))]
        # symmetric when even; otherwise the layer must support 'same' itself
        padding = "same" if any(t % 2 for t in total) else [t // 2 for t in total]
    else:
        padding = _ints(padding)
    layer = ctx.layer("Conv2d", in_channels=in_g * groups, out_channels=out_c,
                      kernel_size=(kh, kw), stride=_ints(a["stride"]), padding=padding,
                      dilation=dilation, groups=groups, bias=b is not None)
    layer.weight, layer.bias = w, b
    return ctx.emit(layer, x)


def _linear(ctx, a):
    x = a["input"]
    if len(ctx.shape(x)) != 1:
        ctx.fail(f"a linear map of per-example shape {ctx.shape(x)}",
                 "flatten to (N, features) before nn.Linear")
    w = ctx.param(a["weight"])
    b = None if a.get("bias") is None else ctx.param(a["bias"])
    layer = ctx.layer("Linear", in_features=w.shape[1], out_features=w.shape[0],
                      bias=b is not None)
    layer.weight, layer.bias = w, b
    return ctx.emit(layer, x)


def _batch_norm(ctx, a):
    x = a["input"]
    if a.get("training"):
        ctx.fail("batch normalization in training mode", "call module.eval() before importing")
    if a["running_mean"] is None:
        ctx.fail("batch normalization without running statistics",
                 "use track_running_stats=True")
    mean, var = ctx.param(a["running_mean"]), ctx.param(a["running_var"])
    c = mean.shape[0]
    name = {3: "BatchNorm2d", 1: "BatchNorm1d", 2: "BatchNorm1d"}.get(len(ctx.shape(x)))
    momentum = a.get("momentum")           # None (a cumulative average): keep the default
    extra = {"momentum": float(momentum)} if isinstance(momentum, (int, float)) else {}
    layer = ctx.layer(name or "BatchNorm3d", num_features=c, eps=float(a["eps"]), **extra)
    layer.running_mean, layer.running_var = mean, var
    layer.weight = ctx.param(a["weight"]) if a["weight"] is not None else mean * 0 + 1
    layer.bias = ctx.param(a["bias"]) if a["bias"] is not None else mean * 0
    return ctx.emit(layer, x)


def _max_pool(ctx, a):
    x = a["self"]
    k = _ints(a["kernel_size"])
    stride = _ints(a["stride"]) if a["stride"] else k
    extra = {}
    if _ints(a["dilation"]) != [1, 1]:
        extra["dilation"] = _ints(a["dilation"])
    if a["ceil_mode"]:
        extra["ceil_mode"] = True
    return ctx.emit(ctx.layer("MaxPool2d", kernel_size=k, stride=stride,
                              padding=_ints(a["padding"]), **extra), x)


def _avg_pool(ctx, a):
    x = a["self"]
    k = _ints(a["kernel_size"])
    stride = _ints(a["stride"]) if a["stride"] else k
    extra = {}
    if a["ceil_mode"]:
        extra["ceil_mode"] = True
    if not a["count_include_pad"] and any(_ints(a["padding"])):
        extra["count_include_pad"] = False
    if a["divisor_override"] is not None:
        extra["divisor_override"] = int(a["divisor_override"])
    return ctx.emit(ctx.layer("AvgPool2d", kernel_size=k, stride=stride,
                              padding=_ints(a["padding"]), **extra), x)


def _adaptive_avg_pool(ctx, a):
    x = a["self"]
    (_, h, w), (oh, ow) = ctx.shape(x), _ints(a["output_size"])
    if h % oh == 0 and w % ow == 0:  # equal windows: an ordinary average pooling
        return ctx.emit(ctx.layer("AvgPool2d", kernel_size=(h // oh, w // ow)), x)
    return ctx.emit(ctx.layer("AdaptiveAvgPool2d", output_size=(oh, ow)), x)


def _mean(ctx, a):
    x = a["self"]
    shape = ctx.shape(x)
    dims = sorted(d % (len(shape) + 1) for d in a["dim"])
    if len(shape) != 3 or dims != [2, 3]:
        ctx.fail(f"a mean over axes {list(a['dim'])}", "only the spatial mean x.mean((2, 3))")
    y = ctx.emit(ctx.layer("AvgPool2d", kernel_size=shape[1:]), x)
    return y if a["keepdim"] else ctx.emit(ctx.layer("Flatten"), y)


def _softmax(name):
    def rule(ctx, a):
        x = a["self"] if "self" in a else a["input"]
        nd = len(ctx.shape(x))
        dim = int(a["dim"]) % (nd + 1)
        if dim == 0:
            ctx.fail("a softmax over the batch axis", "normalise over a per-example axis")
        if dim == nd:
            return ctx.emit(ctx.layer(name), x)
        return ctx.emit(ctx.layer(name, dim=dim), x)
    return rule


def _reshape(ctx, a, node=None):
    x = a["self"] if "self" in a else a["input"]
    src, out = ctx.shape(x), ctx.out_shape()
    if tuple(src) == tuple(out):
        return ctx.value(x)
    if len(out) == 1:
        return ctx.emit(ctx.layer("Flatten"), x)
    return ctx.emit(ctx.layer("Reshape", shape=list(out)), x)


def _cat(ctx, a):
    xs = list(a["tensors"])
    nd = len(ctx.shape(xs[0]))
    dim = int(a["dim"]) % (nd + 1)
    if dim == 0:
        ctx.fail("a concatenation along the batch axis", "concatenate along dim >= 1")
    return ctx.emit(ctx.layer("Concat", dim=dim), xs)


def _scalar(ctx, v):
    """A Python number, or a 0-d constant tensor, as a float; None for a graph value."""
    if isinstance(v, numbers.Real):
        return float(v)
    c = ctx.constant(v)
    if c is not None and c.size == 1:
        return float(c.reshape(()))
    return None


def _add(sign):
    def rule(ctx, a):
        x, y, alpha = a["self"], a["other"], a.get("alpha", 1)
        if _scalar(ctx, x) is not None or _scalar(ctx, y) is not None:
            ctx.fail("adding a constant", "no bias-only layer exists; fold it into a "
                     "Linear/Conv2d bias")
        if ctx.constant(x) is not None or ctx.constant(y) is not None:
            ctx.fail("adding a constant tensor", "fold it into a Linear/Conv2d bias")
        if ctx.shape(x) != ctx.shape(y):
            ctx.fail(f"a broadcasting addition {ctx.shape(x)} + {ctx.shape(y)}",
                     "add values of equal per-example shapes")
        factor = sign * float(alpha)
        if factor != 1:
            y = ctx.emit(ctx.layer("Scale", factor=factor), y)
        return ctx.emit(ctx.layer("Add"), [x, y])
    return rule


def _mul(ctx, a):
    x, y = a["self"], a["other"]
    for u, v in ((x, y), (y, x)):
        c = _scalar(ctx, v)
        if c is not None:
            return ctx.emit(ctx.layer("Scale", factor=c), u)
    if ctx.constant(x) is not None or ctx.constant(y) is not None:
        ctx.fail("a product with a constant tensor", "only products by scalars or of two "
                 "values of the same shape")
    if ctx.shape(x) != ctx.shape(y):
        ctx.fail(f"a broadcasting product {ctx.shape(x)} * {ctx.shape(y)}",
                 "multiply values of equal per-example shapes")
    return ctx.emit(ctx.layer("Mul"), [x, y])


def _div(ctx, a):
    c = _scalar(ctx, a["other"])
    if c is None or c == 0:
        ctx.fail("a division by a value other than a nonzero constant",
                 "divide by constants only")
    return ctx.emit(ctx.layer("Scale", factor=1.0 / c), a["self"])


def _neg(ctx, a):
    return ctx.emit(ctx.layer("Scale", factor=-1.0), a["self"])


def _slice(ctx, a):
    x = a["self"]
    dim = int(a["dim"]) % (len(ctx.shape(x)) + 1)
    start = 0 if a["start"] is None else int(a["start"])
    end = _BIG if a["end"] is None else min(int(a["end"]), _BIG)
    step = int(a["step"])
    if ctx.out_shape() == ctx.shape(x) and dim != 0:
        return ctx.value(x)
    if dim == 0:
        if start == 0 and end >= _BIG and step == 1:
            return ctx.value(x)
        ctx.fail("slicing the batch axis", "slice per-example axes only")
    return ctx.emit(ctx.layer("Slice", starts=[start], ends=[end], axes=[dim], steps=[step]), x)


def _select(ctx, a):
    x = a["self"]
    dim = int(a["dim"]) % (len(ctx.shape(x)) + 1)
    if dim == 0:
        ctx.fail("indexing the batch axis", "index per-example axes only")
    i = int(a["index"]) % ctx.shape(x)[dim - 1]
    y = ctx.emit(ctx.layer("Slice", starts=[i], ends=[i + 1], axes=[dim]), x)
    out = ctx.out_shape()
    return ctx.emit(ctx.layer("Flatten") if len(out) == 1 else
                    ctx.layer("Reshape", shape=list(out)), y)


_PADS = {"reflect": "ReflectionPad2d", "replicate": "ReplicationPad2d"}


def _pad(ctx, a):
    x = a["self"] if "self" in a else a["input"]
    pad = [int(p) for p in a["pad"]]
    mode = a.get("mode", "constant")
    value = a.get("value")
    value = 0.0 if value is None else float(value)
    if min(pad) < 0:
        ctx.fail("negative padding (cropping)", "slice instead")
    if mode != "constant":
        if mode not in _PADS or len(pad) != 4:
            ctx.fail(f"padding mode {mode!r} with {len(pad) // 2} axes",
                     "use constant, reflect or replicate padding of the last two axes")
        return ctx.emit(ctx.layer(_PADS[mode], padding=pad), x)
    return ctx.emit(ctx.layer("Pad", pad=pad, value=value), x)


def _getitem(ctx, a):
    src, i = a["self"], a["index"]
    if i != 0 or src.name not in ctx.tuples:
        ctx.fail(f"output {i} of {src.target}", "only the first output of a multi-output "
                 "operator (max-pool indices, batch-norm statistics) can be used")
    return ctx.value(src)


def _tuple(rule):
    """A rule for an operator returning a tuple whose first item is the result."""
    def wrapped(ctx, a):
        ctx.tuples.add(ctx.node.name)
        return rule(ctx, a)
    return wrapped


#: ATen operator (overload packet name) -> rule.
RULES = {
    "conv2d": _conv, "convolution": _conv, "linear": _linear,
    "relu": _elementwise("ReLU"), "relu_": _elementwise("ReLU"),
    "sigmoid": _elementwise("Sigmoid"), "sigmoid_": _elementwise("Sigmoid"),
    "tanh": _elementwise("Tanh"), "tanh_": _elementwise("Tanh"),
    "leaky_relu": _elementwise("LeakyReLU", negative_slope="negative_slope"),
    "leaky_relu_": _elementwise("LeakyReLU", negative_slope="negative_slope"),
    "elu": _elu, "elu_": _elu,
    "gelu": _elementwise("GELU", approximate="approximate"),
    "silu": _elementwise("SiLU"), "silu_": _elementwise("SiLU"),
    "softplus": _elementwise("Softplus", beta="beta", threshold="threshold"),
    "hardtanh": _hardtanh, "hardtanh_": _hardtanh,
    "mish": _elementwise("Mish"), "hardswish": _elementwise("Hardswish"),
    "hardswish_": _elementwise("Hardswish"),
    "batch_norm": _batch_norm,
    "_native_batch_norm_legit_no_training": _tuple(_batch_norm),
    "max_pool2d": _max_pool, "max_pool2d_with_indices": _tuple(_max_pool),
    "avg_pool2d": _avg_pool, "adaptive_avg_pool2d": _adaptive_avg_pool, "mean": _mean,
    "softmax": _softmax("Softmax"), "_softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"), "_log_softmax": _softmax("LogSoftmax"),
    "view": _reshape, "reshape": _reshape, "_unsafe_view": _reshape, "flatten": _reshape,
    "unflatten": _reshape, "squeeze": _reshape, "unsqueeze": _reshape,
    "cat": _cat, "concat": _cat,
    "add": _add(1), "add_": _add(1), "sub": _add(-1), "sub_": _add(-1),
    "mul": _mul, "mul_": _mul, "div": _div, "div_": _div, "neg": _neg,
    "slice": _slice, "select": _select,
    "pad": _pad, "constant_pad_nd": _pad,
    "dropout": _dropout, "dropout_": _dropout, "feature_dropout": _dropout,
    "alpha_dropout": _dropout, "native_dropout": _tuple(_dropout),
    "clone": _identity, "contiguous": _identity, "alias": _identity, "detach": _identity,
    "lift_fresh_copy": _identity,
    "getitem": _getitem,
}
