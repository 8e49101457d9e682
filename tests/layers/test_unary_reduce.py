"""exp, log, abs, neg, clamp (either bound alone), where with a constant mask, and the
reductions sum, amax / max(dim), var and std over chosen axes, written as PyTorch users
write them: through from_torch and through ONNX (opset 17) -> from_onnx, forward and
reverse, against torch.func in float64; the Jacobian penalty's gradients against PyTorch's
double backward; PyTorch's derivatives at kinks; refusals."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fwdderiv as fd
from tests.routes import imported, torch_exact_penalty, torch_jacobians
from fwdderiv.regularization import jacobian_penalty


class ExpLogSum(nn.Module):
    """A log-sum-exp pooling written by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.exp(0.5 * self.conv(x)).sum(dim=(2, 3), keepdim=True)
        return self.head(torch.log(y).flatten(1))


class AbsMax(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 5 + 4 * 4, 3)

    def forward(self, x):
        y = self.conv(x)
        a = y.abs().amax(1)                              # (N, 4, 5)
        b = torch.max(y, dim=3, keepdim=False).values    # (N, 4, 4)
        return self.head(torch.cat([a.flatten(1), b.flatten(1)], 1))


class VarStd(nn.Module):
    """Channels-first normalisation written with var, and std over the image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 4 * 5, 3)

    def forward(self, x):
        y = self.conv(x)
        u = y.mean(1, keepdim=True)
        v = y.var(dim=1, keepdim=True, unbiased=False)
        y = (y - u) / torch.sqrt(v + 1e-6)
        y = y * y.std(dim=(2, 3), keepdim=True)
        return self.head(y.flatten(1)) + y.std(dim=(1, 2, 3), unbiased=True)[:, None]


class WhereClamp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("mask", torch.rand(1, 4, 5, generator=torch.Generator().manual_seed(3)) > 0.5)
        self.register_buffer("keep", torch.rand(4, 4, 5, generator=torch.Generator().manual_seed(4)) > 0.3)
        self.register_buffer("fill", torch.linspace(-1, 1, 20).reshape(4, 5))
        self.head = nn.Linear(4 * 4 * 5, 3)

    def forward(self, x):
        y = self.conv(x)
        a = torch.where(self.mask, y, 0.)
        b = torch.where(self.keep, 2.0, torch.tanh(y))
        c = torch.where(self.keep, a, -y)
        d = torch.where(self.mask, self.fill, y)
        e = y.clamp(min=-0.3) + y.clamp(max=0.4) + torch.clamp(y, -0.5, 0.5) \
            + y.clamp_min(0.1) - y.clamp_max(0.2) + torch.clip(y, -0.2, 0.7) + torch.neg(y)
        return self.head((a + b + c + d + e).flatten(1))


MODELS = {"exp, log, sum": ExpLogSum, "abs, amax, max(dim)": AbsMax, "var, std": VarStd,
          "where, clamp, neg": WhereClamp}
#: Layers each model imports as, by route (ONNX writes var and std with ReduceMean, Sub,
#: Mul, Div and Sqrt; torch.clamp with two bounds as Clip, which is Hardtanh).
LAYERS = {("exp, log, sum", "torch"): {"Exp", "Log", "Sum"},
          ("exp, log, sum", "onnx"): {"Exp", "Log", "Sum"},
          ("abs, amax, max(dim)", "torch"): {"Abs", "Amax"},
          ("abs, amax, max(dim)", "onnx"): {"Abs", "Amax"},
          ("var, std", "torch"): {"Var", "Std"},
          ("var, std", "onnx"): {"Mean", "Pow"},
          ("where, clamp, neg", "torch"): {"Where", "Clamp", "Scale", "Constant"},
          ("where, clamp, neg", "onnx"): {"Where", "Clamp", "Hardtanh", "Scale", "Constant"}}


def model64(cls, seed=0):
    torch.manual_seed(seed)
    return cls().double().eval()


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(3, 3, 4, 5))


@pytest.mark.parametrize("route", ["torch", "onnx"])
@pytest.mark.parametrize("name", list(MODELS))
def test_jacobians_equal_torch_func(name, route, x, tmp_path):
    model = model64(MODELS[name])
    net = imported(model, x, route, tmp_path)
    assert LAYERS[name, route] <= {type(layer).__name__ for layer in net.layers}
    with torch.no_grad():
        np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).numpy(),
                                   rtol=1e-12, atol=1e-12)
    rev, fwd = torch_jacobians(model, x)
    np.testing.assert_allclose(rev, fwd, rtol=1e-10, atol=1e-12)
    scale = np.abs(rev).max()
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), rev, rtol=1e-10,
                                   atol=1e-12 * scale, err_msg=f"{name} {route} {mode}")


# -- the Jacobian penalty: gradients against PyTorch's double backward ----------------------
class Curved(nn.Module):
    """Every nonlinear layer of this file between layers with parameters."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4, 6)
        self.fc2 = nn.Linear(6 + 4 * 5 + 4 + 4, 3)

    def forward(self, x):
        y = self.conv(x)
        a = torch.exp(0.3 * y).sum(dim=(2, 3))                         # (N, 4)
        b = y.abs().amax(dim=2)                                         # (N, 4, 5)
        c = y.var(dim=(2, 3), unbiased=True)                            # (N, 4)
        s = y.std(dim=3, keepdim=True).clamp(min=0.2)                   # (N, 4, 4, 1)
        h = torch.tanh(self.fc1(torch.log(s).flatten(1)))
        return self.fc2(torch.cat([h, b.flatten(1), torch.log(a), c], 1))


def test_penalty_gradients_equal_pytorch_double_backward():
    model = model64(Curved)
    x = np.random.default_rng(1).normal(size=(3, 3, 4, 5))
    net = fd.from_torch(model, torch.from_numpy(x))
    value, grads = jacobian_penalty(net, x, method="exact")
    assert value == pytest.approx(torch_exact_penalty(model, x), rel=1e-10)
    checked, scale = 0, max(np.abs(p.grad).max() for p in model.parameters()
                                 if p.grad is not None)
    for layer, g in zip(net.layers, grads):
        for pname in layer.params:
            mod = next(m for m in (model.conv, model.fc1, model.fc2)
                       if np.array_equal(getattr(m, pname).detach().numpy(),
                                         getattr(layer, pname)))
            grad = getattr(mod, pname).grad          # None: no path to the penalty
            t = np.zeros(g[pname].shape) if grad is None else grad.numpy()
            # (the convolution's bias has none: log-sum-exp, var and std are blind to
            # shifts, amax's derivative is piecewise constant; both give rounding noise)
            np.testing.assert_allclose(g[pname], t, rtol=1e-9, atol=1e-12 * float(scale),
                                       err_msg=f"{layer!r} {pname}")
            checked += 1
    assert checked == 6


@pytest.mark.parametrize("layer", [fd.Exp(), fd.Log(), fd.Abs(), fd.Clamp(-0.2, 0.3),
                                   fd.Amax([2, 3], keepdim=True), fd.Amax([1], ties="first"),
                                   fd.Var([1, 3], correction=1.0),
                                   fd.Std([2], correction=0.0, keepdim=True)],
                         ids=repr)
def test_jvp_grad_equals_central_differences(layer):
    from fwdderiv.core.second_order import jvp_grad_reference
    rng = np.random.default_rng(2)
    x = rng.uniform(0.3, 2.0, size=(2, 3, 4, 5)) * rng.choice([-1, 1], size=(2, 3, 4, 5))
    if isinstance(layer, fd.Log):
        x = np.abs(x)
    y, cache = layer.forward(x)
    dx = rng.normal(size=(2, 2) + x.shape[1:])
    gdy = rng.normal(size=(2, 2) + y.shape[1:])
    gx, _ = layer.jvp_grad(cache, x, dx, gdy)
    ref = jvp_grad_reference(layer, x, dx, gdy)
    ref = ref[0] if isinstance(ref, tuple) else ref
    np.testing.assert_allclose(np.zeros_like(x) if gx is None else gx, ref, rtol=1e-6,
                               atol=1e-7)


def test_a_tangent_shared_by_the_batch():
    """A tangent of batch 1 (a shared identity seed) broadcasts over the examples."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 2, 3, 4))
    dx = rng.normal(size=(1, 5, 2, 3, 4))
    for layer in (fd.Amax([1, 3]), fd.Amax([2], ties="first"), fd.Var([1, 2]),
                  fd.Std([3], keepdim=True), fd.Sum([2])):
        y, cache = layer.forward(x)
        full = layer.jvp(cache, np.repeat(dx, 3, axis=0))
        shared = layer.jvp(cache, dx)           # a linear layer keeps it shared
        assert shared.shape[0] == (1 if layer.linear else 3)
        np.testing.assert_allclose(np.broadcast_to(shared, full.shape), full, rtol=1e-14)
    where = fd.Where([1, 3, 4])
    where.mask = (rng.random((1, 3, 4)) > 0.5).astype(np.float64)
    y, cache = where.forward(x, x[:, :1])
    shared = where.jvp(cache, dx, dx[:, :, :1])
    assert shared.shape == (1, 5, 2, 3, 4)
    full = where.jvp(cache, np.repeat(dx, 3, axis=0), np.repeat(dx[:, :, :1], 3, axis=0))
    np.testing.assert_array_equal(np.broadcast_to(shared, full.shape), full)


# -- derivatives at kinks: PyTorch's, exactly -------------------------------------------
class Kinks(nn.Module):
    def forward(self, x):
        return torch.cat([x.abs(), x.clamp(-1.0, 1.0), x.clamp_min(0.0), x.clamp(max=2.0),
                          x.amax(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values], 1)


@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_derivatives_at_kinks_are_pytorchs(route, tmp_path):
    x = np.array([[0.0, -1.0, 1.0, 2.0, 2.0, -3.0]])
    net = imported(Kinks().double(), np.concatenate([x, x]), route, tmp_path)
    rev, _ = torch_jacobians(Kinks().double(), x)
    J = net.jacobian(x, mode="reverse")
    np.testing.assert_array_equal(net.jacobian(x), J)
    diag = np.diagonal(rev[0, :24].reshape(4, 6, 6), axis1=1, axis2=2)
    assert diag.tolist() == [[0, -1, 1, 1, 1, -1],             # abs: sign(0) = 0
                             [1, 1, 1, 0, 0, 0],               # clamp: 1 at the bounds
                             [1, 0, 1, 1, 1, 0],               # clamp_min(0): 1 at 0
                             [1, 1, 1, 1, 1, 1]]               # clamp(max=2): 1 at 2
    assert rev[0, 24].tolist() == [0, 0, 0, 0.5, 0.5, 0]        # amax: split evenly
    assert rev[0, 25].tolist() == [0, 0, 0, 1, 0, 0]            # max(dim): the first
    if route == "torch":
        np.testing.assert_array_equal(J, rev)
        return
    # ONNX has no derivative convention of its own: Clip with two bounds imports as
    # Hardtanh (slope 0 at the bounds), Clip(0, inf) as ReLU (relu'(0) = 0), ReduceMax as
    # amax (ties split)
    np.testing.assert_array_equal(J[0, :6], rev[0, :6])
    np.testing.assert_array_equal(J[0, 18:25], rev[0, 18:25])
    np.testing.assert_array_equal(J[0, 25], rev[0, 24])
    assert np.diagonal(J[0, 6:12]).tolist() == [1, 0, 0, 0, 0, 0]
    assert np.diagonal(J[0, 12:18]).tolist() == [0, 0, 1, 1, 1, 0]


def test_the_kink_census_counts_ties_and_zeros():
    x = np.array([[0.0, 3.0, 3.0, 1e-12]])
    assert fd.Abs().kinks(x, 1e-9) == 2
    assert fd.Amax([1]).kinks(x, 1e-9) == 1
    assert fd.Clamp(min=3.0).kinks(x, 1e-9) == 2


def test_where_mask_broadcasts_and_chooses(tmp_path):
    where = fd.Where([1, 3])
    where.mask = np.array([[1.0, 0.0, 1.0]])
    a, b = np.arange(6.0).reshape(1, 2, 3), -np.ones((1, 1, 1))
    y, cache = where.forward(a, b)
    assert y.tolist() == [[[0, -1, 2], [3, -1, 5]]]
    ga, gb = where.vjp(cache, np.ones((1, 1, 2, 3)))
    assert ga.tolist() == [[[[1, 0, 1], [1, 0, 1]]]] and gb.tolist() == [[[[2]]]]


# -- refusals ------------------------------------------------------------------------------
class DataMask(nn.Module):
    def forward(self, x):
        return torch.where(x > 0, x, 0.)


class Elementwise2(nn.Module):
    def forward(self, x):
        return torch.max(x, torch.tanh(x))


class BatchSum(nn.Module):
    def forward(self, x):
        return x.sum(dim=(0, 1), keepdim=True).expand_as(x)


def test_refusals_name_the_operator_and_a_fix(tmp_path):
    x = np.random.default_rng(4).normal(size=(2, 3))
    with pytest.raises(ValueError, match=r"x > 0.*'gt' is not supported"):
        fd.from_torch(DataMask(), torch.from_numpy(x))
    with pytest.raises(ValueError, match="Greater"):
        imported(DataMask(), x, "onnx", tmp_path)
    with pytest.raises(ValueError, match="maximum of two tensors.*relu"):
        fd.from_torch(Elementwise2(), torch.from_numpy(x))
    with pytest.raises(ValueError, match="keep the batch axis first"):
        fd.from_torch(BatchSum(), torch.from_numpy(x))
    with pytest.raises(ValueError, match="min must not exceed max"):
        fd.Clamp(1.0, 0.0)
    with pytest.raises(ValueError, match="give min, max or both"):
        fd.Clamp()
    with pytest.raises(ValueError, match="batch axis"):
        fd.Sum([0, 1])
    with pytest.raises(ValueError, match="ties must be"):
        fd.Amax([1], ties="last")
    with pytest.raises(ValueError, match=r"Sum\(dims=\[3\].*with an axis 3, got \(2, 3, 4\)"):
        fd.Sum([3])(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"Where\(mask_shape=\[4\]\) expected two inputs"):
        fd.Where([4]).forward(np.zeros((2, 3)), np.zeros((2, 3)))
