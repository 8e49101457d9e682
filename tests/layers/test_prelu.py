"""PReLU (torch.nn.PReLU): one slope or one per channel, through both import routes (its
Jacobian, forward and reverse, equals torch.func's in float64), its kink pinned to
PyTorch's, the Jacobian penalty's gradients against PyTorch's double backward, and its
refusals."""
import numpy as np
import pytest
import torch
from torch import nn

import fwdderiv as fd
from tests.routes import imported, torch_exact_penalty, torch_jacobian
from fwdderiv.regularization import jacobian_penalty


class SuperResolution(nn.Module):
    """FSRCNN's pattern: convolutions each followed by a per-channel PReLU, a shared-slope
    PReLU, then a PReLU on a vector (N, C) after a Linear head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = nn.PReLU(4)
        self.conv2 = nn.Conv2d(4, 3, 3)
        self.act2 = nn.PReLU()
        self.head = nn.Linear(3 * 4 * 4, 5)
        self.act3 = nn.PReLU(5)

    def forward(self, x):
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.head(torch.flatten(x, 1)))


def model():
    torch.manual_seed(0)
    m = SuperResolution().double().eval()
    for act in (m.act1, m.act2, m.act3):
        act.weight.data.uniform_(-0.6, 0.6)      # negative slopes too
    return m


def inputs(n=3, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 1, 6, 6))


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """The model imported by each route (once for the tests that use it)."""
    m, x = model(), inputs()
    return {route: imported(m, x, route, tmp_path_factory.mktemp(route))
            for route in ("torch", "onnx")}


@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_both_routes_equal_pytorchs_jacobian_in_both_modes(route, nets):
    m, x, net = model(), inputs(), nets[route]
    prelus = [layer for layer in net.layers if isinstance(layer, fd.PReLU)]
    assert [p.num_parameters for p in prelus] == [4, 1, 5]
    np.testing.assert_allclose(net(x), m(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-14)
    J = torch_jacobian(m, x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=1e-10, atol=1e-13,
                                   err_msg=mode)


def test_jvp_and_vjp_equal_torch_func_on_their_own():
    prelu = fd.PReLU(3)
    prelu.weight = np.array([0.1, -0.4, 0.7])
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    dx = np.random.default_rng(3).standard_normal((2, 4, 3, 4, 5))
    y, cache = prelu.forward(x)
    w = torch.from_numpy(prelu.weight)
    for n in range(2):
        f = lambda v: torch.nn.functional.prelu(v, w)                          # noqa: E731
        xt = torch.from_numpy(x[n:n + 1])
        for d in range(4):
            _, jv = torch.func.jvp(f, (xt,), (torch.from_numpy(dx[n:n + 1, d]),))
            np.testing.assert_allclose(prelu.jvp(cache, dx)[n, d], jv[0].numpy(), rtol=1e-14)
            _, pull = torch.func.vjp(f, xt)
            np.testing.assert_allclose(prelu.vjp(cache, dx)[n, d],
                                       pull(torch.from_numpy(dx[n:n + 1, d]))[0][0].numpy(),
                                       rtol=1e-14)
    # a tangent shared by the examples (batch 1) broadcasts
    np.testing.assert_allclose(prelu.jvp(cache, dx[:1]), prelu.jvp(cache, np.repeat(dx[:1], 2, 0)))


def test_the_kink_takes_pytorchs_slope_and_weight_gradient():
    x = torch.tensor([[0.0, -2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    m = nn.PReLU(1, init=0.3).double()
    m(x).sum().backward()
    prelu = fd.PReLU(1, init=0.3)
    prelu.weight = prelu.weight.astype(np.float64)
    _, cache = prelu.forward(x.detach().numpy())
    gx = prelu.vjp(cache, np.ones((1, 1, 3)))[:, 0]
    np.testing.assert_array_equal(gx, x.grad.numpy())                 # slope a at x = 0
    np.testing.assert_array_equal(prelu.param_vjp(cache, np.ones((1, 3)))["weight"],
                                  m.weight.grad.numpy())


@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_the_jacobian_penalty_gradients_equal_pytorch_double_backward(route, nets):
    m, x, net = model(), inputs(), nets[route]
    value, grads = jacobian_penalty(net, x, method="exact")
    assert value == pytest.approx(torch_exact_penalty(m, x), rel=1e-10)
    mods = [m.conv1, m.act1, m.conv2, m.act2, m.head, m.act3]
    layers = [(layer, g) for layer, g in zip(net.layers, grads) if layer.params]
    assert len(layers) == len(mods)
    for (layer, g), mod in zip(layers, mods):
        for name, p in mod.named_parameters():
            np.testing.assert_allclose(g[name].reshape(p.shape), p.grad.numpy(), rtol=1e-9,
                                       atol=1e-13, err_msg=f"{layer!r} {name}")
    assert np.abs(grads[1]["weight"]).max() > 1e-5          # the slopes get a real gradient


def test_trains_and_saves(nets, tmp_path):
    net = nets["torch"]
    fd.save(net, tmp_path / "sr.npz")
    back = fd.load(tmp_path / "sr.npz")
    x = inputs(2, seed=4)
    np.testing.assert_array_equal(back.jacobian(x), net.jacobian(x))
    _, caches = net.forward_cached(x)
    _, grads = net.backward(caches, np.ones((2, 5)))
    assert [g["weight"].shape for layer, g in zip(net.layers, grads)
            if isinstance(layer, fd.PReLU)] == [(4,), (1,), (5,)]


def test_refuses_slopes_that_do_not_fit_the_channels():
    with pytest.raises(ValueError, match=r"PReLU\(num_parameters=4.*\(N, 4, \.\.\.\).*"
                                         r"got \(2, 3, 5, 5\)"):
        fd.PReLU(4)(np.zeros((2, 3, 5, 5)))
    with pytest.raises(ValueError, match="num_parameters must be a positive int"):
        fd.PReLU(0)
    with pytest.raises(TypeError, match="init must be a finite real number"):
        fd.PReLU(2, init="a")


def test_onnx_slopes_along_another_axis_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    slope = helper.make_tensor("slope", TensorProto.DOUBLE, [5], [0.1] * 5)
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3, 4, 5])], [slope])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ValueError, match=r"PRelu.*slope of shape \(5,\).*one per channel"):
        fd.from_onnx(path)


def test_the_windowed_forward_mode_goes_through_it():
    net = fd.Sequential([fd.Conv2d(1, 3, 3, seed=1), fd.PReLU(3), fd.MaxPool2d(2),
                         fd.Flatten(), fd.Linear(3 * 4 * 4, 4, seed=2)])
    net.layers[1].weight = np.array([0.2, -0.3, 0.5])
    steps = net.plan((1, 10, 10)).steps
    assert all(step.windowed for step in steps if step.nodes and max(step.nodes) <= 2)
    assert {0, 1, 2} <= {k for step in steps if step.windowed for k in step.nodes}
    x = np.random.default_rng(5).standard_normal((2, 1, 10, 10))
    np.testing.assert_allclose(net.jacobian(x), net.jacobian(x, windowed=False), rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(net.jacobian(x), net.jacobian(x, mode="reverse"), rtol=1e-12,
                               atol=1e-15)
