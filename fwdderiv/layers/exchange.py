"""What a layer's registry entry is written with: helpers for its PyTorch and ONNX import
rules and the default PyTorch export.

A PyTorch rule is ``rule(ctx, args) -> value name``: ``args`` are the ATen operator's
arguments by schema name; ``ctx`` is the import context of
:mod:`fwdderiv.interop.torch_import` (``ctx.layer(name, **kw)``, ``ctx.emit(layer,
inputs)``, ``ctx.param``, ``ctx.shape``, ``ctx.fail(what, fix)``, ...). An ONNX rule is
``rule(imp, node, attrs)`` and records its result with :func:`onnx_output`; ``imp`` is the
importer of :mod:`fwdderiv.interop.onnx_import`. Neither module is imported here: a layer
module can define its rules without pulling in PyTorch or ONNX.
"""
import numbers

import numpy as np

#: "To the end" for a slice (PyTorch records sys.maxsize, ONNX INT64_MAX).
BIG = 2 ** 62
#: The batch size inside an ONNX shape computation: unknown at import time.
BATCH = None


# -- PyTorch -----------------------------------------------------------------------------
def ints(v, n=2):
    """An int or a list of ints as a list of ``n`` ints (a 1-list is repeated)."""
    if isinstance(v, numbers.Integral):
        return [int(v)] * n
    v = [int(i) for i in v]
    return v * n if len(v) == 1 else v


def torch_input(args):
    """The operator's main tensor argument (``self`` or ``input`` by schema)."""
    return args["self"] if "self" in args else args["input"]


def torch_weight_bias(ctx, a):
    """The operator's ``weight`` and ``bias`` (None when absent) as arrays."""
    w = ctx.param(a["weight"])
    return w, None if a.get("bias") is None else ctx.param(a["bias"])


def torch_scalar(ctx, v):
    """A Python number, or a 0-d constant tensor, as a float; None for a graph value."""
    if isinstance(v, numbers.Real):
        return float(v)
    c = ctx.constant(v)
    if c is not None and c.size == 1:
        return float(c.reshape(()))
    return None


def torch_elementwise(name, **fixed):
    """A rule emitting layer ``name``; ``fixed`` maps constructor argument -> operator
    argument."""
    def rule(ctx, a):
        kwargs = {k: a[src] for k, src in fixed.items()}
        return ctx.emit(ctx.layer(name, **kwargs), torch_input(a))
    return rule


def returns_tuple(rule):
    """A rule for an operator returning a tuple whose first item is the result (its
    ``getitem`` 0 then reads that result)."""
    def wrapped(ctx, a):
        ctx.tuples.add(ctx.node.name)
        return rule(ctx, a)
    return wrapped


def moves_batch(rule):
    """Mark a PyTorch rule that takes an operator whose result does not keep the batch axis
    first: it gives that result's readers their values ahead (``ctx.ahead``) and returns
    None; any other rule's operator is refused there."""
    rule.moves_batch = True
    return rule


def emit_item(ctx, x, shape, axis, i, rest):
    """``x.permute(dims)[i]`` for a permutation ``dims`` that brings per-example axis
    ``axis`` (1-based) of the value ``x`` (per-example ``shape``) to the front and the
    batch axis second: item ``i`` along ``axis``, its other axes in the order ``rest``
    (the batch first). The name of the value; for PyTorch's rules and ONNX's alike."""
    y = ctx.emit(ctx.layer("Slice", starts=[i], ends=[i + 1], axes=[axis]), x)
    y = ctx.emit(ctx.layer("Reshape", shape=[s for k, s in enumerate(shape) if k != axis - 1]), y)
    if list(rest) != sorted(rest):
        y = ctx.emit(ctx.layer("Permute", dims=list(rest)), y)
    return y


def items_permuted(dims, fail):
    """For a permutation ``dims`` (the batch axis 0 moved): the per-example axis brought to
    the front and the order ``rest`` of the others; ``fail(what, fix)`` unless the batch
    axis comes second (then each item along the first axis keeps it first)."""
    axis = dims[0]
    rest = [d - (d > axis) for d in dims[1:]]
    if rest[0] != 0:
        fail(f"a permutation {list(dims)} that moves the batch axis past the second place",
             "keep the batch axis first, or second and take items along the first axis")
    return axis, rest


def torch_dim(ctx, x, dim, what):
    """``dim`` of the operator as a per-example axis (1-based); refuses the batch axis."""
    d = int(dim) % (len(ctx.shape(x)) + 1)
    if d == 0:
        ctx.fail(f"{what} along the batch axis", f"{what} along a per-example axis")
    return d


def per_example(ctx, c, shape):
    """The constant array ``c`` as a per-example operand of a value of per-example
    ``shape``: a leading batch axis of size 1 dropped; it must broadcast to ``shape``
    without enlarging it (``ctx.fail`` otherwise). For PyTorch's and ONNX's rules alike."""
    c = np.asarray(c)
    if c.ndim == len(shape) + 1 and c.shape[0] == 1:
        c = c[0]
    try:
        fits = c.ndim <= len(shape) and np.broadcast_shapes(c.shape, tuple(shape)) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        ctx.fail(f"a constant of shape {c.shape} with a value of per-example shape "
                 f"{tuple(shape)}", fix="use constants that broadcast over one example")
    return c


def emit_constant(ctx, like, value):
    """Emit a Constant layer holding ``value`` (per-example shape), fed by the value
    ``like`` (which gives it the batch size); return its name."""
    layer = ctx.layer("Constant", shape=list(np.shape(value)))
    layer.value = np.ascontiguousarray(value)
    return ctx.emit(layer, like)


# -- ONNX --------------------------------------------------------------------------------
def onnx_output(imp, node, name):
    """Record fwdderiv value ``name`` as the node's (first) output."""
    imp.values[node.output[0]] = name


def onnx_unused_outputs(imp, node, what):
    """Refuse a node whose outputs after the first are read."""
    used = {i for n in imp.graph.node for i in n.input} | {o.name for o in imp.graph.output}
    if any(o and o in used for o in node.output[1:]):
        imp.fail(f"using its {what} output", fix="use only the first output")


def onnx_pads(imp, pads, n=2):
    """Symmetric ONNX ``pads`` as ``n`` per-axis paddings."""
    pads = list(pads or [0] * (2 * n))
    if pads[:n] != pads[n:]:
        imp.fail(f"asymmetric pads {pads}", "pads", "pad explicitly with a Pad node")
    return pads[:n]


def onnx_auto_pad(imp, a):
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        imp.fail(f"auto_pad={a['auto_pad']!r}", "auto_pad", "export with explicit pads")


def onnx_scalar(imp, name):
    """The one-element constant ``name`` as a float; None otherwise."""
    c = imp.consts.get(name)
    return None if c is None or c.size != 1 else float(c.reshape(()))


def onnx_elementwise(name, **names):
    """A rule emitting layer ``name``; ``names`` maps constructor argument -> (attribute,
    default)."""
    def rule(imp, node, a):
        kwargs = {k: a.get(src, default) for k, (src, default) in names.items()}
        kwargs = {k: v.decode() if isinstance(v, bytes) else v for k, v in kwargs.items()}
        onnx_output(imp, node, imp.emit(imp.layer(name, **kwargs), node.input[0]))
    return rule


def onnx_global_pool(imp, node, reduction, image_layer):
    """ONNX GlobalAveragePool or GlobalMaxPool: ``image_layer(shape)`` on a value of
    per-example shape (C, H, W), the layer ``reduction`` over the spatial axes (kept) on
    (C, L) or (C, D, H, W)."""
    shape = imp.shape(node.input[0])
    if len(shape) < 2:
        imp.fail(f"per-example shape {shape}, expected (C, *spatial)")
    layer = image_layer(shape) if len(shape) == 3 else \
        imp.layer(reduction, dims=list(range(2, len(shape) + 1)), keepdim=True)
    onnx_output(imp, node, imp.emit(layer, node.input[0]))


def onnx_reshape_to(imp, node, x, per):
    """Emit whatever turns value ``x`` into per-example shape ``per``: nothing, a Flatten
    or a Reshape."""
    src = imp.shape(x)
    if tuple(per) == tuple(src):
        return onnx_output(imp, node, imp.value(x))
    if len(per) == 1 and per[0] in (-1, int(np.prod(src))):
        layer = imp.layer("Flatten")
    else:
        layer = imp.layer("Reshape", shape=list(per))
    onnx_output(imp, node, imp.emit(layer, x))


# -- export ------------------------------------------------------------------------------
def same_torch_module(layer):
    """``torch.nn.<class name>(**layer.get_config())`` holding copies of the layer's
    parameters and buffers, in eval mode: the export of a layer named after its
    ``torch.nn`` counterpart."""
    import torch
    from torch import nn
    config = {k: tuple(v) if isinstance(v, list) else v
              for k, v in (layer.get_config() if hasattr(layer, "get_config") else {}).items()}
    module = getattr(nn, type(layer).__name__)(**config)
    for pname in ("weight", "bias", "running_mean", "running_var"):
        value, current = getattr(layer, pname, None), getattr(module, pname, None)
        if value is None or current is None:
            continue
        t = torch.from_numpy(np.array(value, copy=True))
        if isinstance(current, nn.Parameter):
            module._parameters[pname] = nn.Parameter(t)
        else:
            module._buffers[pname] = t
    return module.eval()


def torch_function_module(fn, name):
    """A ``torch.nn.Module`` named ``name`` whose forward is ``fn(*inputs)``: the export of
    a layer that ``torch.nn`` has no module for (a graph joint, a tensor operation)."""
    from torch import nn
    cls = type(name, (nn.Module,), {"forward": lambda self, *xs: fn(*xs)})
    return cls().eval()
