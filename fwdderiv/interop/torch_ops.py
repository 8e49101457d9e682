"""The ATen operators (as ``torch.export`` records them) that are import plumbing rather
than a layer's: the operators that cut their input into pieces (``chunk``, ``split``,
``split_with_sizes``, ``unbind``: one Slice or Gather per piece) and reading one item of an
operator that returns a tuple (``getitem``).

Every other operator's rule belongs to the layer it makes and is registered with it
(:func:`fwdderiv.registry.register_layer`, e.g. ``conv2d`` next to
:class:`fwdderiv.Conv2d` in ``fwdderiv/layers/conv.py``). A rule gets the import context
and the operator's arguments by schema name, emits fwdderiv nodes through
``ctx.emit(layer, inputs)`` and returns the name of the value that stands for the
operator's result, or, for an operator with several results, a list of names, one per
result, which ``getitem`` reads by position.
"""
from ..layers import exchange


def _getitem(ctx, a):
    src, i = a["self"], a["index"]
    items = ctx.values.get(src.name)
    if isinstance(items, list):             # chunk, split, unbind: one value per item
        return items[i]
    if i != 0 and not ctx.node.users:       # an unused item (max-pool indices): no value
        return None
    if src.name not in ctx.tuples:
        ctx.fail(f"reading item {i} of {src.target}, which fwdderiv imports as one value",
                 "use the operator's result directly")
    if i != 0:
        ctx.fail(f"item {i} of {src.target} (only its first item, the result, is "
                 "imported; max-pool indices and batch-norm statistics are not)",
                 "use only the first item")
    return ctx.value(src)


def _pieces(ctx, x, dim, sizes):
    """One Slice of ``x`` per size along per-example axis ``dim``: the list of values."""
    out, start = [], 0
    for n in sizes:
        layer = ctx.layer("Slice", starts=[start], ends=[start + n], axes=[dim])
        out.append(ctx.emit(layer, x))
        start += n
    return out


def _split_sizes(n, size):
    """Pieces of ``size`` (the last one smaller) covering ``n`` entries."""
    size = max(int(size), 1)
    return [min(size, n - s) for s in range(0, n, size)] or [0]


def _chunk(ctx, a):
    x = a["self"]
    dim = exchange.torch_dim(ctx, x, a["dim"], "chunk")
    n = ctx.shape(x)[dim - 1]
    chunks = int(a["chunks"])
    return _pieces(ctx, x, dim, _split_sizes(n, -(-n // chunks)))


def _split(ctx, a):
    x = a["self"]
    dim = exchange.torch_dim(ctx, x, a["dim"], "split")
    n = ctx.shape(x)[dim - 1]
    sizes = a.get("split_size", a.get("split_sizes"))
    if isinstance(sizes, (list, tuple)):
        return _pieces(ctx, x, dim, [int(s) for s in sizes])
    return _pieces(ctx, x, dim, _split_sizes(n, sizes))


def _unbind(ctx, a):
    x = a["self"]
    dim = exchange.torch_dim(ctx, x, a["dim"], "unbind")
    return [ctx.emit(ctx.layer("Gather", dim=dim, indices=i), x)
            for i in range(ctx.shape(x)[dim - 1])]


#: ATen operator (overload packet name) -> rule, for the operators that make no layer of
#: their own.
RULES = {"getitem": _getitem, "chunk": _chunk, "split": _split,
         "split_with_sizes": _split, "unbind": _unbind}
