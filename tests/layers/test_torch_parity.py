"""PyTorch's layers, built here with PyTorch's arguments and the same weights: the output
and the float64 Jacobian (forward and reverse mode) agree with PyTorch's to 1e-10 relative
(``torch.func.vmap(torch.func.jacrev(f))``), and kinks take PyTorch's autograd values."""
import numpy as np
import pytest
import torch

import fwdderiv as fd

tnn = torch.nn
RTOL = 1e-10


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def copy_params(layer, module):
    """The fwdderiv layer's parameters and buffers into the torch module (float64)."""
    with torch.no_grad():
        for name, value in {**layer.params, **layer.buffers}.items():
            if value is not None:
                getattr(module, name).copy_(torch.as_tensor(np.asarray(value, np.float64)))


def torch_jacobian(module, x):
    def f(xi):
        return module(xi[None])[0]
    return torch.func.vmap(torch.func.jacrev(f))(torch.as_tensor(x)).detach().numpy()


def assert_parity(layers, modules, x):
    """``layers`` (fwdderiv) and ``modules`` (torch) in a chain agree on ``x``."""
    net = fd.Sequential(list(layers))
    module = tnn.Sequential(*modules).double().eval()
    for layer, m in zip(layers, modules):
        copy_params(layer, m)
    with torch.no_grad():
        y_ref = module(torch.as_tensor(x)).numpy()
    assert rel(net.forward(x), y_ref) <= RTOL
    J_ref = torch_jacobian(module, x)
    for mode in ("forward", "reverse"):
        assert rel(net.jacobian(x, mode=mode), J_ref) <= RTOL, mode


def rand(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape) * scale


def grid(shape, lo=-4.0, hi=8.0):
    """Values spread over [lo, hi] that avoid every kink listed in KINKS (offset grid)."""
    n = int(np.prod(shape))
    v = np.linspace(lo, hi, n) + 0.0123
    return np.random.default_rng(1).permutation(v).reshape(shape)


# -- activations --------------------------------------------------------------------------
ACTIVATIONS = [
    ("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.2}), ("ELU", {}),
    ("ELU", {"alpha": 0.5}), ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}),
    ("Softplus", {}), ("Softplus", {"beta": 2.0, "threshold": 3.0}), ("Hardtanh", {}),
    ("Hardtanh", {"min_val": -2.0, "max_val": 0.5}), ("ReLU6", {}), ("Mish", {}),
    ("Hardswish", {}), ("Identity", {}), ("ReLU", {}), ("Sigmoid", {}), ("Tanh", {}),
]


@pytest.mark.parametrize("name, kwargs", ACTIVATIONS,
                         ids=[f"{n}-{k}" if k else n for n, k in ACTIVATIONS])
def test_activation_matches_torch(name, kwargs):
    x = grid((3, 2, 4, 5))
    assert_parity([getattr(fd, name)(**kwargs)], [getattr(tnn, name)(**kwargs)], x)


# the points where PyTorch's autograd picks a one-sided derivative, and NaN
KINKS = [
    ("LeakyReLU", {"negative_slope": 0.1}, [0.0]), ("ELU", {"alpha": 2.0}, [0.0]),
    ("Hardtanh", {}, [-1.0, 1.0]), ("Hardtanh", {"min_val": -2.0, "max_val": 0.5}, [-2.0, 0.5]),
    ("ReLU6", {}, [0.0, 6.0]), ("Hardswish", {}, [-3.0, 3.0]), ("ReLU", {}, [0.0]),
    ("Softplus", {"beta": 2.0, "threshold": 20.0}, [10.0, np.nextafter(10.0, 11.0)]),
]


@pytest.mark.parametrize("name, kwargs, points", KINKS, ids=[k[0] for k in KINKS])
def test_kink_slopes_are_torch_autograd_values(name, kwargs, points):
    x = np.array([points + [np.nan]])
    layer = getattr(fd, name)(**kwargs)
    y, cache = layer.forward(x)
    slope = layer.jvp(cache, np.ones((1, 1) + x.shape[1:]))[0, 0]
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(tnn, name)(**kwargs)(xt)
    yt.sum().backward()
    np.testing.assert_array_equal(slope, xt.grad.numpy()[0])
    np.testing.assert_array_equal(y, yt.detach().numpy())
    gx = layer.vjp(cache, np.ones((1, 1) + x.shape[1:]))[0, 0]
    np.testing.assert_array_equal(gx, xt.grad.numpy()[0])


def test_activation_kink_census_counts_points_near_kinks():
    layer = fd.Hardtanh(-2.0, 0.5)
    assert layer.kinks(np.array([[-2.0, 0.5 + 1e-9, 0.0, 3.0]]), 1e-6) == 2


# -- softmax, flatten, dropout ------------------------------------------------------------
@pytest.mark.parametrize("cls", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("dim, shape", [(1, (3, 4)), (-1, (3, 4)), (1, (3, 2, 4)),
                                        (2, (3, 2, 4)), (-2, (2, 3, 2, 2)), (3, (2, 2, 3, 2))])
def test_softmax_over_any_axis_matches_torch(cls, dim, shape):
    assert_parity([getattr(fd, cls)(dim=dim)], [getattr(tnn, cls)(dim=dim)], rand(shape))


@pytest.mark.parametrize("cls", ["Softmax", "LogSoftmax"])
def test_softmax_over_an_empty_axis_is_empty_as_in_torch(cls):
    x = np.zeros((2, 0, 3))
    y = getattr(fd, cls)(dim=1)(x)
    assert y.shape == getattr(tnn, cls)(dim=1)(torch.as_tensor(x)).shape == (2, 0, 3)
    assert fd.Sequential([getattr(fd, cls)(dim=1)]).jacobian(x).shape == (2, 0, 3, 0, 3)


def test_softmax_default_is_the_last_axis_and_old_configs_load():
    assert fd.Softmax().dim == -1 and fd.Softmax(dim=None).dim == -1
    x = rand((2, 3, 4))
    np.testing.assert_allclose(fd.Softmax()(x), torch.softmax(torch.as_tensor(x), -1).numpy(),
                               rtol=1e-12)
    assert fd.layers.LAYER_TYPES["Softmax"](**{}).dim == -1


@pytest.mark.parametrize("start, end, shape", [(1, -1, (2, 3, 4)), (2, 3, (3, 2, 4)),
                                               (1, 2, (2, 3, 4)), (-2, -1, (2, 3, 4)),
                                               (2, -1, (2, 3, 4))])
def test_flatten_matches_torch(start, end, shape):
    assert_parity([fd.Flatten(start, end), fd.Tanh()],
                  [tnn.Flatten(start, end), tnn.Tanh()], rand((2,) + shape))


@pytest.mark.parametrize("layer, module", [
    (fd.Dropout(1.0), tnn.Dropout(1.0)), (fd.Dropout(0.0), tnn.Dropout(0.0)),
    (fd.Dropout2d(0.3), tnn.Dropout2d(0.3)), (fd.Identity(54, unused="x"), tnn.Identity(54))],
    ids=["Dropout-1", "Dropout-0", "Dropout2d", "Identity-args"])
def test_inference_identities_match_torch(layer, module):
    assert_parity([layer, fd.Tanh()], [module, tnn.Tanh()], rand((2, 3, 4, 4)))


@pytest.mark.parametrize("make, match", [
    (lambda: fd.Softmax(dim=0), "Softmax: dim=0"),
    (lambda: fd.LogSoftmax(dim=1.5), "LogSoftmax: dim must be an int"),
    (lambda: fd.Flatten(0), "Flatten: start_dim=0"),
    (lambda: fd.Dropout(1.5), "Dropout: p must be"),
    (lambda: fd.GELU(approximate="erf"), "GELU: approximate must be 'none' or 'tanh'"),
    (lambda: fd.Hardtanh(1.0, -1.0), "Hardtanh: max_val must be greater"),
    (lambda: fd.Softplus(beta=0), "Softplus: beta must be non-zero"),
])
def test_unsupported_arguments_name_the_layer(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_softmax_dim_outside_the_input_names_the_layer():
    with pytest.raises(ValueError, match=r"Softmax\(dim=3\) expected input"):
        fd.Softmax(dim=3)(rand((2, 4)))


# -- every layer of the spec table saves and loads -----------------------------------------
from .specs import SPECS  # noqa: E402


@pytest.mark.parametrize("row", SPECS, ids=[r[0] for r in SPECS])
def test_every_spec_layer_round_trips_through_save_and_load(row, tmp_path):
    _, factory, kind, maker = row
    shape = (4, 6, 6) if kind == "image" else (6,)
    rng = np.random.default_rng(3)
    layer = factory(rng, *shape)
    x = maker(rng, (2,) + shape)
    net = fd.Sequential([layer])
    fd.save(net, tmp_path / "m.npz")
    back = fd.load(tmp_path / "m.npz")
    assert type(back[0]) is type(layer) and back[0].get_config() == layer.get_config()
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


# -- convolution padding, padding layers ---------------------------------------------------
CONVS = [
    dict(kernel_size=3, padding="same"), dict(kernel_size=(2, 4), padding="same", dilation=(2, 1)),
    dict(kernel_size=3, padding="valid"), dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=(3, 2), padding=(2, 1), padding_mode="replicate", stride=2),
    dict(kernel_size=3, padding=(1, 2), padding_mode="circular", groups=2),
    dict(kernel_size=2, padding="same", padding_mode="reflect", bias=False),
    dict(kernel_size=3, padding=(1, 0), stride=(2, 1), dilation=2),
]


@pytest.mark.parametrize("kwargs", CONVS, ids=[str(i) for i in range(len(CONVS))])
def test_conv_padding_options_match_torch(kwargs):
    layer = fd.Conv2d(2, 4, seed=3, **kwargs)
    module = tnn.Conv2d(2, 4, **kwargs)
    assert_parity([layer, fd.Tanh()], [module, tnn.Tanh()], rand((2, 2, 6, 7)))
    assert fd.Conv2d(**layer.get_config()).get_config() == layer.get_config()


def test_conv_same_with_stride_is_refused_as_in_torch():
    with pytest.raises(ValueError, match="Conv2d: padding='same' is not supported for strided"):
        fd.Conv2d(1, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="Conv2d: padding_mode must be one of"):
        fd.Conv2d(1, 2, 3, padding_mode="mirror")


PADS = [
    ("ZeroPad2d", (1,), {}), ("ZeroPad2d", ((2, 0, 1, 3),), {}), ("ZeroPad2d", ((-1, 2, 0, -2),), {}),
    ("ConstantPad2d", ((1, 2, 0, 1), 3.5), {}), ("ReflectionPad2d", (2,), {}),
    ("ReflectionPad2d", ((3, 0, 1, 2),), {}), ("ReplicationPad2d", ((4, 1, 0, 2),), {}),
    ("CircularPad2d", ((1, 2, 3, 0),), {}),
]


@pytest.mark.parametrize("name, args, kwargs", PADS, ids=[f"{p[0]}-{i}" for i, p in enumerate(PADS)])
def test_padding_layers_match_torch(name, args, kwargs):
    assert_parity([getattr(fd, name)(*args), fd.Sigmoid()],
                  [getattr(tnn, name)(*args), tnn.Sigmoid()], rand((2, 3, 4, 5)))


def test_pad2d_is_zero_pad2d_for_saved_models():
    x = rand((2, 1, 3, 3))
    np.testing.assert_array_equal(fd.Pad2d((1, 0, 2, 1))(x), fd.ZeroPad2d((1, 0, 2, 1))(x))
    with pytest.raises(ValueError, match=r"ReflectionPad2d\(padding=\[3, 3, 3, 3\]\) expected"):
        fd.ReflectionPad2d(3)(x)


# -- pooling options, adaptive pooling -------------------------------------------------------
def distinct(shape, seed=0):
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) / n - 0.5) * 4


MAXPOOLS = [
    dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=2, dilation=2),
    dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(2, 2), padding=(1, 0), ceil_mode=True),
    dict(kernel_size=2),
]


@pytest.mark.parametrize("kwargs", MAXPOOLS, ids=[str(i) for i in range(len(MAXPOOLS))])
def test_maxpool_options_match_torch(kwargs):
    # conv -> relu -> max-pool: the fused reverse path (scatter through the pool) runs too
    conv = fd.Conv2d(1, 2, 2, seed=1)
    assert_parity([conv, fd.ReLU(), fd.MaxPool2d(**kwargs)],
                  [tnn.Conv2d(1, 2, 2), tnn.ReLU(), tnn.MaxPool2d(**kwargs)],
                  distinct((2, 1, 8, 9)))


AVGPOOLS = [
    dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=3, stride=2, padding=1,
                                                        count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), padding=(1, 1), divisor_override=5),
    dict(kernel_size=2, stride=1, padding=1),
]


@pytest.mark.parametrize("kwargs", AVGPOOLS, ids=[str(i) for i in range(len(AVGPOOLS))])
def test_avgpool_options_match_torch(kwargs):
    assert_parity([fd.AvgPool2d(**kwargs), fd.Tanh()], [tnn.AvgPool2d(**kwargs), tnn.Tanh()],
                  rand((2, 2, 7, 8)))


@pytest.mark.parametrize("cls", ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d"])
@pytest.mark.parametrize("size", [1, 3, (2, 5), (None, 3), (7, 4)])
def test_adaptive_pooling_matches_torch(cls, size):
    layers = [fd.Conv2d(1, 2, 2, seed=2), getattr(fd, cls)(size), fd.Tanh()]
    modules = [tnn.Conv2d(1, 2, 2), getattr(tnn, cls)(size), tnn.Tanh()]
    assert_parity(layers, modules, distinct((2, 1, 6, 8)))


def test_pool_options_refused_or_checked_with_the_layer_name():
    with pytest.raises(ValueError, match="MaxPool2d: return_indices=True is not supported"):
        fd.MaxPool2d(2, return_indices=True)
    with pytest.raises(ValueError, match="AdaptiveMaxPool2d: return_indices=True"):
        fd.AdaptiveMaxPool2d(2, return_indices=True)
    with pytest.raises(ValueError, match="AvgPool2d: divisor_override"):
        fd.AvgPool2d(2, divisor_override=0)
    with pytest.raises(ValueError, match="MaxPool2d: padding"):
        fd.MaxPool2d(2, padding=2)


def test_pool_tie_goes_to_the_first_maximum_as_in_torch():
    x = np.zeros((1, 1, 3, 4))
    for layer, module in ((fd.MaxPool2d(2, ceil_mode=True, dilation=1), tnn.MaxPool2d(2, ceil_mode=True)),
                          (fd.AdaptiveMaxPool2d((2, 3)), tnn.AdaptiveMaxPool2d((2, 3)))):
        J = fd.Sequential([layer]).jacobian(x, mode="reverse")
        np.testing.assert_array_equal(J, torch_jacobian(module.double(), x))


# -- normalisation ---------------------------------------------------------------------------
def randomise(layer, seed=0):
    """Random parameters and running statistics (positive variances)."""
    rng = np.random.default_rng(seed)
    for name in layer.param_names + layer.buffer_names:
        v = getattr(layer, name)
        setattr(layer, name, (rng.uniform(0.5, 2, v.shape) if name == "running_var"
                              else rng.normal(size=v.shape)))      # float64: exact grads
    return layer


NORMS = [
    ("BatchNorm1d", (4,), {}, (4,)), ("BatchNorm1d", (3,), {"eps": 1e-3}, (3, 5)),
    ("LayerNorm", (5,), {}, (3, 5)), ("LayerNorm", ((3, 5),), {"eps": 1e-3}, (3, 5)),
    ("LayerNorm", ((2, 3),), {"bias": False}, (4, 2, 3)),
    ("LayerNorm", (4,), {"elementwise_affine": False}, (2, 4)),
    ("GroupNorm", (2, 4), {}, (4, 3, 3)), ("GroupNorm", (3, 3), {"eps": 1e-3}, (3, 5)),
    ("GroupNorm", (1, 2), {"affine": False}, (2, 2, 3)),
]


@pytest.mark.parametrize("name, args, kwargs, shape", NORMS,
                         ids=[f"{n[0]}-{i}" for i, n in enumerate(NORMS)])
def test_normalisation_matches_torch_in_eval_mode(name, args, kwargs, shape):
    layer = randomise(getattr(fd, name)(*args, **kwargs))
    assert_parity([layer, fd.Tanh()], [getattr(tnn, name)(*args, **kwargs), tnn.Tanh()],
                  rand((3,) + shape))


@pytest.mark.parametrize("name, args, kwargs, shape", NORMS[:1] + NORMS[2:3] + NORMS[6:7],
                         ids=["BatchNorm1d", "LayerNorm", "GroupNorm"])
def test_normalisation_parameter_gradients_match_torch(name, args, kwargs, shape):
    layer = randomise(getattr(fd, name)(*args, **kwargs), seed=4)
    module = getattr(tnn, name)(*args, **kwargs).double().eval()
    copy_params(layer, module)
    x, gy = rand((3,) + shape, 1), rand((3,) + shape, 2)
    y, cache = layer.forward(x)
    (module(torch.as_tensor(x)) * torch.as_tensor(gy)).sum().backward()
    grads = layer.param_vjp(cache, gy)
    for n in layer.param_names:
        assert rel(grads[n], getattr(module, n).grad.numpy()) <= RTOL


@pytest.mark.parametrize("layer, module, shape", [
    (fd.Conv2d(2, 3, 3, padding="same", padding_mode="reflect"),
     tnn.Conv2d(2, 3, 3, padding="same", padding_mode="reflect"), (0, 2, 5, 5)),
    (fd.MaxPool2d(2, ceil_mode=True), tnn.MaxPool2d(2, ceil_mode=True), (0, 2, 5, 5)),
    (fd.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
     tnn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (0, 2, 5, 5)),
    (fd.AdaptiveMaxPool2d(2), tnn.AdaptiveMaxPool2d(2), (0, 2, 5, 5)),
    (fd.AdaptiveAvgPool2d(2), tnn.AdaptiveAvgPool2d(2), (2, 0, 5, 5)),
    (fd.ZeroPad2d(1), tnn.ZeroPad2d(1), (2, 0, 3, 3)),
    (fd.GroupNorm(1, 2), tnn.GroupNorm(1, 2), (0, 2, 3)),
    (fd.LayerNorm(3), tnn.LayerNorm(3), (0, 3)), (fd.GELU(), tnn.GELU(), (0, 3)),
    (fd.Softmax(dim=-1), tnn.Softmax(dim=-1), (2, 3, 0)), (fd.Flatten(), tnn.Flatten(), (0, 2, 3)),
], ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v))
def test_zero_size_axes_give_torch_shapes(layer, module, shape):
    x = np.zeros(shape)
    net = fd.Sequential([layer])
    out = tuple(module.double()(torch.as_tensor(x)).shape)
    assert net.forward(x).shape == out
    for mode in ("forward", "reverse"):
        assert net.jacobian(x, mode=mode).shape == out + shape[1:]
