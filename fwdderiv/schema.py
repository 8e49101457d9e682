"""What a saved architecture may contain, checked before anything is built.

A model file names each layer by type and gives its constructor arguments as JSON. Every
layer type's :class:`LayerSchema` (registered with the class, see
:func:`fwdderiv.registry.register_layer`) says which arguments it takes, their types and
ranges, and the shapes of the arrays (parameters and buffers) the layer holds, computed
from the arguments alone. :func:`fwdderiv.io.load` uses it to refuse a file before
allocating anything: a ``Linear(10**9, 10**9)`` in a 1 KB file is an error, not a 4 EB
allocation. The loader never runs a constructor on unchecked input.

The field checkers here (:func:`integer`, :func:`ints`, :func:`real`, ...) are what a
schema is written with; each is ``(value, field) -> normalised value`` or raises
:class:`SchemaError`.

Both top-level formats use it: ``fwdderiv.sequential`` (a list of layers, arrays keyed
``"<index>.<param>"``) and ``fwdderiv.graph`` (named nodes with inputs, arrays keyed
``"<node name>.<param>"``).
"""
import math
import numbers

__all__ = ["SchemaError", "LayerSchema", "REQUIRED", "LAYER_SCHEMAS", "check_layer",
           "check_sequential", "check_graph", "is_int", "integer", "ints", "int_list",
           "boolean", "real", "optional", "choice", "either", "dim", "output_size",
           "describe"]


class SchemaError(ValueError):
    """An architecture entry breaks the schema. ``str(err)`` names the layer and field."""


# -- field checkers: (value, field) -> normalised value, or raise SchemaError ---------------
def is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def integer(minimum):
    def check(v, field):
        if not is_int(v):
            raise SchemaError(f"field {field!r} must be an int >= {minimum}, got "
                              f"{describe(v)}")
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


def ints(n, minimum, scalar_ok=True, maximum=MAX_EXTENT):
    """An int (repeated ``n`` times) or a list of ``n`` ints in ``[minimum, maximum]``."""
    def check(v, field):
        if scalar_ok and is_int(v):
            v = [v] * n
        if not isinstance(v, (list, tuple)) or len(v) != n or not all(is_int(a) for a in v):
            form = f"an int or a list of {n} ints" if scalar_ok else f"a list of {n} ints"
            raise SchemaError(f"field {field!r} must be {form}, got {describe(v)}")
        if min(v) < minimum or max(v) > maximum:
            raise SchemaError(f"field {field!r} must hold ints in [{minimum}, {maximum}], "
                              f"got {list(v)}")
        return [int(a) for a in v]
    return check


def int_list(minimum=None, maximum=None, min_len=0, nonzero=False, distinct=False,
              even=False):
    """A list of at most MAX_AXES ints, each within the bounds given."""
    def check(v, field):
        if not isinstance(v, (list, tuple)) or not all(is_int(a) for a in v):
            raise SchemaError(f"field {field!r} must be a list of ints, got {describe(v)}")
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


def boolean(v, field):
    if not isinstance(v, bool):
        raise SchemaError(f"field {field!r} must be true or false, got {describe(v)}")
    return v


def real(lo, hi, lo_open=False, hi_open=False):
    def check(v, field):
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise SchemaError(f"field {field!r} must be a number in {rng}, got {describe(v)}")
        v = float(v)
        if not (math.isfinite(v) and (v > lo if lo_open else v >= lo)
                and (v < hi if hi_open else v <= hi)):
            raise SchemaError(f"field {field!r} must be a finite number in {rng}, got {v!r}")
        return v
    return check


def optional(check):
    def opt(v, field):
        return None if v is None else check(v, field)
    return opt


def describe(v):
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


# -- a layer type's schema ------------------------------------------------------------------------
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

#: Layer type name -> its schema, filled by :func:`fwdderiv.registry.register_layer`.
LAYER_SCHEMAS = {}


#: An int >= 1 (sizes, channel counts).
POSITIVE = integer(1)
#: An int >= 0.
NONNEGATIVE = integer(0)
#: Any finite real number.
ANY_REAL = real(-math.inf, math.inf)
#: The ``eps`` field of the normalisation layers: (checker, default).
EPS = (real(0, math.inf, lo_open=True), 1e-5)


def choice(*values):
    def check(v, field):
        if not isinstance(v, str) or v not in values:
            raise SchemaError(f"field {field!r} must be one of {list(values)}, got "
                              f"{describe(v)}")
        return v
    return check


def either(*checks):
    def check(v, field):
        for c in checks[:-1]:
            try:
                return c(v, field)
            except SchemaError:
                pass
        return checks[-1](v, field)
    return check


def dim(v, field):
    if not is_int(v) or abs(v) > MAX_AXES:
        raise SchemaError(f"field {field!r} must be an int of magnitude <= {MAX_AXES}, got "
                          f"{describe(v)}")
    return int(v)


def output_size(v, field):
    """A list of two sizes, each an int in [0, MAX_EXTENT] or None (keep the input's)."""
    if not isinstance(v, list) or len(v) != 2 or not all(
            a is None or is_int(a) and 0 <= a <= MAX_EXTENT for a in v):
        raise SchemaError(f"field {field!r} must be a list of two ints in [0, {MAX_EXTENT}] or "
                          f"None, got {describe(v)}")
    return [None if a is None else int(a) for a in v]


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
                          "cannot be checked before it is built); give it one with "
                          "fwdderiv.register_layer(..., schema=...)")
    if not isinstance(config, dict):
        raise SchemaError(f"field 'config' must be an object of constructor arguments, "
                          f"got {describe(config)}")
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
                          f"{describe(entry)}")
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
                          f"{describe(layers)}")
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
                          f"{describe(nodes)}")
    seen, out = set(), []
    for i, entry in enumerate(nodes):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"node {i}" + (f" {name!r}" if isinstance(name, str) else "")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"{label}: field 'name' must be a non-empty string, got "
                              f"{describe(name)}")
        if name in seen or name in input_names:
            raise SchemaError(f"{label}: field 'name' {name!r} is used twice")
        inputs = entry.get("inputs")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or \
                not all(isinstance(s, str) for s in inputs):
            raise SchemaError(f"{label}: field 'inputs' must be a non-empty list of node "
                              f"names, got {describe(inputs)}")
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
        raise SchemaError(f"field 'output' must name a node, got {describe(output)}")
    return out, output


