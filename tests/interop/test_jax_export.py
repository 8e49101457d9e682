"""fwdderiv.to_jax: JAX's own Jacobians of the translated network equal fwdderiv's in
float64; layers without a JAX rule are named; ``fwdderiv check`` reports JAX beside
PyTorch, or JAX as not comparable."""
import json

import jax
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.cli import main
from fwdderiv.interop.jax_export import ToJaxError, x64


def graph_net():
    """Conv, max-pool, a residual Add, a channel concat, BatchNorm, softmax."""
    bn = fd.BatchNorm2d(4)
    bn.running_mean, bn.running_var = np.linspace(-0.2, 0.3, 4), np.linspace(0.5, 2.0, 4)
    return fd.Graph([
        ("conv1", fd.Conv2d(1, 2, 3, padding=1, seed=0), "input"),
        ("act1", fd.Tanh(), "conv1"),
        ("conv2", fd.Conv2d(2, 2, 3, padding=1, seed=1), "act1"),
        ("add", fd.Add(), ["conv2", "act1"]),
        ("cat", fd.Concat(dim=1), ["add", "conv1"]),
        ("bn", bn, "cat"),
        ("relu", fd.ReLU(), "bn"),
        ("pool", fd.MaxPool2d(2), "relu"),
        ("avg", fd.AvgPool2d(2, stride=1), "pool"),
        ("flat", fd.Flatten(), "avg"),
        ("fc", fd.Linear(16, 5, seed=2), "flat"),
        ("out", fd.Softmax(), "fc"),
    ])


def jax_jacobian(net, x):
    with x64():
        f = fd.to_jax(net)
        return np.asarray(jax.jit(jax.vmap(jax.jacfwd(lambda v: f(v[None])[0])))(x))


def test_jacobians_equal_fwdderivs_in_float64():
    net = graph_net()
    x = np.random.default_rng(0).standard_normal((3, 1, 6, 6))
    J = net.jacobian(x)
    with x64():
        y = np.asarray(fd.to_jax(net)(jax.numpy.asarray(x)))
    np.testing.assert_allclose(y, net(x), rtol=1e-12)
    Jj = jax_jacobian(net, x)
    assert Jj.dtype == np.float64
    assert np.abs(Jj - J).max() <= 1e-10 * np.abs(J).max()


def test_untranslatable_layer_is_named():
    net = fd.Sequential([fd.ReflectionPad2d(1), fd.Flatten()])
    with pytest.raises(ToJaxError, match="ReflectionPad2d"):
        fd.to_jax(net)


def test_check_compares_with_jax(tmp_path, capsys):
    net = fd.Sequential([fd.Conv2d(1, 2, 3, seed=0), fd.ReLU(), fd.MaxPool2d(2), fd.Flatten(),
                         fd.Linear(8, 3, seed=1), fd.Softmax()])
    x = np.random.default_rng(1).standard_normal((2, 1, 6, 6))
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    code = main(["check", str(tmp_path / "net.npz"), "--inputs", str(tmp_path / "x.npy"),
                 "--json", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["ok"] and "JAX" in capsys.readouterr().out
    jx = report["comparisons"]["JAX"]
    err = np.abs(jax_jacobian(net, x) - net.jacobian(x)).max()
    assert jx["comparable"] and jx["unexplained"] == 0
    assert jx["max_abs"] == pytest.approx(err, rel=1e-6, abs=1e-300)
    assert report["comparisons"]["PyTorch"]["comparable"]


def test_check_reports_jax_not_comparable(tmp_path, capsys):
    net = fd.Sequential([fd.ReflectionPad2d(1), fd.Conv2d(1, 2, 3, seed=0), fd.Tanh(),
                         fd.Flatten()])
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", np.random.default_rng(2).standard_normal((1, 1, 4, 4)))
    code = main(["check", str(tmp_path / "net.npz"), "--inputs", str(tmp_path / "x.npy"),
                 "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and "JAX: not comparable: to_jax: cannot translate" in out
    assert report["comparisons"]["JAX"] == {
        "comparable": False, "checked": report["comparisons"]["JAX"]["checked"],
        "reason": report["comparisons"]["JAX"]["reason"]}
    assert "ReflectionPad2d" in report["comparisons"]["JAX"]["reason"]
    assert report["comparisons"]["PyTorch"]["ok"]


def test_a_product_of_values_of_different_ranks_broadcasts_as_fwdderivs():
    net = fd.Graph([("a", fd.Tanh(), "input"), ("row", fd.Slice([0], [1], [1]), "input"),
                    ("b", fd.Reshape([5]), "row"), ("m", fd.Mul(), ["a", "b"]),
                    ("out", fd.Flatten(), "m")])
    x = np.random.default_rng(0).normal(size=(3, 4, 5))
    np.testing.assert_allclose(jax_jacobian(net, x), net.jacobian(x), rtol=1e-12, atol=1e-14)
