"""A new layer in one file: PReLU, its math and one register_layer call, and nothing
edited anywhere else. It then runs in both Jacobian modes, saves and loads, imports from
PyTorch and exports back, and trains under the Jacobian penalty."""
import numpy as np
import pytest
import torch

import fwdderiv as fd
from fwdderiv.registry import LayerSchema, SchemaError, register_layer
from fwdderiv.regularization import jacobian_penalty


class PReLU(fd.Layer):
    """torch.nn.PReLU: y = x if x > 0 else a * x, one slope a per channel or one for all.

    Kink convention (PyTorch's): at x = 0 the slope is a."""

    pointwise = True
    param_names = ("weight",)

    def __init__(self, num_parameters=1, init=0.25):
        self.num_parameters = num_parameters
        self.weight = np.full(num_parameters, init, np.float32)

    def get_config(self):
        return {"num_parameters": self.num_parameters}

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def _a(self, x):
        a = self.weight.astype(x.dtype)
        return a.reshape((1, -1) + (1,) * (x.ndim - 2)) if a.size > 1 else a

    def forward(self, x):
        neg = x <= 0
        return np.where(neg, self._a(x) * x, x), (x, neg)

    def slope(self, x, neg):
        return np.where(neg, self._a(x), 1).astype(x.dtype)

    def jvp(self, cache, dx):
        return self.slope(*cache)[:, None] * dx

    vjp = jvp

    def _per_weight(self, g):
        axes = (0,) + tuple(range(2, g.ndim)) if self.weight.size > 1 else None
        return np.asarray(g.sum(axis=axes), self.weight.dtype).reshape(-1)

    def param_vjp(self, cache, gy):
        x, neg = cache
        return {"weight": self._per_weight(gy * np.where(neg, x, 0))}

    def jvp_grad(self, cache, x, dx, gdy):
        _, neg = cache
        return None, {"weight": self._per_weight((gdy * dx * neg[:, None]).sum(axis=1))}


def _count(v, field):
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 16:
        raise SchemaError(f"field {field!r} must be an int in [1, 65536], got {v!r}")
    return v


def _from_torch(ctx, args):
    weight = ctx.param(args["weight"])
    layer = PReLU(weight.size)
    layer.weight = weight
    return ctx.emit(layer, args["self"])


def _to_torch(layer):
    module = torch.nn.PReLU(layer.num_parameters)
    module.weight.data = torch.from_numpy(np.array(layer.weight, copy=True))
    return module


register_layer(PReLU, schema=LayerSchema({"num_parameters": (_count, 1)},
                                         lambda c: {"weight": (c["num_parameters"],)}),
               torch={"prelu": _from_torch}, to_torch=_to_torch)

# ---------------------------------------------------------------------------------------


def network(seed=0):
    rng = np.random.default_rng(seed)
    prelu = PReLU(3)
    prelu.weight = rng.uniform(-0.5, 0.5, 3)
    return fd.Sequential([fd.Conv2d(1, 3, 3, seed=1), prelu, fd.Flatten(),
                          fd.Linear(3 * 6 * 6, 4, seed=2)])


def inputs(seed=1):
    return np.random.default_rng(seed).standard_normal((2, 1, 8, 8))


def test_both_jacobian_modes_equal_finite_differences():
    net, x = network(), inputs()
    J = net.jacobian(x)
    np.testing.assert_allclose(J, net.jacobian(x, mode="reverse"), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)


def test_saves_and_loads(tmp_path):
    net, x = network(), inputs()
    fd.save(net, tmp_path / "prelu.npz")
    back = fd.load(tmp_path / "prelu.npz")
    assert isinstance(back.layers[1], PReLU)
    np.testing.assert_array_equal(back.layers[1].weight, net.layers[1].weight)
    np.testing.assert_array_equal(back.jacobian(x), net.jacobian(x))


def test_a_bad_file_is_refused_by_its_schema(tmp_path):
    net = network()
    net.layers[1].num_parameters = 0            # what a corrupted file would say
    with pytest.raises(ValueError, match="num_parameters"):
        fd.save(net, tmp_path / "bad.npz")


def test_imports_from_pytorch_and_exports_back():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.PReLU(3),
                                torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 4)).double().eval()
    model[1].weight.data.uniform_(-0.5, 0.5)
    x = inputs()
    net = fd.from_torch(model, x)
    assert any(isinstance(layer, PReLU) for layer in net.layers)
    # per example: torch.func.vmap has no batching rule for a per-channel prelu weight
    Jt = np.stack([torch.func.jacrev(lambda v: model(v[None])[0])(torch.from_numpy(xi))
                   .detach().numpy() for xi in x])
    np.testing.assert_allclose(net.jacobian(x), Jt, rtol=1e-12, atol=1e-14)
    back = fd.to_torch(net).double()
    np.testing.assert_allclose(back(torch.from_numpy(x)).detach().numpy(), net(x),
                               rtol=1e-12, atol=1e-14)


def test_the_jacobian_penalty_gradient_of_its_weight_equals_finite_differences():
    net, x = network(), inputs()
    prelu = net.layers[1]
    _, grads = jacobian_penalty(net, x, method="exact")
    h, fd_grad = 1e-6, np.zeros(3)
    for i in range(3):
        w = prelu.weight.copy()
        prelu.weight = w + h * np.eye(3)[i]
        up = jacobian_penalty(net, x, method="exact")[0]
        prelu.weight = w - h * np.eye(3)[i]
        down = jacobian_penalty(net, x, method="exact")[0]
        prelu.weight = w
        fd_grad[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(grads[1]["weight"], fd_grad, rtol=1e-5, atol=1e-9)
    assert np.abs(fd_grad).max() > 1e-3         # a real gradient was compared


def test_a_layer_with_parameters_but_no_jvp_grad_cannot_be_registered():
    class Half(PReLU):
        jvp_grad = fd.Layer.jvp_grad

    with pytest.raises(TypeError, match="does not implement jvp_grad"):
        register_layer(Half)
