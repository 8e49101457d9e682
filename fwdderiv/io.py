"""Saving and loading networks: one ``.npz`` holding the architecture as JSON and the
weights as arrays. Never pickle: files are read with ``allow_pickle=False``."""
import json
import os
import tempfile
import zipfile

import numpy as np

from .core.graph import Graph
from .core.sequential import Sequential
from .layers import LAYER_TYPES

FORMAT = "fwdderiv.sequential"
GRAPH_FORMAT = "fwdderiv.graph"
VERSION = 1
_ARCH_KEY = "__architecture__"


def _layer_spec(i, layer):
    name = type(layer).__name__
    if LAYER_TYPES.get(name) is not type(layer):
        raise TypeError(f"save: layer {i} ({layer!r}) is not a built-in fwdderiv layer, so "
                        "it cannot be rebuilt from JSON; save its arrays with np.savez instead")
    return {"type": name, "config": layer.get_config()}


def architecture(net):
    """The JSON-serialisable description of ``net`` (layer types and constructor args;
    for a :class:`Graph`, also the node names and the names each node reads)."""
    if not isinstance(net, Sequential):
        return {"format": GRAPH_FORMAT, "version": VERSION,
                "nodes": [dict(_layer_spec(name, layer), name=name, inputs=list(inputs))
                          for name, layer, inputs in net.nodes]}
    layers = []
    for i, layer in enumerate(net.layers):
        name = type(layer).__name__
        if LAYER_TYPES.get(name) is not type(layer):
            raise TypeError(f"save: layer {i} ({layer!r}) is not a built-in fwdderiv layer, so "
                            "it cannot be rebuilt from JSON; save its arrays with np.savez instead")
        layers.append({"type": name, "config": layer.get_config()})
    return {"format": FORMAT, "version": VERSION, "layers": layers}


def save(net, path):
    """Write ``net`` to ``path`` (a ``.npz`` file), atomically.

    Parameters
    ----------
    net : Sequential
    path : str or os.PathLike
        Written as given (no suffix is added).
    """
    arrays = {_ARCH_KEY: np.array(json.dumps(architecture(net)))}
    for i, (node, layer, _) in enumerate(net.nodes):
        key = str(i) if isinstance(net, Sequential) else node
        for name, value in {**layer.params, **getattr(layer, "buffers", {})}.items():
            if value is not None:
                arrays[f"{key}.{name}"] = np.asarray(value)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fail(path, what, fix="re-save the model with fwdderiv.save"):
    return ValueError(f"load: {path} {what}; {fix}")


def load(path):
    """Rebuild the network saved by :func:`save` at ``path``.

    Raises
    ------
    ValueError
        If the file is not a fwdderiv model, is corrupt, or its weights do not match its
        architecture (the message names the file, the layer and the mismatch).
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise _fail(path, f"is not a readable .npz file ({err})") from None
    if _ARCH_KEY not in arrays:
        raise _fail(path, "has no architecture entry, so it is not a fwdderiv model")
    try:
        arch = json.loads(str(arrays.pop(_ARCH_KEY)))
        graph = arch.get("format") == GRAPH_FORMAT
        if arch.get("format") not in (FORMAT, GRAPH_FORMAT):
            raise _fail(path, f"has format {arch.get('format')!r}, expected {FORMAT!r} or "
                        f"{GRAPH_FORMAT!r}")
        if arch.get("version") != VERSION:
            raise _fail(path, f"has format version {arch.get('version')!r}; this fwdderiv "
                        f"reads version {VERSION}", "upgrade fwdderiv or re-save the model")
        specs = arch["nodes" if graph else "layers"]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise _fail(path, f"has a corrupt architecture entry ({err!r})") from None
    layers = []
    for i, spec in enumerate(specs):
        try:
            cls = LAYER_TYPES[spec["type"]]
            layer = cls(**spec["config"])
        except KeyError:
            raise _fail(path, f"names an unknown layer type {spec.get('type')!r} at layer {i}",
                        f"known types: {', '.join(sorted(LAYER_TYPES))}") from None
        except (TypeError, ValueError) as err:
            raise _fail(path, f"has bad arguments for layer {i} ({spec['type']}): {err}") from None
        for name, current in {**layer.params, **layer.buffers}.items():
            key = f"{spec.get('name') if graph else i}.{name}"
            if current is None:
                continue
            if key not in arrays:
                raise _fail(path, f"lacks the array {key!r} of layer {i} ({layer!r})")
            value = arrays.pop(key)
            if value.shape != current.shape:
                raise _fail(path, f"has {key} of shape {value.shape}, but layer {i} ({layer!r}) "
                            f"needs {current.shape}")
            if value.dtype.kind != "f":
                raise _fail(path, f"has {key} of dtype {value.dtype}, expected a float array")
            setattr(layer, name, value)
        layers.append(layer)
    if arrays:
        raise _fail(path, f"has arrays that match no layer: {', '.join(sorted(arrays))}")
    if not graph:
        return Sequential(layers)
    try:
        return Graph((spec["name"], layer, spec["inputs"]) for spec, layer in zip(specs, layers))
    except (KeyError, TypeError, ValueError) as err:
        raise _fail(path, f"has a graph that does not connect ({err})") from None
