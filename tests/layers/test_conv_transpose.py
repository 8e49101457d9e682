"""ConvTranspose2d against torch.nn.ConvTranspose2d (float64): the output, the input and
parameter gradients, the JVP; its jvp_grad against the dense reference and the Jacobian
penalty's weight gradient against finite differences; a DCGAN-like decoder imported with
from_torch against torch.func.jacrev in both Jacobian modes; and the refusals."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fwdderiv as fd
from fwdderiv.core.second_order import jvp_grad_reference
from fwdderiv.regularization import jacobian_penalty
from fwdderiv.schema import SchemaError, check_layer


@pytest.fixture(autouse=True, scope="module")
def torch_on_one_thread():
    """PyTorch's OpenMP threads spin after each call while Numba's kernels want the same
    cores (measured: a small backward took 0.17 s after a kernel, 0.001 s on one thread);
    the tensors here are small."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _configs():
    """stride 1-3, padding 0-2, dilation 1-2, groups 1-2, and the smallest and largest
    output_padding allowed (output_padding >= stride where the dilation allows it); the
    bias on and off in turn."""
    out = []
    for s, p, d, g in itertools.product((1, 2, 3), (0, 1, 2), (1, 2), (1, 2)):
        for q in sorted({0, max(s, d) - 1}):
            out.append(dict(stride=s, padding=p, dilation=d, groups=g, output_padding=q,
                            bias=len(out) % 2 == 0))
    return out


CONFIGS = _configs()


def pair_of_layers(config, in_c=4, out_c=4, kernel=(3, 2), seed=0):
    """The same transposed convolution in fwdderiv and in PyTorch, float64 weights."""
    layer = fd.ConvTranspose2d(in_c, out_c, kernel, seed=seed, **config)
    rng = np.random.default_rng(seed)
    layer.weight = rng.normal(size=layer.weight.shape)
    if layer.bias is not None:
        layer.bias = rng.normal(size=layer.bias.shape)
    module = fd.to_torch(fd.Sequential([layer]))[0].double()
    return layer, module


def inputs(rng, shape, sparse):
    x = rng.normal(size=shape)
    if sparse:                          # an identity-seed-like input: the scatter path
        x *= rng.random(shape) < 0.05
    return x


def config_id(c):
    c = {**dict(stride=1, padding=0, output_padding=0, dilation=1, groups=1, bias=True), **c}
    return ("s{stride}p{padding}q{output_padding}d{dilation}g{groups}"
            + ("b" if c["bias"] else "")).format(**c)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_forward_gradients_and_jvp_equal_pytorch(config):
    layer, module = pair_of_layers(config)
    rng = np.random.default_rng(1)
    for sparse in (False, True):
        x = inputs(rng, (2, 4, 5, 4), sparse)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = module(xt)
        y, cache = layer.forward(x)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        assert layer.output_shape(x.shape[1:]) == y.shape[1:]
        gy = rng.normal(size=y.shape)
        (yt * torch.from_numpy(gy)).sum().backward()
        np.testing.assert_allclose(layer.vjp(cache, gy[:, None])[:, 0], xt.grad.numpy(),
                                   rtol=1e-12, atol=1e-12)
        grads = layer.param_vjp(cache, gy)
        for name, p in module.named_parameters():
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=name)
            p.grad = None
        dx = inputs(rng, (2, 3, 4, 5, 4), sparse)       # three directions
        with torch.no_grad():
            want = F.conv_transpose2d(torch.from_numpy(dx.reshape(6, 4, 5, 4)),
                                      module.weight, None, module.stride, module.padding,
                                      module.output_padding, module.groups, module.dilation)
        want = want.numpy().reshape((2, 3) + y.shape[1:])
        np.testing.assert_allclose(layer.jvp(cache, dx), want, rtol=1e-12, atol=1e-12)


def test_parameter_gradients_through_net_backward_equal_autograd():
    layer, module = pair_of_layers(dict(stride=2, padding=1, output_padding=1, groups=2))
    net = fd.Sequential([layer, fd.Tanh()])
    x = np.random.default_rng(2).normal(size=(3, 4, 4, 5))
    y, caches = net.forward_cached(x)
    gy = np.random.default_rng(3).normal(size=y.shape)
    gx, grads = net.backward(caches, gy)
    xt = torch.from_numpy(x).requires_grad_(True)
    (torch.tanh(module(xt)) * torch.from_numpy(gy)).sum().backward()
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[0][name], p.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_float32_stays_float32():
    layer = fd.ConvTranspose2d(3, 2, 4, stride=2, padding=1)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 5)).astype(np.float32)
    y = layer(x)
    assert y.dtype == np.float32 and y.shape == (2, 2, 10, 10)
    with torch.no_grad():
        want = fd.to_torch(fd.Sequential([layer]))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [dict(stride=2, padding=1, output_padding=1, groups=2),
                                    dict(stride=1, dilation=2, output_padding=1),
                                    dict(stride=3, padding=2, bias=False)],
                         ids=config_id)
def test_jvp_grad_equals_the_dense_reference(config):
    layer, _ = pair_of_layers(config, in_c=2, out_c=4, kernel=3, seed=4)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 2, 3, 3))
    y, cache = layer.forward(x)
    dx = rng.normal(size=(2, 2) + x.shape[1:])
    gdy = rng.normal(size=(2, 2) + y.shape[1:])
    gx, grads = layer.jvp_grad(cache, x, dx, gdy)
    rx, rgrads = jvp_grad_reference(layer, x, dx, gdy)
    assert gx is None and np.abs(rx).max() < 1e-6      # the JVP does not depend on x
    assert set(grads) == set(rgrads) == set(layer.param_names)
    for name in rgrads:
        np.testing.assert_allclose(grads[name], rgrads[name], rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_the_jacobian_penalty_gradient_of_its_weight_equals_finite_differences():
    layer, _ = pair_of_layers(dict(stride=2, padding=1, output_padding=1, groups=2),
                              in_c=2, out_c=2, kernel=3, seed=6)
    layer.weight *= 0.5
    net = fd.Sequential([layer, fd.Tanh(), fd.Flatten(), fd.Linear(2 * 6 * 6, 3, seed=1)])
    net.layers[3].weight = net.layers[3].weight.astype(np.float64)
    x = np.random.default_rng(7).normal(size=(2, 2, 3, 3))
    _, grads = jacobian_penalty(net, x, method="exact")
    picks = [("weight", (0, 0, 0, 0)), ("weight", (1, 0, 2, 1)), ("weight", (0, 0, 1, 2)),
             ("bias", (0,)), ("bias", (1,))]       # the bias moves the Tanh's slopes
    h = 1e-6
    for name, idx in picks:
        p = getattr(layer, name)
        old = p[idx]
        p[idx] = old + h
        up = jacobian_penalty(net, x, method="exact")[0]
        p[idx] = old - h
        down = jacobian_penalty(net, x, method="exact")[0]
        p[idx] = old
        assert grads[0][name][idx] == pytest.approx((up - down) / (2 * h), rel=1e-5,
                                                    abs=1e-8), (name, idx)
    assert np.abs(grads[0]["weight"]).max() > 1e-3


class Decoder(torch.nn.Module):
    """DCGAN's generator, small: Linear -> view -> ConvTranspose2d -> BatchNorm2d -> ReLU
    -> ConvTranspose2d -> tanh."""

    def __init__(self, z=6):
        super().__init__()
        self.fc = torch.nn.Linear(z, 4 * 3 * 3)
        self.up1 = torch.nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(3)
        self.up2 = torch.nn.ConvTranspose2d(3, 1, 4, stride=2, padding=1, bias=False)

    def forward(self, z):
        h = self.fc(z).view(z.size(0), 4, 3, 3)
        return torch.tanh(self.up2(torch.relu(self.bn(self.up1(h)))))


def test_a_dcgan_decoder_imports_with_pytorchs_jacobian():
    torch.manual_seed(0)
    model = Decoder().double().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    z = torch.randn(3, 6, dtype=torch.float64)
    net = fd.from_torch(model, z)
    assert sum(isinstance(layer, fd.ConvTranspose2d) for layer in net.layers) == 2
    want = torch.vmap(torch.func.jacrev(lambda v: model(v[None])[0]))(z).detach().numpy()
    assert want.shape == (3, 1, 12, 12, 6)
    x = z.numpy()
    np.testing.assert_allclose(net(x), model(z).detach().numpy(), rtol=1e-12, atol=1e-13)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), want, rtol=1e-10, atol=1e-12,
                                   err_msg=mode)


def test_functional_conv_transpose2d_imports():
    class Up(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 1, 3, 3, dtype=torch.float64))

        def forward(self, x):
            return F.conv_transpose2d(x, self.w, stride=2, padding=1, output_padding=1,
                                      groups=2, dilation=1)

    torch.manual_seed(1)
    model = Up().eval()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    net = fd.from_torch(model, x)
    assert isinstance(net.layers[0], fd.ConvTranspose2d) and net.layers[0].bias is None
    np.testing.assert_allclose(net(x.numpy()), model(x).detach().numpy(), rtol=1e-12,
                               atol=1e-13)


# -- refusals --------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(stride=2, output_padding=2), "output_padding"),
    (dict(stride=1, dilation=2, output_padding=2), "output_padding"),
    (dict(groups=3), "divisible by groups"),
    (dict(padding_mode="reflect"), "padding_mode"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fd.ConvTranspose2d(6, 4, 3, **kwargs)


@pytest.mark.parametrize("config, match", [
    (dict(stride=2, output_padding=[0, 2]), "output_padding"),
    (dict(groups=4), "divisible"),
])
def test_the_schema_refuses_what_pytorch_refuses(config, match):
    config = dict(in_channels=6, out_channels=4, kernel_size=3, **config)
    with pytest.raises(SchemaError, match=match):
        check_layer("ConvTranspose2d", config, {"ConvTranspose2d": fd.ConvTranspose2d})


def test_an_empty_output_and_a_wrong_input_are_refused_with_the_shape():
    layer = fd.ConvTranspose2d(2, 3, 1, padding=2)
    with pytest.raises(ValueError, match="less padding"):
        layer(np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 2, H, W\)"):
        fd.ConvTranspose2d(2, 3, 3)(np.zeros((1, 3, 4, 4)))


def test_aten_convolution_with_transposed_true_imports_as_conv_transpose2d():
    """torch.export's decompositions record aten.convolution(transposed=True); Conv2d's
    rule hands it to ConvTranspose2d's."""
    torch.manual_seed(3)
    module = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1).double().eval()

    class Raw(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, x):
            return torch.ops.aten.convolution(x, self.inner.weight, self.inner.bias, [2, 2],
                                              [1, 1], [1, 1], True, [0, 0], 1)

    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    net = fd.from_torch(Raw().eval(), x)
    assert [type(layer).__name__ for layer in net.layers] == ["ConvTranspose2d"]
    with torch.no_grad():
        np.testing.assert_allclose(net(x.numpy()), module(x).numpy(), rtol=1e-12, atol=1e-13)
