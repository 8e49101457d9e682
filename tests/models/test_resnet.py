"""ResNet-20 (both shortcut options) as a Graph against the same network in PyTorch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fwdderiv as fd


class TorchBlock(nn.Module):
    """He et al.'s basic block, written as PyTorch users write it."""

    def __init__(self, cin, cout, stride, option):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.option, self.pad = option, (cout - cin) // 2
        self.project = stride != 1 or cin != cout
        if self.project and option == "B":
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if not self.project:
            short = x
        elif self.option == "A":
            short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        else:
            short = self.shortcut(x)
        return F.relu(out + short)


class TorchResNet20(nn.Module):
    def __init__(self, option):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64), start=1):
            for b in range(3):
                blocks.append(TorchBlock(cin, cout, 2 if stage > 1 and b == 0 else 1, option))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        out = self.blocks(F.relu(self.bn1(self.conv1(x))))
        out = F.avg_pool2d(out, out.size()[3])
        return F.softmax(self.fc(out.view(out.size(0), -1)), dim=1)


def torch_name(node):
    """fwdderiv's node name -> the PyTorch module path: ``layer{s}.{b}`` is
    ``blocks.{3(s-1)+b}``; ``conv1.bn`` is ``bn1``; the projection is ``shortcut.0/1``."""
    if node.startswith("layer"):
        stage, block, rest = int(node[5]), int(node.split(".")[1]), node.split(".", 2)[2]
        node = f"blocks.{3 * (stage - 1) + block}.{rest}"
    for a, b in (("conv1.bn", "bn1"), ("conv2.bn", "bn2"), ("shortcut.bn", "shortcut.1")):
        node = node.replace(a, b)
    return node.replace("shortcut", "shortcut.0") if node.endswith("shortcut") else node


def copy_weights(net, model):
    state = {f"{torch_name(name)}.{key}": torch.from_numpy(np.asarray(value, np.float64))
             for name, layer, _ in net.nodes
             for key, value in {**layer.params, **layer.buffers}.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith("num_batches_tracked") for k in missing), missing


@pytest.mark.parametrize("option", ["A", "B"])
def test_resnet20_matches_pytorch_in_float64(option):
    net = fd.models.resnet20(shortcut=option, seed=3)
    model = TorchResNet20(option).double().eval()
    copy_weights(net, model)
    x = np.random.default_rng(0).random((2, 3, 32, 32))
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(net.forward(x), model(xt).detach().numpy(), rtol=1e-10,
                               atol=1e-14)
    # the Jacobian of 10 outputs: PyTorch's reverse mode is its cheap direction
    Jt = torch.func.vmap(torch.func.jacrev(lambda v: model(v[None])[0]))(xt).detach().numpy()
    scale = np.abs(Jt).max()
    Jr = net.jacobian(x, mode="reverse")
    np.testing.assert_allclose(Jr, Jt, rtol=1e-10, atol=1e-10 * scale)
    # forward mode: random directions by jvp, and (option A) the whole forward Jacobian of
    # one example, 3,072 directions, windowed through the leading chain
    V = np.random.default_rng(1).normal(size=(2, 4, 3, 32, 32))
    _, dy = net.jvp(x, V)
    np.testing.assert_allclose(dy, np.einsum("nkd,nvd->nvk", Jt.reshape(2, 10, -1),
                                             V.reshape(2, 4, -1)), rtol=1e-9, atol=1e-10 * scale)
    if option == "A":
        Jf = net.jacobian(x[:1], mode="forward")
        np.testing.assert_allclose(Jf, Jt[:1], rtol=1e-10, atol=1e-10 * scale)


def test_resnet20_round_trips_through_save_and_load(tmp_path):
    net = fd.models.resnet20(shortcut="B", seed=1)
    fd.save(net, tmp_path / "r.npz")
    again = fd.load(tmp_path / "r.npz")
    x = np.random.default_rng(1).random((2, 3, 32, 32)).astype(np.float32)
    assert isinstance(again, fd.Graph) and again.nodes[5][0] == net.nodes[5][0]
    np.testing.assert_array_equal(again.forward(x), net.forward(x))


def test_shortcut_option_is_checked():
    with pytest.raises(ValueError, match="shortcut must be 'A' or 'B'"):
        fd.models.resnet20(shortcut="C")
