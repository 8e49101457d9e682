"""The ATen operators (as ``torch.export`` records them) that are import plumbing rather
than a layer's: reading one item of an operator that returns a tuple.

Every other operator's rule belongs to the layer it makes and is registered with it
(:func:`fwdderiv.registry.register_layer`, e.g. ``conv2d`` next to
:class:`fwdderiv.Conv2d` in ``fwdderiv/layers/conv.py``). A rule gets the import context
and the operator's arguments by schema name, emits fwdderiv nodes through
``ctx.emit(layer, inputs)`` and returns the name of the value that stands for the
operator's result.
"""


def _getitem(ctx, a):
    src, i = a["self"], a["index"]
    if i != 0 and not ctx.node.users:       # an unused item (max-pool indices): no value
        return None
    if i != 0 or src.name not in ctx.tuples:
        ctx.fail(f"output {i} of {src.target}", "only the first output of a multi-output "
                 "operator (max-pool indices, batch-norm statistics) can be used")
    return ctx.value(src)


#: ATen operator (overload packet name) -> rule, for the operators that make no layer.
RULES = {"getitem": _getitem}
