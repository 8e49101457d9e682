"""A chain of layers: the graph runner's chain case."""
from .graph import Graph


class Sequential(Graph):
    r"""A chain of layers, :math:`F = f_L \circ \dots \circ f_1`.

    Carries the primal :math:`H_k` and the tangent :math:`\partial H_k / \partial x` side
    by side, as equation (6) of Papernot et al. (2016):
    :math:`\partial H_k/\partial x = f_k'(\cdot)\,(W_k\,\partial H_{k-1}/\partial x)`,
    starting from :math:`\partial H_0/\partial x = I`. It is a :class:`Graph` whose node
    ``k`` reads node ``k - 1``, with every method of one.

    Parameters
    ----------
    layers : sequence of layers
        Objects following the layer protocol (:class:`fwdderiv.core.Layer`).

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> net = fd.Sequential([fd.Linear(3, 4), fd.ReLU(), fd.Linear(4, 2), fd.Softmax()])
    >>> net.jacobian(np.ones((5, 3))).shape
    (5, 2, 3)
    """

    _kind = "Sequential"

    def __init__(self, layers):
        layers = list(layers)
        for i, layer in enumerate(layers):
            missing = [m for m in ("output_shape", "forward", "jvp", "vjp")
                       if not callable(getattr(layer, m, None))]
            if missing or getattr(layer, "multi_input", False):
                lacks = (f"it lacks {', '.join(missing)}; subclass fwdderiv.core.Layer"
                         if missing else "it takes several inputs; use fwdderiv.Graph")
                raise TypeError(f"Sequential: item {i} ({layer!r}) is not a layer for a "
                                f"chain: {lacks}")
        names = [str(i) for i in range(len(layers))]
        super().__init__(zip(names, layers, ["input"] + names[:-1]))

    def _where(self, k, name=None):
        return f"Sequential layer {k}"

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(self.layers[index])
        return self.layers[index]

    def __repr__(self):
        inner = "".join(f"\n  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"
