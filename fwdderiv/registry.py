"""One entry per layer type defined outside fwdderiv's own tables: the class, its load
schema, its PyTorch and ONNX import rules and its export, registered next to the class.

A new layer is then one module: the class, then one :func:`register_layer` call. Saving
and loading (:func:`fwdderiv.save`, :func:`fwdderiv.load`), :func:`fwdderiv.from_torch`,
:func:`fwdderiv.from_onnx` and :func:`fwdderiv.to_torch` look here after their built-in
tables. The class is checked when it is registered: the layer protocol, and for a layer
with parameters ``param_vjp`` and ``jvp_grad``.
"""
from typing import Callable, NamedTuple, Optional

from ._schema import LAYER_SCHEMAS, REQUIRED, LayerSchema, SchemaError  # noqa: F401


class Entry(NamedTuple):
    """A registered layer type. ``schema``: a ``fwdderiv._schema.LayerSchema`` (None: it
    cannot be loaded from a file); ``torch``: ATen operator name -> rule ``(ctx, args) ->
    value name`` (as in ``fwdderiv.interop.torch_ops``); ``onnx``: ONNX op type -> rule
    ``(importer, node, attrs)`` (as in ``fwdderiv.interop.onnx_ops``); ``to_torch``:
    ``layer -> torch.nn.Module``."""
    cls: type
    schema: object = None
    torch: dict = {}
    onnx: dict = {}
    to_torch: Optional[Callable] = None


ENTRIES = {}


def register_layer(cls, *, schema=None, torch=None, onnx=None, to_torch=None):
    """Register the layer class ``cls`` (see the module doc); returns ``cls``.

    Raises
    ------
    TypeError
        If ``cls`` lacks a method of the layer protocol, or declares parameters
        (``param_names`` on the class) without ``param_vjp`` and ``jvp_grad`` of its own.
    ValueError
        If another class is registered under the same name, or an operator already has a
        rule.
    """
    from .core.layer import Layer, PROTOCOL
    name = getattr(cls, "__name__", repr(cls))
    missing = [m for m in PROTOCOL if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"register_layer: {name} is not a layer: it lacks {', '.join(missing)}; "
                        f"subclass fwdderiv.Layer and implement them")
    if getattr(cls, "param_names", ()):
        lacking = [m for m in ("param_vjp", "jvp_grad")
                   if getattr(cls, m, None) is getattr(Layer, m, None)]
        if lacking:
            raise TypeError(f"register_layer: {name} has parameters ({', '.join(cls.param_names)})"
                            f" but does not implement {' and '.join(lacking)}; training and "
                            f"the Jacobian penalty need them (docs/pages/add-a-layer.md)")
    old = ENTRIES.get(name)
    if old is not None and old.cls is not cls:
        raise ValueError(f"register_layer: another class is registered as {name!r} "
                         f"({old.cls.__module__}); give the layer another name")
    for kind, rules in (("torch", torch or {}), ("onnx", onnx or {})):
        for op in rules:
            owner = next((e.cls.__name__ for e in ENTRIES.values()
                          if op in getattr(e, kind) and e.cls is not cls), None)
            if owner is not None:
                raise ValueError(f"register_layer: the {kind} operator {op!r} already "
                                 f"imports as {owner}")
    builtin = LAYER_SCHEMAS.get(name)
    if schema is not None and builtin is not None and (old is None or old.schema is not builtin):
        raise ValueError(f"register_layer: {name!r} is a built-in layer type's name; give "
                         f"the layer another name")
    ENTRIES[name] = Entry(cls, schema, dict(torch or {}), dict(onnx or {}), to_torch)
    if schema is not None:
        LAYER_SCHEMAS[name] = schema         # what fwdderiv.load checks a file against
    return cls


def layer_types():
    """Registered layer classes by name."""
    return {name: e.cls for name, e in ENTRIES.items()}


def torch_rule(op):
    return next((e.torch[op] for e in ENTRIES.values() if op in e.torch), None)


def onnx_rule(op):
    return next((e.onnx[op] for e in ENTRIES.values() if op in e.onnx), None)


def exporter(name):
    entry = ENTRIES.get(name)
    return None if entry is None else entry.to_torch
