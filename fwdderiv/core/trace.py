"""The per-layer intermediates of the forward derivative: H_k and dH_k/dx."""
import numpy as np


class Trace:
    """Every activation ``H_k`` and its Jacobian ``dH_k/dx``, k = 0 (the input) .. L.

    Lets a reader watch equation (6) of Papernot et al. (2016) unfold layer by layer.

    Attributes
    ----------
    layers : list
    shapes : list of tuple
        Per-example shapes ``S_k``.
    outputs : list of ndarray
        ``outputs[k]`` has shape ``(N, *S_k)``; ``outputs[0]`` is the input.
    jacobians : list of ndarray
        ``jacobians[k]`` has shape ``(N, *S_k, *S_0)``; ``jacobians[0]`` is the identity.
    names : list of str
        The node names of ``layers`` (``"0"``, ``"1"``... in a :class:`Sequential`).
    """

    def __init__(self, layers, shapes, outputs, tangents, names=None):
        self.layers = list(layers)
        self.names = list(names) if names is not None else [str(i) for i in range(len(self.layers))]
        self.shapes = list(shapes)
        self.outputs = outputs
        s_in = shapes[0]
        D = int(np.prod(s_in))
        self.jacobians = [
            np.ascontiguousarray(np.moveaxis(t.reshape(t.shape[0], D, int(np.prod(s))), 1, 2)).reshape(
                (t.shape[0],) + tuple(s) + tuple(s_in))
            for t, s in zip(tangents, shapes)]

    def __getitem__(self, name):
        """``(H, dH/dx)`` of the node called ``name`` (``"input"`` for the input)."""
        k = 0 if name == "input" else self.names.index(name) + 1
        return self.outputs[k], self.jacobians[k]

    @property
    def output(self):
        return self.outputs[-1]

    @property
    def jacobian(self):
        return self.jacobians[-1]

    def __len__(self):
        return len(self.outputs)

    def summary(self):
        """One line per layer: name, shape of dH_k/dx, share of non-zero entries, max |.|."""
        rows = [("input", self.jacobians[0])] + [
            (repr(layer), J) for layer, J in zip(self.layers, self.jacobians[1:])]
        width = max(len(name) for name, _ in rows)
        lines = [f"{'layer':<{width}}  {'dH_k/dx shape':<24} {'nonzero':>8} {'max|.|':>10}"]
        for name, J in rows:
            nz = np.count_nonzero(J) / max(J.size, 1)
            mx = float(np.nanmax(np.abs(J))) if J.size else 0.0
            lines.append(f"{name:<{width}}  {str(J.shape[1:]):<24} {nz:8.1%} {mx:10.3g}")
        return "\n".join(lines)
