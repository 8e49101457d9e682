"""A new layer in one file: a user's own operator, its math and one register_layer call,
and nothing edited anywhere else. It then runs in both Jacobian modes, saves and loads,
imports from PyTorch and exports back, and trains under the Jacobian penalty.

The operator is the user's too: ``fdexample::soft_clip``, a PyTorch custom operator
(``torch.library.custom_op``) that ``torch.export`` records as it is, the way a model
calling a library's own kernel is exported."""
import numpy as np
import pytest
import torch

import fwdderiv as fd
from fwdderiv.registry import LayerSchema, SchemaError, register_layer
from fwdderiv.regularization import jacobian_penalty
from tests.routes import torch_exact_penalty


class SoftClip(fd.Layer):
    """A learnt soft clipping, y = c * tanh(x / c), one bound c > 0 per channel (axis 1)
    or one for all: smooth, so the penalty has an input part and a parameter part.

    dy/dx = 1 - t^2 and dy/dc = t - u (1 - t^2), with u = x / c and t = tanh(u)."""

    pointwise = True
    param_names = ("bound",)

    def __init__(self, num_parameters=1):
        self.num_parameters = num_parameters
        self.bound = np.ones(num_parameters, np.float32)

    def get_config(self):
        return {"num_parameters": self.num_parameters}

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def _c(self, x):
        c = self.bound.astype(x.dtype)
        return c.reshape((1, -1) + (1,) * (x.ndim - 2)) if c.size > 1 else c

    def forward(self, x):
        c = self._c(x)
        u = x / c
        t = np.tanh(u)
        return c * t, (c, u, t)

    def jvp(self, cache, dx):
        _, _, t = cache
        return (1 - t * t)[:, None] * dx

    vjp = jvp

    def _per_bound(self, g):
        axes = (0,) + tuple(range(2, g.ndim)) if self.bound.size > 1 else None
        return np.asarray(g.sum(axis=axes), self.bound.dtype).reshape(-1)

    def param_vjp(self, cache, gy):
        _, u, t = cache
        return {"bound": self._per_bound(gy * (t - u * (1 - t * t)))}

    def jvp_grad(self, cache, x, dx, gdy):
        # d(1 - t^2)/du = -2 t (1 - t^2); u = x / c
        c, u, t = cache
        g = (gdy * dx).sum(axis=1) * (-2 * t * (1 - t * t))
        return g / c, {"bound": self._per_bound(-g * u / c)}


@torch.library.custom_op("fdexample::soft_clip", mutates_args=())
def soft_clip(x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    c = bound.reshape((-1,) + (1,) * (x.ndim - 2)) if bound.numel() > 1 else bound
    return c * torch.tanh(x / c)


@soft_clip.register_fake
def _(x, bound):
    return torch.empty_like(x)


def _soft_clip_backward(ctx, gy):
    # written with differentiable operations: PyTorch's double backward goes through it
    x, bound = ctx.saved_tensors
    c = bound.reshape((-1,) + (1,) * (x.ndim - 2)) if bound.numel() > 1 else bound
    u = x / c
    t = torch.tanh(u)
    gc = gy * (t - u * (1 - t * t))
    axes = [0] + list(range(2, x.ndim)) if bound.numel() > 1 else list(range(x.ndim))
    return gy * (1 - t * t), gc.sum(dim=axes).reshape(bound.shape)


def _save(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


soft_clip.register_autograd(_soft_clip_backward, setup_context=_save)


class TorchSoftClip(torch.nn.Module):
    def __init__(self, num_parameters=1):
        super().__init__()
        self.bound = torch.nn.Parameter(torch.ones(num_parameters))

    def forward(self, x):
        return torch.ops.fdexample.soft_clip(x, self.bound)


def _count(v, field):
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 16:
        raise SchemaError(f"field {field!r} must be an int in [1, 65536], got {v!r}")
    return v


def _from_torch(ctx, args):
    bound = ctx.param(args["bound"])
    layer = SoftClip(bound.size)
    layer.bound = bound
    return ctx.emit(layer, args["x"])


def _to_torch(layer):
    module = TorchSoftClip(layer.num_parameters)
    module.bound.data = torch.from_numpy(np.array(layer.bound, copy=True))
    return module


register_layer(SoftClip, schema=LayerSchema({"num_parameters": (_count, 1)},
                                            lambda c: {"bound": (c["num_parameters"],)}),
               torch={"soft_clip": _from_torch}, to_torch=_to_torch)

# ---------------------------------------------------------------------------------------


def network(seed=0):
    rng = np.random.default_rng(seed)
    clip = SoftClip(3)
    clip.bound = rng.uniform(0.3, 1.5, 3)
    return fd.Sequential([fd.Conv2d(1, 3, 3, seed=1), clip, fd.Flatten(),
                          fd.Linear(3 * 6 * 6, 4, seed=2)])


def inputs(seed=1):
    return np.random.default_rng(seed).standard_normal((2, 1, 8, 8))


def torch_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), TorchSoftClip(3),
                                torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 4))
    model[1].bound.data.uniform_(0.3, 1.5)
    return model.double().eval()


def test_both_jacobian_modes_equal_finite_differences():
    net, x = network(), inputs()
    J = net.jacobian(x)
    np.testing.assert_allclose(J, net.jacobian(x, mode="reverse"), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)


def test_saves_and_loads(tmp_path):
    net, x = network(), inputs()
    fd.save(net, tmp_path / "clip.npz")
    back = fd.load(tmp_path / "clip.npz")
    assert isinstance(back.layers[1], SoftClip)
    np.testing.assert_array_equal(back.layers[1].bound, net.layers[1].bound)
    np.testing.assert_array_equal(back.jacobian(x), net.jacobian(x))


def test_a_bad_file_is_refused_by_its_schema(tmp_path):
    net = network()
    net.layers[1].num_parameters = 0            # what a corrupted file would say
    with pytest.raises(ValueError, match="num_parameters"):
        fd.save(net, tmp_path / "bad.npz")


def test_imports_from_pytorch_and_exports_back():
    model, x = torch_model(), inputs()
    net = fd.from_torch(model, x)
    assert any(isinstance(layer, SoftClip) for layer in net.layers)
    # per example, by plain autograd: a custom operator has no batching rule for vmap
    Jt = np.stack([torch.autograd.functional.jacobian(
        lambda v: model(v[None])[0], torch.from_numpy(xi)).numpy() for xi in x])
    np.testing.assert_allclose(net.jacobian(x), Jt, rtol=1e-12, atol=1e-14)
    back = fd.to_torch(net).double()
    np.testing.assert_allclose(back(torch.from_numpy(x)).detach().numpy(), net(x),
                               rtol=1e-12, atol=1e-14)


def test_the_jacobian_penalty_gradient_of_its_bound_equals_finite_differences():
    net, x = network(), inputs()
    clip = net.layers[1]
    _, grads = jacobian_penalty(net, x, method="exact")
    h, fd_grad = 1e-6, np.zeros(3)
    for i in range(3):
        c = clip.bound.copy()
        clip.bound = c + h * np.eye(3)[i]
        up = jacobian_penalty(net, x, method="exact")[0]
        clip.bound = c - h * np.eye(3)[i]
        down = jacobian_penalty(net, x, method="exact")[0]
        clip.bound = c
        fd_grad[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(grads[1]["bound"], fd_grad, rtol=1e-5, atol=1e-9)
    assert np.abs(fd_grad).max() > 1e-3         # a real gradient was compared


def test_the_jacobian_penalty_gradients_equal_pytorch_double_backward():
    model, x = torch_model(), inputs()
    net = fd.from_torch(model, x)
    value, grads = jacobian_penalty(net, x, method="exact")
    assert value == pytest.approx(torch_exact_penalty(model, x), rel=1e-10)
    for k, name in ((0, "weight"), (1, "bound"), (3, "weight")):
        torch_grad = dict(model[k].named_parameters())[name].grad.numpy()
        np.testing.assert_allclose(grads[k][name], torch_grad, rtol=1e-9, atol=1e-12,
                                   err_msg=f"{net.layers[k]!r} {name}")


def test_a_layer_with_parameters_but_no_jvp_grad_cannot_be_registered():
    class Half(SoftClip):
        jvp_grad = fd.Layer.jvp_grad

    with pytest.raises(TypeError, match="does not implement jvp_grad"):
        register_layer(Half)
