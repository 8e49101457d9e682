"""One entry per layer type: the class, its load schema, its PyTorch and ONNX import
rules, its export and an example for the tests, registered next to the class.

Every layer module ends with its :func:`register_layer` calls, fwdderiv's own layers as
well as a user's: a new layer is one module, the class and then one call. Saving and
loading (:func:`fwdderiv.save`, :func:`fwdderiv.load`), :func:`fwdderiv.from_torch`,
:func:`fwdderiv.from_onnx` and :func:`fwdderiv.to_torch` read their knowledge of layers
from here. The class is checked when it is registered: the layer protocol, and for a layer
with parameters ``param_vjp`` and ``jvp_grad``.
"""
from typing import Callable, NamedTuple, Optional

from .schema import LAYER_SCHEMAS, REQUIRED, LayerSchema, SchemaError  # noqa: F401

#: The parts of an entry; each is given, or named in ``absent`` with the reason.
PARTS = ("schema", "torch", "onnx", "to_torch", "example")


class Example(NamedTuple):
    """A configuration of the layer for the registry's own tests
    (``tests/layers/test_registry.py``): built from ``config``, run on ``inputs`` arrays of
    per-example shape ``in_shape``, its Jacobians checked against finite differences, saved
    and loaded, exported and imported. ``values``: ``"normal"`` draws (moved off the
    layer's ``kink_points``), ``"distinct"`` (well separated values, no ties: for
    maxima), or ``"positive"`` (draws in [0.2, 2]: for a logarithm). ``routes``: the
    imports the example comes back through from its PyTorch export (``"torch"``,
    ``"onnx"``); one is left out where the export is written with operators that import
    differently (``torch.onnx`` writes ``x.expand(N, ...)`` with
    shape arithmetic; a lone constant has no batch axis), and the layer's rule is then
    tested on a model as users write it."""
    config: dict
    in_shape: tuple
    inputs: int = 1
    values: str = "normal"
    routes: tuple = ("torch", "onnx")


class Entry(NamedTuple):
    """A registered layer type. ``schema``: a :class:`fwdderiv.schema.LayerSchema` (None:
    it cannot be loaded from a file); ``torch``: ATen operator name -> rule ``(ctx, args) ->
    value name``; ``onnx``: ONNX op type -> rule ``(importer, node, attrs)`` (both written
    with :mod:`fwdderiv.layers.exchange`); ``to_torch``: ``layer -> torch.nn.Module``;
    ``example``: an :class:`Example`; ``absent``: part name -> why the layer has none."""
    cls: type
    schema: object = None
    torch: dict = {}
    onnx: dict = {}
    to_torch: Optional[Callable] = None
    example: Optional[Example] = None
    absent: dict = {}


ENTRIES = {}


def register_layer(cls, *, schema=None, torch=None, onnx=None, to_torch=None,
                   example=None, absent=None):
    """Register the layer class ``cls`` (see the module doc); returns ``cls``.

    Raises
    ------
    TypeError
        If ``cls`` lacks a method of the layer protocol, or declares parameters
        (``param_names`` on the class) without ``param_vjp`` and ``jvp_grad`` of its own.
    ValueError
        If another class is registered under the same name, an operator already has a
        rule, or ``absent`` names a part that is given or is not a part.
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
    absent = dict(absent or {})
    given = {"schema": schema, "torch": torch, "onnx": onnx, "to_torch": to_torch,
             "example": example}
    wrong = [p for p in absent if p not in PARTS or given[p]]
    if wrong:
        raise ValueError(f"register_layer: {name}: absent names {wrong}, which are given or "
                         f"are not parts; the parts are {', '.join(PARTS)}")
    ENTRIES[name] = Entry(cls, schema, dict(torch or {}), dict(onnx or {}), to_torch,
                          example, absent)
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
