"""The Jacobian penalty's gradients equal PyTorch's double backward, for every registered
fwdderiv layer: each entry's ``Example`` in a small network (as in test_registry.py), the
exact penalty :math:`\\tfrac12\\,\\mathrm{mean}_n \\|J_n\\|_F^2` and its gradients with
respect to the input and to every parameter, against ``torch.autograd.grad(...,
create_graph=True)`` and ``backward()`` on the network's ``to_torch`` export with the same
weights, float64.

The penalty's gradient with respect to the input comes from a probe: a first layer adding
a parameter ``offset`` (zero) to the input, whose gradient is the input gradient summed
over the batch."""
import numpy as np
import pytest
import torch

import fwdderiv as fd
from tests.routes import torch_exact_penalty
from fwdderiv import registry
from fwdderiv.regularization import jacobian_penalty

from .test_registry import build, inputs

#: Registered layers this test leaves out, with the reason.
NOT_COVERED = {
    # its output does not depend on its input: the Jacobian, the penalty and every
    # gradient are zero, and PyTorch's grad refuses an input that is not used
    "Constant": "output independent of the input",
}
OWN = sorted(name for name, e in registry.ENTRIES.items()
             if e.cls.__module__.startswith("fwdderiv.") and e.example is not None
             and e.to_torch is not None        # no export: nothing to compare with
             and name not in NOT_COVERED)
#: Outputs of the classifier head after the layer.
C = 3


class Offset(fd.Layer):
    """``y = x + offset``: the probe whose parameter gradient is the input gradient of
    whatever comes after it, summed over the batch."""

    linear = True
    param_names = ("offset",)

    def __init__(self, shape):
        self.offset = np.zeros(shape)

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return x + self.offset, None

    def jvp(self, cache, dx):
        return dx

    vjp = jvp

    def param_vjp(self, cache, gy):
        return {"offset": gy.sum(axis=0)}

    def jvp_grad(self, cache, x, dx, gdy):
        return None, {"offset": np.zeros_like(self.offset)}      # J does not depend on it


def float64_linear(n_in, seed):
    head = fd.Linear(n_in, C, seed=seed)
    head.weight, head.bias = head.weight.astype(np.float64) * 2, head.bias.astype(np.float64)
    return head


def core_nodes(name, source):
    """The example's layer after one branch of ``source`` per input (distinct Scale and
    Tanh, so that a joint sees different values), then Tanh, Flatten and a Linear head:
    the penalty needs a vector of class scores. Returns the nodes and the layer's node."""
    layer, e = build(name), registry.ENTRIES[name]
    k = e.example.inputs
    nodes, ins = [], [source]
    if k > 1:
        ins = []
        for i in range(k):
            nodes += [(f"s{i}", fd.Scale(0.5 + i), source), (f"t{i}", fd.Tanh(), f"s{i}")]
            ins.append(f"t{i}")
    out = (layer.output_shape(*[tuple(e.example.in_shape)] * k) if k > 1
           else layer.output_shape(tuple(e.example.in_shape)))
    nodes += [("layer", layer, ins if k > 1 else source), ("act", fd.Tanh(), "layer"),
              ("flat", fd.Flatten(), "act"),
              ("head", float64_linear(int(np.prod(out)), seed=3), "flat")]
    return nodes


@pytest.mark.parametrize("name", OWN)
def test_penalty_gradients_equal_pytorch_double_backward(name):
    x = inputs(name)
    nodes = core_nodes(name, "input")
    probed = fd.Graph([("probe", Offset(x.shape[1:]), "input")] +
                      [(n, layer, "probe" if src == "input" else
                        [("probe" if s == "input" else s) for s in src]
                        if isinstance(src, list) else src) for n, layer, src in nodes])
    value, grads = jacobian_penalty(probed, x, method="exact")
    model = fd.to_torch(fd.Graph(nodes)).double()
    t_value, t_gx = torch_exact_penalty(model, x, input_grad=True)
    assert value == pytest.approx(t_value, rel=1e-9, abs=1e-14)
    np.testing.assert_allclose(grads[0]["offset"], t_gx, rtol=1e-9,
                               atol=1e-12 * max(np.abs(t_gx).max(), 1), err_msg="input")
    for (node, layer, _), g, module in zip(nodes, grads[1:], model.layers):
        t_params = dict(module.named_parameters())
        for pname, p in layer.params.items():
            if p is None:
                continue
            assert pname in t_params, f"{node}: {layer!r} {pname} has no PyTorch counterpart"
            tp = t_params[pname]
            tg = np.zeros(tuple(tp.shape)) if tp.grad is None else tp.grad.numpy()
            np.testing.assert_allclose(g[pname].reshape(tg.shape), tg, rtol=1e-9,
                                       atol=1e-12 * max(np.abs(tg).max(), 1),
                                       err_msg=f"{node}: {layer!r} {pname}")
