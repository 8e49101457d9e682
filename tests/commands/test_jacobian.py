"""``fwdderiv jacobian`` on the user's own model and inputs: each kind of model file, the
finite-difference verdict (kinks explained, a planted error failing), the JSON report
against numbers computed here, and bad inputs as one-line errors."""
import json

import numpy as np
import pytest
import torch

import fwdderiv as fd
from fwdderiv.cli import main
from fwdderiv.commands.check import DISAGREE
from fwdderiv.numeric import jacobian_fd

TORCH_MODEL = """\
import torch
def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(8, 3))
"""


def small_net():
    return fd.Sequential([fd.Conv2d(1, 2, 3, seed=0), fd.Tanh(), fd.MaxPool2d(2), fd.Flatten(),
                          fd.Linear(8, 3, seed=1), fd.Softmax()])


def run(tmp_path, capsys, model, x, *extra):
    np.save(tmp_path / "x.npy", x)
    code = main(["jacobian", str(model), "--inputs", str(tmp_path / "x.npy"),
                 "--json", str(tmp_path / "r.json"), *extra])
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "r.json").read_text()) if code in (0, DISAGREE) else None
    return code, captured, report


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((3, 1, 6, 6))


def test_npz_report_holds_the_numbers(tmp_path, capsys, x):
    net = small_net()
    fd.save(net, tmp_path / "net.npz")
    code, out, r = run(tmp_path, capsys, tmp_path / "net.npz", x, "--fd-examples", "3")
    assert code == 0 and "PASS" in out.out
    J, Jr = net.jacobian(x), net.jacobian(x, mode="reverse")
    np.testing.assert_allclose(r["output"], net(x), rtol=1e-13)
    assert r["inputs_shape"] == [3, 1, 6, 6] and r["jacobian_shape"] == list(J.shape)
    assert r["fwd_rev"]["max_abs"] == pytest.approx(np.abs(J - Jr).max(), rel=1e-6, abs=1e-18)
    f = r["finite_differences"]
    err = np.abs(jacobian_fd(net, x) - J)
    assert f["max_abs"] == pytest.approx(err.max(), rel=1e-9)
    assert f["examples"] == 3 and f["unexplained"] == 0 and r["ok"] and r["verdict"] == "pass"
    top = r["top"][0]                       # example 0, output 0: the largest |dF_0/dx|
    assert top["values"][0] == pytest.approx(J[0, 0][tuple(top["inputs"][0])], rel=1e-12)
    assert abs(top["values"][0]) == pytest.approx(np.abs(J[0, 0]).max(), rel=1e-12)


def test_onnx_model(tmp_path, capsys, x):
    ns = {}
    exec(TORCH_MODEL, ns)
    module = ns["make"]().eval()
    torch.onnx.export(module, (torch.zeros(2, 1, 6, 6),), str(tmp_path / "m.onnx"),
                      input_names=["x"], dynamic_axes={"x": {0: "N"}}, opset_version=17,
                      dynamo=False)
    code, out, r = run(tmp_path, capsys, tmp_path / "m.onnx", x, "--fd-examples", "2")
    assert code == 0 and r["kind"] == "onnx" and r["verdict"] == "pass"
    with torch.no_grad():
        expect = module.double()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(r["output"], expect, rtol=1e-10, atol=1e-12)


def frozen_onnx(path):
    """A file whose rows fold into axis 0 and flatten back to a fixed batch of 1: right
    one example at a time, a different shape at batch 2."""
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "rows"], ["r"]),
         helper.make_node("Tanh", ["r"], ["t"]),
         helper.make_node("Reshape", ["t", "flat"], ["y"])], "frozen",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
        [numpy_helper.from_array(np.array([-1, 2]), "rows"),
         numpy_helper.from_array(np.array([1, -1]), "flat")])
    import onnx
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_per_example_reads_an_onnx_file_one_example_at_a_time(tmp_path, capsys):
    path = frozen_onnx(tmp_path / "frozen.onnx")
    x = np.random.default_rng(2).standard_normal((3, 4))
    code, captured, _ = run(tmp_path, capsys, path, x)
    assert code == 2 and "--per-example" in captured.err
    code, _, r = run(tmp_path, capsys, path, x, "--per-example")
    assert code == 0 and r["verdict"] == "pass"
    np.testing.assert_allclose(r["output"], np.tanh(x), rtol=1e-14)
    fd.save(small_net(), tmp_path / "net.npz")
    code, captured, _ = run(tmp_path, capsys, tmp_path / "net.npz", np.zeros((2, 1, 6, 6)),
                            "--no-per-example")
    assert code == 2 and "--no-per-example applies to .onnx models" in captured.err


def test_torch_factory(tmp_path, capsys, x):
    (tmp_path / "model.py").write_text(TORCH_MODEL)
    code, out, r = run(tmp_path, capsys, f"{tmp_path / 'model.py'}:make", x)
    assert code == 0 and r["kind"] == "torch" and r["finite_differences"]["unexplained"] == 0
    ns = {}
    exec(TORCH_MODEL, ns)
    with torch.no_grad():
        expect = ns["make"]().double()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(r["output"], expect, rtol=1e-10, atol=1e-12)


def kinked_net():
    """Unit 0 of the hidden layer sits exactly on its ReLU kink at X_KINK."""
    lin1, lin2 = fd.Linear(3, 4), fd.Linear(4, 2, seed=1)
    lin1.weight = np.array([[1, 2, -1], [2, 0, 1], [-1, 1, 1], [1, 1, 1]]) / 4.0
    lin1.bias = np.array([-(lin1.weight[0] @ X_KINK[0]), 3.0, 3.0, 3.0])
    return fd.Sequential([lin1, fd.ReLU(), lin2])


X_KINK = np.array([[1.0, 0.5, -1.5]])


def test_input_on_a_relu_kink_is_explained_not_failed(tmp_path, capsys):
    net = kinked_net()
    fd.save(net, tmp_path / "net.npz")
    assert np.abs(jacobian_fd(net, X_KINK) - net.jacobian(X_KINK)).max() > 1e-2
    code, out, r = run(tmp_path, capsys, tmp_path / "net.npz", X_KINK)
    f = r["finite_differences"]
    assert code == 0 and f["kink_explained"] > 0 and f["unexplained"] == 0
    assert r["kinks"] and r["kinks"][0]["layer"] == "ReLU()" and "PASS" in out.out


def test_a_wrong_derivative_fails(tmp_path, capsys, monkeypatch, x):
    net = small_net()
    fd.save(net, tmp_path / "net.npz")
    right = fd.Tanh.value_and_slope
    monkeypatch.setattr(fd.Tanh, "value_and_slope",
                        lambda self, v: (lambda y, s: (y, 1.01 * s))(*right(self, v)))
    code, out, r = run(tmp_path, capsys, tmp_path / "net.npz", x)
    assert code == DISAGREE and "FAIL" in out.out
    assert not r["ok"] and r["verdict"] == "fail" and r["finite_differences"]["unexplained"] > 0


@pytest.mark.parametrize("case, expect", [
    ("shape", ["--inputs", "(2, 1, 5, 5)"]),
    ("dtype", ["--inputs", "int64", "float64"]),
    ("missing inputs", ["--inputs", "no such file"]),
    ("missing model", ["MODEL", "no such file"]),
    ("unknown kind", ["unknown kind of model", ".onnx"]),
    ("no factory", ["defines no function", "nothere"]),
])
def test_bad_inputs_are_one_line_errors(case, expect, tmp_path, capsys):
    net = small_net()
    fd.save(net, tmp_path / "net.npz")
    (tmp_path / "model.py").write_text(TORCH_MODEL)
    x = np.zeros((2, 1, 6, 6))
    model = {"missing model": tmp_path / "nope.npz", "unknown kind": tmp_path / "net.h5",
             "no factory": f"{tmp_path / 'model.py'}:nothere"}.get(case, tmp_path / "net.npz")
    x = {"shape": np.zeros((2, 1, 5, 5)), "dtype": np.zeros((2, 1, 6, 6), np.int64)}.get(case, x)
    np.save(tmp_path / "x.npy", x)
    inputs = tmp_path / ("absent.npy" if case == "missing inputs" else "x.npy")
    code = main(["jacobian", str(model), "--inputs", str(inputs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("fwdderiv jacobian: error: ")
    for word in expect:
        assert word in err[0], err[0]


def test_attack_and_reproduce_take_model_files(tmp_path, capsys):
    """The other commands load the same kinds of model through the same loader."""
    from fwdderiv.datasets import load_dataset
    ds = load_dataset("digits")
    net = fd.Sequential([fd.Flatten(), fd.Linear(64, 10, seed=0), fd.Softmax()])
    fd.training.fit(net, ds.x_train, ds.y_train, epochs=2, progress=False)
    fd.save(net, tmp_path / "net.npz")
    clean = float((net(ds.x_test[:20]).argmax(1) == ds.y_test[:20]).mean())
    assert main(["attack", "--model", str(tmp_path / "net.npz"), "--batch", "20", "--eps",
                 "0,0.1", "--pgd-steps", "1", "--output", str(tmp_path / "atk")]) == 0
    record = json.loads((tmp_path / "atk" / "accuracy_vs_eps.json").read_text())
    assert record["clean_accuracy"] == clean
    assert main(["reproduce", "--model", str(tmp_path / "net.npz"), "--samples", "1",
                 "--no-figures", "--output", str(tmp_path / "rep")]) == 0
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    accuracy = float((net(ds.x_test).argmax(1) == ds.y_test).mean())
    assert results["config"]["model"] == str(tmp_path / "net.npz")
    assert results["test_accuracy"] == pytest.approx(accuracy)
