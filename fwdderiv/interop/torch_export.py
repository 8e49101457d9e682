"""Export a fwdderiv network as a PyTorch module with the same layers and weights."""
import numpy as np

from .. import registry


def _torch_layer(layer):
    """One fwdderiv layer as a torch.nn module (weights copied, dtype kept)."""
    import torch
    from torch import nn
    name = type(layer).__name__
    if registry.exporter(name) is not None and registry.layer_types()[name] is type(layer):
        return registry.exporter(name)(layer)
    config = layer.get_config() if hasattr(layer, "get_config") else {}
    special = _special_modules()
    if name in special:
        return special[name](**config)
    if name == "Pad2d":
        return nn.ZeroPad2d(tuple(config["padding"]))
    if name == "Softmax" and "dim" not in config:
        return nn.Softmax(dim=-1)
    if name == "LogSoftmax" and "dim" not in config:
        return nn.LogSoftmax(dim=-1)
    if name == "Flatten" and not config:
        return nn.Flatten()
    cls = getattr(nn, name, None)
    if cls is None:
        raise TypeError(f"to_torch: no torch.nn module for the fwdderiv layer {layer!r}; "
                        f"export networks built from layers with torch.nn names")
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    module = cls(**config)
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


def _special_modules():
    """torch.nn has no module for fwdderiv's graph joints and tensor ops: small ones here."""
    import torch
    from torch import nn

    class Add(nn.Module):
        def forward(self, *xs):
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out

    class Mul(nn.Module):
        def forward(self, a, b):
            return a * b

    class Concat(nn.Module):
        def __init__(self, dim=1):
            super().__init__()
            self.dim = dim

        def forward(self, *xs):
            return torch.cat(xs, self.dim)

    class Scale(nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    class Reshape(nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.shape = tuple(shape)

        def forward(self, x):
            return x.reshape((x.shape[0],) + self.shape)

    class Slice(nn.Module):
        def __init__(self, starts, ends, axes, steps):
            super().__init__()
            self.index = list(zip(starts, ends, axes, steps))

        def forward(self, x):
            index = [slice(None)] * x.ndim
            for a, b, d, s in self.index:
                index[d % x.ndim] = slice(a, b, s)
            return x[tuple(index)]

    class Pad(nn.Module):
        def __init__(self, pad, value=0.0):
            super().__init__()
            self.pad, self.value = tuple(pad), value

        def forward(self, x):
            return nn.functional.pad(x, self.pad, value=self.value)

    return {"Add": Add, "Mul": Mul, "Concat": Concat, "Scale": Scale, "Reshape": Reshape,
            "Slice": Slice, "Pad": Pad}


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
