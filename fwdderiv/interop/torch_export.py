"""Export a fwdderiv network as a PyTorch module with the same layers and weights."""

from .. import registry


def _torch_layer(layer):
    """One fwdderiv layer as a torch.nn module (weights copied, dtype kept): its registered
    export."""
    name = type(layer).__name__
    entry = registry.ENTRIES.get(name)
    if entry is None or entry.cls is not type(layer) or entry.to_torch is None:
        raise TypeError(f"to_torch: no PyTorch export for the fwdderiv layer {layer!r}; "
                        f"register one with fwdderiv.register_layer({name}, to_torch=...)")
    return entry.to_torch(layer)


def to_torch(net):
    """A ``torch.nn.Module`` running a fwdderiv network's layers with the same weights.

    Parameters
    ----------
    net : Sequential or Graph
        Layers with torch.nn counterparts (the ones :func:`fwdderiv.from_torch` creates,
        and the graph joints ``Add``, ``Concat``, ``Mul``, ``Scale``, ``Reshape``,
        ``Slice``, ``Pad``).

    Returns
    -------
    torch.nn.Module
        In eval mode; ``nn.Sequential`` for a :class:`fwdderiv.Sequential`, else a module
        that runs the graph's nodes in order. Parameters keep their dtype.
    """
    import torch
    from torch import nn
    from .. import Sequential
    if not hasattr(net, "nodes"):
        raise TypeError(f"to_torch: expected a fwdderiv Sequential or Graph, got "
                        f"{type(net).__name__}")
    if isinstance(net, Sequential):
        return nn.Sequential(*[_torch_layer(layer) for layer in net.layers]).eval()

    class GraphModule(nn.Module):
        # a ModuleList by position: node names may hold "." (``conv1.bn`` in the zoo's
        # ResNet), which torch forbids in module names
        def __init__(self, nodes):
            super().__init__()
            self.steps = [(name, tuple(inputs)) for name, _, inputs in nodes]
            self.layers = nn.ModuleList([_torch_layer(layer) for _, layer, _ in nodes])

        def forward(self, x):
            values = {"input": x}
            for (name, inputs), module in zip(self.steps, self.layers):
                values[name] = module(*[values[i] for i in inputs])
            return values[self.steps[-1][0]]

    return GraphModule(net.nodes).eval()
