"""Interoperability: import networks from PyTorch, export them back.

PyTorch is optional: it is imported when one of these functions is called, never by
``import fwdderiv``.
"""


def from_torch(module, example_input):
    """Import a PyTorch module as a fwdderiv network; see :func:`fwdderiv.interop.torch_import.from_torch`."""
    from .torch_import import from_torch as _from_torch
    return _from_torch(module, example_input)


def to_torch(net):
    """Export a fwdderiv network as a PyTorch module; see :func:`fwdderiv.interop.torch_export.to_torch`."""
    from .torch_export import to_torch as _to_torch
    return _to_torch(net)


def from_onnx(model, per_example=None):
    """Import an ONNX model as a fwdderiv network; see :func:`fwdderiv.interop.onnx_import.from_onnx`."""
    from .onnx_import import from_onnx as _from_onnx
    return _from_onnx(model, per_example)


def supported_operators(kind):
    """The operators an import reads, sorted: ``kind`` is ``"torch"`` (ATen operator names,
    as ``torch.export`` records them) or ``"onnx"`` (ONNX op types). The registered layers'
    rules and the import's own (shapes, constants, tuples)."""
    from .. import layers, registry  # noqa: F401  (the built-in layers register on import)
    if kind == "torch":
        from .torch_ops import RULES
    elif kind == "onnx":
        from .onnx_ops import RULES
    else:
        raise ValueError(f"supported_operators: kind must be 'torch' or 'onnx', got {kind!r}")
    return sorted(set(RULES) | {op for e in registry.ENTRIES.values() for op in getattr(e, kind)})


__all__ = ["from_onnx", "from_torch", "supported_operators", "to_torch"]


def to_jax(net, dtype="float64"):
    """Export a fwdderiv network as a JAX function; see :func:`fwdderiv.interop.jax_export.to_jax`."""
    from .jax_export import to_jax as _to_jax
    return _to_jax(net, dtype)


def x64():
    """JAX's 64-bit mode inside a ``with`` block; see :func:`fwdderiv.interop.jax_export.x64`."""
    from .jax_export import x64 as _x64
    return _x64()


__all__ += ["to_jax", "x64"]
