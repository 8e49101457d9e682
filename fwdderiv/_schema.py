"""What a saved architecture may contain, checked before anything is built.

A model file names each layer by type and gives its constructor arguments as JSON. This
module knows, for every built-in layer type, which arguments it takes, their types and
ranges, and the shapes of the arrays (parameters and buffers) the layer holds, computed
from the arguments alone. :func:`fwdderiv.io.load` uses it to refuse a file before
allocating anything: a ``Linear(10**9, 10**9)`` in a 1 KB file is an error, not a 4 EB
allocation. The knowledge sits here, keyed by layer type name, and not in the layer
classes, so the loader never runs a constructor on unchecked input.

Both top-level formats use it: ``fwdderiv.sequential`` (a list of layers, arrays keyed
``"<index>.<param>"``) and ``fwdderiv.graph`` (named nodes with inputs, arrays keyed
``"<node name>.<param>"``).
"""
import math
import numbers

__all__ = ["SchemaError", "LAYER_SCHEMAS", "check_layer", "check_sequential", "check_graph"]


class SchemaError(ValueError):
    """An architecture entry breaks the schema. ``str(err)`` names the layer and field."""


# -- field checkers: (value, field) -> normalised value, or raise SchemaError ---------------
def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _int(minimum):
    def check(v, field):
        if not _is_int(v):
            raise SchemaError(f"field {field!r} must be an int >= {minimum}, got "
                              f"{_show(v)}")
        if v < minimum:
            raise SchemaError(f"field {field!r} must be >= {minimum}, got {v}")
        return int(v)
    return check


#: Largest kernel size, stride, dilation or padding accepted (these sizes are not
#: parameters, so max_bytes does not bound them, but a padding of 10**9 would make the
#: first forward call allocate without limit).
MAX_EXTENT = 1 << 16
#: Longest list accepted for Reshape, Slice and Pad arguments.
MAX_AXES = 32


def _ints(n, minimum, scalar_ok=True, maximum=MAX_EXTENT):
    """An int (repeated ``n`` times) or a list of ``n`` ints in ``[minimum, maximum]``."""
    def check(v, field):
        if scalar_ok and _is_int(v):
            v = [v] * n
        if not isinstance(v, (list, tuple)) or len(v) != n or not all(_is_int(a) for a in v):
            form = f"an int or a list of {n} ints" if scalar_ok else f"a list of {n} ints"
            raise SchemaError(f"field {field!r} must be {form}, got {_show(v)}")
        if min(v) < minimum or max(v) > maximum:
            raise SchemaError(f"field {field!r} must hold ints in [{minimum}, {maximum}], "
                              f"got {list(v)}")
        return [int(a) for a in v]
    return check


def _int_list(minimum=None, maximum=None, min_len=0, nonzero=False, distinct=False,
              even=False):
    """A list of at most MAX_AXES ints, each within the bounds given."""
    def check(v, field):
        if not isinstance(v, (list, tuple)) or not all(_is_int(a) for a in v):
            raise SchemaError(f"field {field!r} must be a list of ints, got {_show(v)}")
        if not min_len <= len(v) <= MAX_AXES or (even and len(v) % 2):
            raise SchemaError(f"field {field!r} must hold {'an even number of ' if even else ''}"
                              f"{min_len} to {MAX_AXES} ints, got {len(v)}")
        bad = [a for a in v if (minimum is not None and a < minimum)
               or (maximum is not None and a > maximum) or (nonzero and a == 0)]
        if bad:
            rules = ([f">= {minimum}"] if minimum is not None else []) + \
                ([f"<= {maximum}"] if maximum is not None else []) + \
                (["nonzero"] if nonzero else [])
            raise SchemaError(f"field {field!r} must hold ints {' and '.join(rules)}, got "
                              f"{list(v)}")
        if distinct and len(set(v)) != len(v):
            raise SchemaError(f"field {field!r} must hold distinct ints, got {list(v)}")
        return [int(a) for a in v]
    return check


def _bool(v, field):
    if not isinstance(v, bool):
        raise SchemaError(f"field {field!r} must be true or false, got {_show(v)}")
    return v


def _real(lo, hi, lo_open=False, hi_open=False):
    def check(v, field):
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise SchemaError(f"field {field!r} must be a number in {rng}, got {_show(v)}")
        v = float(v)
        if not (math.isfinite(v) and (v > lo if lo_open else v >= lo)
                and (v < hi if hi_open else v <= hi)):
            raise SchemaError(f"field {field!r} must be a finite number in {rng}, got {v!r}")
        return v
    return check


def _optional(check):
    def opt(v, field):
        return None if v is None else check(v, field)
    return opt


def _show(v):
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


# -- per-type rules ------------------------------------------------------------------------
class LayerSchema:
    """Fields of one layer type and the shapes of its arrays.

    Parameters
    ----------
    fields : dict of str -> (checker, default)
        ``default`` is ``REQUIRED`` for a field the file must give.
    arrays : callable, config -> dict of str -> tuple of int
        The parameter and buffer shapes of a layer with that (normalised) config.
    relations : callable, config -> None, optional
        Checks between fields; raises SchemaError.
    """

    def __init__(self, fields, arrays=lambda c: {}, relations=None):
        self.fields, self.arrays, self.relations = fields, arrays, relations


REQUIRED = object()

_pos, _nonneg = _int(1), _int(0)


def _conv_relations(c):
    g = c["groups"]
    if c["in_channels"] % g or c["out_channels"] % g:
        raise SchemaError(f"fields 'in_channels' ({c['in_channels']}) and 'out_channels' "
                          f"({c['out_channels']}) must both be divisible by 'groups' ({g})")


def _pool_relations(c):
    if any(2 * p > k for p, k in zip(c["padding"], c["kernel_size"])):
        raise SchemaError(f"field 'padding' {c['padding']} must be at most half of "
                          f"'kernel_size' {c['kernel_size']}")


def _reshape_relations(c):
    if c["shape"].count(-1) > 1:
        raise SchemaError(f"field 'shape' may hold one -1, got {c['shape']}")


def _slice_relations(c):
    steps = c["steps"] if c["steps"] is not None else [1] * len(c["axes"])
    if not len(c["starts"]) == len(c["ends"]) == len(c["axes"]) == len(steps):
        raise SchemaError("fields 'starts', 'ends', 'axes' and 'steps' must have one entry "
                          f"per sliced axis, got lengths {len(c['starts'])}, "
                          f"{len(c['ends'])}, {len(c['axes'])}, {len(steps)}")


def _concat_dim(v, field):
    if not _is_int(v) or v == 0 or abs(v) > MAX_AXES:
        raise SchemaError(f"field {field!r} must be a nonzero int (a per-example axis; 0 is "
                          f"the batch axis) of magnitude <= {MAX_AXES}, got {_show(v)}")
    return int(v)


def _conv_arrays(c):
    kh, kw = c["kernel_size"]
    shapes = {"weight": (c["out_channels"], c["in_channels"] // c["groups"], kh, kw)}
    if c["bias"]:
        shapes["bias"] = (c["out_channels"],)
    return shapes


def _linear_arrays(c):
    shapes = {"weight": (c["out_features"], c["in_features"])}
    if c["bias"]:
        shapes["bias"] = (c["out_features"],)
    return shapes


def _bn_arrays(c):
    return {k: (c["num_features"],) for k in ("weight", "bias", "running_mean", "running_var")}


_POOL = {"kernel_size": (_ints(2, 1), REQUIRED), "stride": (_optional(_ints(2, 1)), None),
         "padding": (_ints(2, 0), 0)}

#: Layer type name -> its schema. A layer type registered in ``fwdderiv.layers.LAYER_TYPES``
#: but missing here cannot be loaded (the loader says so) until a row is added.
LAYER_SCHEMAS = {
    "Linear": LayerSchema({"in_features": (_pos, REQUIRED), "out_features": (_pos, REQUIRED),
                           "bias": (_bool, True)}, _linear_arrays),
    "Conv2d": LayerSchema({"in_channels": (_pos, REQUIRED), "out_channels": (_pos, REQUIRED),
                           "kernel_size": (_ints(2, 1), REQUIRED), "stride": (_ints(2, 1), 1),
                           "padding": (_ints(2, 0), 0), "dilation": (_ints(2, 1), 1),
                           "groups": (_pos, 1), "bias": (_bool, True)},
                          _conv_arrays, _conv_relations),
    "BatchNorm2d": LayerSchema({"num_features": (_pos, REQUIRED),
                                "eps": (_real(0, math.inf, lo_open=True), 1e-5),
                                "momentum": (_real(0, 1), 0.1)}, _bn_arrays),
    "MaxPool2d": LayerSchema(_POOL, relations=_pool_relations),
    "AvgPool2d": LayerSchema(_POOL, relations=_pool_relations),
    "Pad2d": LayerSchema({"padding": (_ints(4, 0), REQUIRED)}),
    "Concat": LayerSchema({"dim": (_concat_dim, 1)}),
    "Scale": LayerSchema({"factor": (_real(-math.inf, math.inf), REQUIRED)}),
    "Reshape": LayerSchema({"shape": (_int_list(minimum=-1, maximum=2**40), REQUIRED)},
                           relations=_reshape_relations),
    "Slice": LayerSchema({"starts": (_int_list(min_len=1), REQUIRED),
                          "ends": (_int_list(min_len=1), REQUIRED),
                          "axes": (_int_list(min_len=1, minimum=-MAX_AXES, maximum=MAX_AXES,
                                             nonzero=True, distinct=True), REQUIRED),
                          "steps": (_optional(_int_list(minimum=1, min_len=1)), None)},
                         relations=_slice_relations),
    "Pad": LayerSchema({"pad": (_int_list(minimum=0, maximum=MAX_EXTENT, min_len=2,
                                          even=True), REQUIRED),
                        "value": (_real(-math.inf, math.inf), 0.0)}),
    "Dropout": LayerSchema({"p": (_real(0, 1, hi_open=True), 0.5)}),
    **{name: LayerSchema({}) for name in ("ReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
                                          "Flatten", "Add", "Mul")},
}


def check_layer(type_name, config, known_types):
    """Check one layer entry; return ``(config, arrays)``.

    Parameters
    ----------
    type_name : object
        The entry's ``"type"``; must be a key of ``known_types`` and of
        :data:`LAYER_SCHEMAS`.
    config : object
        The entry's ``"config"``; must be a dict whose keys are the type's fields.
    known_types : collection of str
        The layer types that can be built (``fwdderiv.layers.LAYER_TYPES``).

    Returns
    -------
    config : dict
        Normalised constructor arguments (defaults filled in, ints as ``int``).
    arrays : dict of str -> tuple of int
        Shape of every array the layer holds (parameters and buffers).

    Raises
    ------
    SchemaError
        Naming the field, what it must be and what it is.
    """
    if not isinstance(type_name, str) or type_name not in known_types:
        raise SchemaError(f"field 'type' names an unknown layer type {type_name!r}; "
                          f"known types: {', '.join(sorted(known_types))}")
    schema = LAYER_SCHEMAS.get(type_name)
    if schema is None:
        raise SchemaError(f"layer type {type_name!r} has no load schema (its arguments "
                          "cannot be checked before it is built); add a row for it to "
                          "LAYER_SCHEMAS in fwdderiv/_schema.py")
    if not isinstance(config, dict):
        raise SchemaError(f"field 'config' must be an object of constructor arguments, "
                          f"got {_show(config)}")
    extra = sorted(set(config) - set(schema.fields), key=str)
    if extra:
        allowed = ", ".join(schema.fields) or "none"
        raise SchemaError(f"field 'config' has unknown argument(s) {extra} for "
                          f"{type_name} (allowed: {allowed})")
    out = {}
    for field, (check, default) in schema.fields.items():
        if field not in config:
            if default is REQUIRED:
                raise SchemaError(f"field {field!r} is missing from the config of "
                                  f"{type_name}")
            out[field] = check(default, field)      # defaults in normal form too
        else:
            out[field] = check(config[field], field)
    if schema.relations is not None:
        schema.relations(out)
    return out, schema.arrays(out)


def _entry(label, entry, known_types):
    if not isinstance(entry, dict):
        raise SchemaError(f"{label}: must be an object with 'type' and 'config', got "
                          f"{_show(entry)}")
    if "type" not in entry:
        raise SchemaError(f"{label}: field 'type' is missing")
    try:
        return check_layer(entry["type"], entry.get("config", {}), known_types)
    except SchemaError as err:
        what = entry["type"] if isinstance(entry["type"], str) else "?"
        raise SchemaError(f"{label} ({what}): {err}") from None


def check_sequential(arch, known_types):
    """Check a ``fwdderiv.sequential`` architecture (already the top-level checks).

    Returns
    -------
    list of (label, type, config, arrays)
        One per layer; ``arrays`` maps the file key ``"<i>.<name>"`` to its shape.
    """
    layers = arch.get("layers")
    if not isinstance(layers, list):
        raise SchemaError(f"field 'layers' must be a list of layer entries, got "
                          f"{_show(layers)}")
    out = []
    for i, entry in enumerate(layers):
        label = f"layer {i}"
        config, arrays = _entry(label, entry, known_types)
        out.append((label, entry["type"], config,
                    {f"{i}.{name}": shape for name, shape in arrays.items()}))
    return out


def check_graph(arch, known_types, input_names=("input",)):
    """Check a ``fwdderiv.graph`` architecture.

    Nodes are ``{"name", "type", "config", "inputs"}``; every input names an earlier node
    or one of ``input_names``; ``"output"``, if present, names a node. Names are unique
    non-empty strings. (Arity and reachability are checked by :class:`fwdderiv.Graph`.)

    Returns
    -------
    nodes : list of (label, type, config, arrays, name, inputs)
        ``arrays`` maps the file key ``"<name>.<param>"`` to its shape.
    output : str or None
        None if the file leaves it out (the graph's output is then its last node).
    """
    nodes = arch.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise SchemaError(f"field 'nodes' must be a non-empty list of nodes, got "
                          f"{_show(nodes)}")
    seen, out = set(), []
    for i, entry in enumerate(nodes):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"node {i}" + (f" {name!r}" if isinstance(name, str) else "")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"{label}: field 'name' must be a non-empty string, got "
                              f"{_show(name)}")
        if name in seen or name in input_names:
            raise SchemaError(f"{label}: field 'name' {name!r} is used twice")
        inputs = entry.get("inputs")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or \
                not all(isinstance(s, str) for s in inputs):
            raise SchemaError(f"{label}: field 'inputs' must be a non-empty list of node "
                              f"names, got {_show(inputs)}")
        unknown = [s for s in inputs if s not in seen and s not in input_names]
        if unknown:
            raise SchemaError(f"{label}: field 'inputs' names {unknown}, which are neither "
                              f"earlier nodes nor graph inputs {list(input_names)}; nodes "
                              "must come after the nodes they read")
        config, arrays = _entry(label, entry, known_types)
        seen.add(name)
        out.append((label, entry["type"], config,
                    {f"{name}.{k}": shape for k, shape in arrays.items()}, name, list(inputs)))
    output = arch.get("output")
    if output is not None and output not in seen:
        raise SchemaError(f"field 'output' must name a node, got {_show(output)}")
    return out, output


# -- PyTorch's layers and options (issue 9) --------------------------------------------------
def _choice(*values):
    def check(v, field):
        if not isinstance(v, str) or v not in values:
            raise SchemaError(f"field {field!r} must be one of {list(values)}, got {_show(v)}")
        return v
    return check


def _either(*checks):
    def check(v, field):
        for c in checks[:-1]:
            try:
                return c(v, field)
            except SchemaError:
                pass
        return checks[-1](v, field)
    return check


def _dim(v, field):
    if not _is_int(v) or abs(v) > MAX_AXES:
        raise SchemaError(f"field {field!r} must be an int of magnitude <= {MAX_AXES}, got "
                          f"{_show(v)}")
    return int(v)


def _output_size(v, field):
    """A list of two sizes, each an int in [0, MAX_EXTENT] or None (keep the input's)."""
    if not isinstance(v, list) or len(v) != 2 or not all(
            a is None or _is_int(a) and 0 <= a <= MAX_EXTENT for a in v):
        raise SchemaError(f"field {field!r} must be a list of two ints in [0, {MAX_EXTENT}] or "
                          f"None, got {_show(v)}")
    return [None if a is None else int(a) for a in v]


def _dilated_pool_relations(c):
    span = [d * (k - 1) + 1 for k, d in zip(c["kernel_size"], c.get("dilation", [1, 1]))]
    if any(2 * p > k for p, k in zip(c["padding"], span)):
        raise SchemaError(f"field 'padding' {c['padding']} must be at most half of the "
                          f"(dilated) kernel size {span}")


def _shape_arrays(names, key):
    def arrays(c):
        shape = tuple(c[key]) if isinstance(c[key], list) else (c[key],)
        return {n: shape for n in names(c)}
    return arrays


_REAL = _real(-math.inf, math.inf)
_EPS = (_real(0, math.inf, lo_open=True), 1e-5)
LAYER_SCHEMAS.update({
    "Conv2d": LayerSchema({**LAYER_SCHEMAS["Conv2d"].fields,
                           "padding": (_either(_choice("same", "valid"), _ints(2, 0)), 0),
                           "padding_mode": (_choice("zeros", "reflect", "replicate", "circular"),
                                            "zeros")},
                          _conv_arrays, _conv_relations),
    "MaxPool2d": LayerSchema({**_POOL, "dilation": (_ints(2, 1), 1), "ceil_mode": (_bool, False)},
                             relations=_dilated_pool_relations),
    "AvgPool2d": LayerSchema({**_POOL, "ceil_mode": (_bool, False),
                              "count_include_pad": (_bool, True),
                              "divisor_override": (_optional(_int(1)), None)},
                             relations=_pool_relations),
    "Flatten": LayerSchema({"start_dim": (_dim, 1), "end_dim": (_dim, -1)}),
    "Softmax": LayerSchema({"dim": (_dim, -1)}),
    "LogSoftmax": LayerSchema({"dim": (_dim, -1)}),
    "Dropout": LayerSchema({"p": (_real(0, 1), 0.5)}),
    "Dropout2d": LayerSchema({"p": (_real(0, 1), 0.5)}),
    "Pad2d": LayerSchema({"padding": (_ints(4, -MAX_EXTENT), REQUIRED)}),
    "ZeroPad2d": LayerSchema({"padding": (_ints(4, -MAX_EXTENT), REQUIRED)}),
    "ConstantPad2d": LayerSchema({"padding": (_ints(4, -MAX_EXTENT), REQUIRED),
                                  "value": (_REAL, REQUIRED)}),
    **{name: LayerSchema({"padding": (_ints(4, 0), REQUIRED)})
       for name in ("ReflectionPad2d", "ReplicationPad2d", "CircularPad2d")},
    **{name: LayerSchema({"output_size": (_output_size, REQUIRED)})
       for name in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d")},
    "LeakyReLU": LayerSchema({"negative_slope": (_REAL, 0.01)}),
    "ELU": LayerSchema({"alpha": (_REAL, 1.0)}),
    "GELU": LayerSchema({"approximate": (_choice("none", "tanh"), "none")}),
    "Softplus": LayerSchema({"beta": (_REAL, 1.0), "threshold": (_REAL, 20.0)}),
    "Hardtanh": LayerSchema({"min_val": (_REAL, -1.0), "max_val": (_REAL, 1.0)}),
    **{name: LayerSchema({}) for name in ("SiLU", "Mish", "ReLU6", "Hardswish", "Identity")},
    "BatchNorm1d": LayerSchema({"num_features": (_pos, REQUIRED), "eps": _EPS,
                                "momentum": (_real(0, 1), 0.1)}, _bn_arrays),
    "LayerNorm": LayerSchema({"normalized_shape": (_int_list(minimum=0, maximum=2**40),
                                                   REQUIRED),
                              "eps": _EPS, "elementwise_affine": (_bool, True),
                              "bias": (_bool, True)},
                             _shape_arrays(lambda c: [n for n, on in (
                                 ("weight", c["elementwise_affine"]),
                                 ("bias", c["elementwise_affine"] and c["bias"])) if on],
                                 "normalized_shape")),
    "GroupNorm": LayerSchema({"num_groups": (_pos, REQUIRED), "num_channels": (_pos, REQUIRED),
                              "eps": _EPS, "affine": (_bool, True)},
                             _shape_arrays(lambda c: ["weight", "bias"] if c["affine"] else [],
                                           "num_channels")),
})
