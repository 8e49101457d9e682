"""fwdderiv check: exit 0 on a correct Jacobian, non-zero naming each planted mistake."""
import json

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.cli import main
from fwdderiv.commands.check import DISAGREE


def dyadic_net(softmax=True):
    rng = np.random.default_rng(0)
    layers = [fd.Conv2d(1, 2, 3), fd.ReLU(), fd.MaxPool2d(2), fd.Flatten(), fd.Linear(8, 3)]
    layers[0].weight = rng.integers(-2, 3, layers[0].weight.shape) / 4.0
    layers[0].bias = np.zeros(2)
    layers[4].weight = rng.integers(-2, 3, layers[4].weight.shape) / 4.0
    return fd.Sequential(layers + ([fd.Softmax()] if softmax else []))


@pytest.fixture
def files(tmp_path):
    net = dyadic_net()
    x = np.random.default_rng(1).integers(-2, 3, (2, 1, 6, 6)) / 2.0  # exact kinks and ties
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    return tmp_path, net, x


def check(tmp_path, J, capsys, *extra):
    np.save(tmp_path / "J.npy", J)
    code = main(["check", str(tmp_path / "net.npz"), "--inputs", str(tmp_path / "x.npy"),
                 "--jacobian", str(tmp_path / "J.npy"), "--json", str(tmp_path / "r.json"),
                 *extra])
    return code, capsys.readouterr().out, json.loads((tmp_path / "r.json").read_text())


def test_correct_jacobian_passes(files, capsys):
    tmp, net, x = files
    code, out, report = check(tmp, net.jacobian(x, mode="reverse"), capsys)
    assert code == 0 and "PASS" in out and report["unexplained"] == 0


def test_one_wrong_entry(files, capsys):
    tmp, net, x = files
    J = net.jacobian(x)
    J[1, 2, 0, 3, 4] += 1.0  # far outside any kink band (max |J| is about 0.1)
    code, out, report = check(tmp, J, capsys)
    assert code == DISAGREE and "one wrong entry" in out
    assert report["unexplained_positions"] == [[1, 2, 0, 3, 4]]


def test_transposed_layout(files, capsys):
    tmp, net, x = files
    J = np.moveaxis(net.jacobian(x), 1, -1)  # (N, *S_in, K)
    code, out, _ = check(tmp, J, capsys)
    assert code == DISAGREE and "transposed layout" in out


def test_float32_presented_as_float64(files, capsys):
    tmp, net, x = files
    J = net.jacobian(x.astype(np.float32)).astype(np.float64)
    assert np.abs(J - net.jacobian(x)).max() > 0  # float32 really rounds here
    code, out, _ = check(tmp, J, capsys)
    assert code == DISAGREE and "float32 rounding" in out


def test_logits_instead_of_probabilities(files, capsys):
    tmp, net, x = files
    code, out, _ = check(tmp, dyadic_net(softmax=False).jacobian(x), capsys)
    assert code == DISAGREE and "logits vs probabilities" in out


def test_kink_convention_is_explained_not_failed(tmp_path, capsys):
    """Another framework with relu'(0) = 1: the entries through that unit differ, and
    are attributed to the kink."""
    lin1, lin2 = fd.Linear(3, 4), fd.Linear(4, 2, seed=1)
    lin1.weight = np.array([[1, 2, -1], [2, 0, 1], [-1, 1, 1], [1, 1, 1]]) / 4.0
    x = np.array([[1.0, 0.5, -1.5]])
    lin1.bias = np.array([-(lin1.weight[0] @ x[0]), 3.0, 3.0, 3.0])  # unit 0 exactly at 0
    net = fd.Sequential([lin1, fd.ReLU(), lin2])
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    other = net.jacobian(x + 1e-9 * lin1.weight[0])  # the right-hand derivative at the kink
    assert np.abs(other - net.jacobian(x)).max() > 1e-3
    code, out, report = check(tmp_path, other, capsys)
    assert code == 0 and report["kink_explained"] > 0 and report["unexplained"] == 0


#: A file.py:factory model for the commands that take PyTorch models.
SMALL_TORCH_MODEL = (
    "import torch\n"
    "def make():\n"
    "    torch.manual_seed(0)\n"
    "    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(),\n"
    "                               torch.nn.Flatten(), torch.nn.Linear(32, 3))\n")


def test_torch_factory_against_pytorch(tmp_path, capsys):
    (tmp_path / "model.py").write_text(SMALL_TORCH_MODEL)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 1, 6, 6)))
    code = main(["check", f"{tmp_path / 'model.py'}:make", "--inputs", str(tmp_path / "x.npy")])
    out = capsys.readouterr().out
    assert code == 0 and "PASS" in out and "PyTorch" in out


def test_honest_float32_jacobian_passes_with_the_float32_tolerance(files, capsys):
    """A float32 Jacobian (the commonest framework output) is held to float32's
    tolerance, not float64's, and its report sets fwdderiv's own float32 beside it."""
    tmp, net, x = files
    J32 = dyadic_net().jacobian((x + 0.01).astype(np.float32))   # off the exact kinks
    np.save(tmp / "x.npy", x + 0.01)
    code, out, report = check(tmp, J32, capsys)
    assert code == 0 and "PASS" in out
    assert report["tolerance"] == 1e-5 and report["dtype"] == "float32"
    assert not report["float32"]["fwdderiv"]["off_reference"]
    assert "fwdderiv's float32" in out


def test_float32_jacobian_off_the_reference_is_named(files, capsys):
    """A framework's float32 Jacobian with a real error (one weight 1% off) is named as
    the side off the float64 reference; fwdderiv's float32 is the one to trust."""
    tmp, net, x = files
    x = x + 0.01
    np.save(tmp / "x.npy", x)
    wrong = dyadic_net()
    wrong.layers[4].weight = wrong.layers[4].weight * 1.01
    code, out, report = check(tmp, wrong.jacobian(x.astype(np.float32)), capsys)
    assert code == DISAGREE
    assert report["float32"]["other"]["off_reference"]
    assert not report["float32"]["fwdderiv"]["off_reference"]
    assert "trust fwdderiv's float32" in out


def test_float32_beyond_a_tighter_tolerance_is_called_rounding(tmp_path, capsys):
    net = fd.Sequential([fd.Conv2d(1, 2, 3), fd.Tanh(), fd.Flatten(), fd.Linear(32, 3)])
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    code, out, _ = check(tmp_path, net.jacobian(x.astype(np.float32)), capsys, "--tol", "1e-12")
    assert code == DISAGREE and "float32 rounding beyond tolerance" in out


def test_peers_in_float32(tmp_path, capsys):
    (tmp_path / "model.py").write_text(SMALL_TORCH_MODEL)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 1, 6, 6)))
    code = main(["check", f"{tmp_path / 'model.py'}:make", "--inputs", str(tmp_path / "x.npy"),
                 "--dtype", "float32", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and "PASS" in out, out
    for peer in ("PyTorch", "JAX"):
        r = report["comparisons"][peer]
        assert r["dtype"] == "float32" and r["tolerance"] == 1e-5
        assert 0 < r["max_rel"] < 1e-5 and not r["float32"]["other"]["off_reference"]


def test_a_unit_within_float32_rounding_of_its_kink_explains_a_float32_jacobian(tmp_path,
                                                                                capsys):
    """A ReLU input 3e-7 above zero: a float32 pass may decide it either way (in a
    Wide-ResNet one such unit moved both PyTorch's and fwdderiv's float32 Jacobians by
    3.5e-2 of max|J|). A float32 Jacobian that decided it the other way is explained."""
    rng = np.random.default_rng(4)
    lin1, lin2 = fd.Linear(5, 6, seed=1), fd.Linear(6, 3, seed=2)
    x = rng.normal(size=(1, 5))
    lin1.bias = lin1.bias.astype(np.float64)
    lin1.bias[2] += 3e-7 - (x @ lin1.weight.T + lin1.bias)[0, 2]       # unit 2 at +3e-7
    net = fd.Sequential([lin1, fd.ReLU(), lin2])
    fd.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    other = net.jacobian(x).copy()
    other[0] -= np.outer(lin2.weight[:, 2], lin1.weight[2])           # unit 2 decided dead
    assert np.abs(other - net.jacobian(x)).max() > 0.01 * np.abs(other).max()
    code, out, report = check(tmp_path, other.astype(np.float32), capsys)
    assert code == 0 and "PASS" in out, out
    assert report["float32"]["units_near_kinks"] == 1 and report["kink_explained"] > 0
    assert "within float32 rounding of a kink" in out
    other[0, 0, 0] += 0.1                      # a real error on top is still named
    code, out, report = check(tmp_path, other.astype(np.float32), capsys)
    assert code == DISAGREE and report["unexplained"] == 1


DLA = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class Root(nn.Module):          # DLA's aggregation node: concatenate, 1x1 conv, BN, ReLU
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, xs):
        return torch.relu(self.bn(self.conv(torch.cat(xs, 1))))


class Tree(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.left, self.right = Block(cin, cout, stride), Block(cout, cout)
        self.root = Root(2 * cout, cout)

    def forward(self, x):
        a = self.left(x)
        return self.root([a, self.right(a)])


class DLA(nn.Module):
    def __init__(self):
        super().__init__()
        self.base = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.tree1, self.tree2 = Tree(8, 8, 1), Tree(8, 16, 2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        out = self.tree2(self.tree1(self.base(x)))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(out, 1).flatten(1))


def make():
    torch.manual_seed(0)
    model = DLA()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(0.5, 1.5)
            m.momentum = None
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(16, 3, 12, 12))
    return model.eval()
'''


def test_dla_float32_jacobians_and_whose_is_off(tmp_path, capsys):
    """A DLA-style network (He-style blocks, concatenating roots) from PyTorch: PyTorch's
    float32 Jacobian passes; one computed in bfloat16 (mixed precision) is named as the
    side off the float64 reference, with fwdderiv's float32 as the one to trust."""
    import torch
    (tmp_path / "dla.py").write_text(DLA)
    import importlib.util
    spec = importlib.util.spec_from_file_location("dla", tmp_path / "dla.py")
    dla = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dla)
    model = dla.make()
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    def jac(m, dtype):
        f = lambda v: m(v[None])[0]  # noqa: E731
        J = torch.func.vmap(torch.func.jacrev(f))(torch.from_numpy(x).to(dtype))
        return J.detach().float().numpy()

    outs = {}
    for name, J in (("float32", jac(model, torch.float32)),
                    ("bfloat16", jac(model.to(torch.bfloat16), torch.bfloat16))):
        np.save(tmp_path / "J.npy", J)
        code = main(["check", f"{tmp_path / 'dla.py'}:make", "--inputs", str(tmp_path / "x.npy"),
                     "--jacobian", str(tmp_path / "J.npy"), "--json", str(tmp_path / "r.json")])
        outs[name] = code, capsys.readouterr().out, json.loads((tmp_path / "r.json").read_text())
    code, out, report = outs["float32"]
    assert code == 0 and "PASS" in out, out
    assert report["comparisons"][str(tmp_path / "J.npy")]["max_rel"] < 1e-5
    code, out, report = outs["bfloat16"]
    sides = report["comparisons"][str(tmp_path / "J.npy")]["float32"]
    assert code == DISAGREE and sides["other"]["off_reference"], out
    assert not sides["fwdderiv"]["off_reference"] and sides["fwdderiv"]["max_rel"] < 1e-5
    assert "trust fwdderiv's float32" in out


LENET_FILE = '''
import torch
from torch import nn


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


def build():
    torch.manual_seed(0)
    return LeNet5().eval()
'''


def test_pytorchs_float32_lenet5_jacobian_passes_by_default_and_a_planted_error_fails(
        tmp_path, capsys):
    """The commonest check: a LeNet-5 class and PyTorch's own float32 jacrev. The float32
    tolerance is measured from fwdderiv's float32 Jacobian of the same inputs; a planted
    error of 1e-3 of max|J| in one entry still fails."""
    import importlib.util
    import torch
    (tmp_path / "lenet.py").write_text(LENET_FILE)
    spec = importlib.util.spec_from_file_location("lenet_check", tmp_path / "lenet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build()
    x = np.random.default_rng(3).random((2, 1, 32, 32)).astype(np.float32)
    J = torch.vmap(torch.func.jacrev(lambda v: model(v[None])[0]))(
        torch.from_numpy(x)).detach().numpy()
    np.save(tmp_path / "x.npy", x)
    argv = ["check", f"{tmp_path / 'lenet.py'}:build", "--inputs", str(tmp_path / "x.npy"),
            "--jacobian", str(tmp_path / "J.npy"), "--json", str(tmp_path / "r.json")]
    np.save(tmp_path / "J.npy", J)
    assert main(argv) == 0, capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert 1e-5 <= report["tolerance"] <= 1e-4 and "rounding" in report["tolerance_rule"]
    J[1, 3, 0, 10, 12] += 1e-3 * np.abs(J).max()
    np.save(tmp_path / "J.npy", J)
    assert main(argv) == DISAGREE
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["unexplained_positions"] == [[1, 3, 0, 10, 12]]
