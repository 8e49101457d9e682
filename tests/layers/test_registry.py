"""Every registered fwdderiv layer has every part of its registry entry, and each part works
on the entry's own example: the schema describes the layer's arrays, both Jacobian modes
equal finite differences, the network saves and loads, exports to PyTorch with the same
outputs, and comes back through from_torch and (where the entry has a rule) from_onnx with
the same Jacobian."""
import numpy as np
import pytest
import torch

import fwdderiv as fd
from fwdderiv import registry
from fwdderiv.numeric import jacobian_fd
from fwdderiv.schema import check_layer

OWN = sorted(name for name, e in registry.ENTRIES.items()
             if e.cls.__module__.startswith("fwdderiv."))


def entry(name):
    return registry.ENTRIES[name]


def build(name, seed=0):
    """The example's layer, with random parameters and buffers (variances positive)."""
    e, rng = entry(name), np.random.default_rng(seed)
    config, arrays = check_layer(name, e.example.config, registry.layer_types())
    layer = e.cls(**config)
    for key, shape in arrays.items():
        value = rng.normal(size=shape)
        if key == "running_var":
            value = rng.uniform(0.5, 2.0, size=shape)
        setattr(layer, key, value)
    return layer


def network(name, seed=0):
    """The layer after ``inputs`` branches of the input (distinct Scale and Tanh, so that
    a joint sees different values), then a Tanh: one input, one output."""
    layer, k = build(name, seed), entry(name).example.inputs
    if k == 1:
        return fd.Sequential([layer, fd.Tanh()])
    nodes = []
    for i in range(k):
        nodes += [(f"s{i}", fd.Scale(0.5 + i), "input"), (f"t{i}", fd.Tanh(), f"s{i}")]
    return fd.Graph(nodes + [("joint", layer, [f"t{i}" for i in range(k)]),
                             ("out", fd.Tanh(), "joint")])


def inputs(name, n=2, seed=1):
    e, rng = entry(name), np.random.default_rng(seed)
    shape = (n,) + tuple(e.example.in_shape)
    if e.example.values == "positive":
        return rng.uniform(0.2, 2.0, size=shape)
    if e.example.values == "distinct":
        return (rng.permutation(int(np.prod(shape))).reshape(shape) / np.prod(shape) - 0.5) * 4
    x = rng.normal(size=shape)
    for p in getattr(build(name), "kink_points", ()) if e.example.inputs == 1 else ():
        x = np.where(np.abs(x - p) < 5e-2, p + 5e-2, x)
    return x


@pytest.mark.parametrize("name", OWN)
def test_every_part_is_given_or_absent_with_a_reason(name):
    e = entry(name)
    for part in registry.PARTS:
        value = getattr(e, part)
        reason = e.absent.get(part, "")
        assert bool(value) != bool(reason), (name, part, value, reason)
        assert not reason or len(reason) > 20, (name, part, reason)


@pytest.mark.parametrize("name", OWN)
def test_the_schema_names_the_arrays_the_layer_holds(name):
    layer = build(name)
    _, arrays = check_layer(name, layer.get_config() if hasattr(layer, "get_config") else {},
                            registry.layer_types())
    held = {k: np.shape(v) for k, v in {**layer.params, **layer.buffers}.items()
            if v is not None}
    assert arrays == held


@pytest.mark.parametrize("name", OWN)
def test_both_jacobian_modes_equal_finite_differences(name):
    net, x = network(name), inputs(name)
    reference = jacobian_fd(lambda v: net(v), x)
    for mode in ("forward", "reverse"):
        J = net.jacobian(x, mode=mode)
        np.testing.assert_allclose(J, reference, rtol=1e-6, atol=1e-7, err_msg=mode)


@pytest.mark.parametrize("name", OWN)
def test_saves_loads_and_exports_to_torch(name, tmp_path):
    net, x = network(name), inputs(name)
    fd.save(net, tmp_path / "net.npz")
    np.testing.assert_array_equal(fd.load(tmp_path / "net.npz")(x), net(x))
    with torch.no_grad():
        y = fd.to_torch(net)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, net(x), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", [n for n in OWN if "torch" in entry(n).example.routes])
def test_comes_back_from_torch_with_the_same_jacobian(name):
    net, x = network(name), inputs(name)
    back = fd.from_torch(fd.to_torch(net), torch.from_numpy(x))
    np.testing.assert_allclose(back.jacobian(x), net.jacobian(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in OWN if entry(n).onnx
                                  and "onnx" in entry(n).example.routes])
def test_comes_back_from_onnx_with_the_same_jacobian(name, tmp_path):
    net, x = network(name), inputs(name)
    path = tmp_path / "net.onnx"
    torch.onnx.export(fd.to_torch(net), (torch.from_numpy(x),), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, opset_version=20, dynamo=False)
    back = fd.from_onnx(path)
    # ONNX attributes are float32 (LeakyRelu's alpha): agreement to float32 rounding
    np.testing.assert_allclose(back.jacobian(x), net.jacobian(x), rtol=1e-7, atol=1e-9)
