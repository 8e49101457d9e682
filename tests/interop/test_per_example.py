"""``from_torch`` of modules whose code ties the batch to another size (Swin's reference
window partition folds the windows into the batch axis and reads the batch size back):
``torch.export`` cannot keep the batch dynamic, so the module is traced one example at a
time under ``torch.vmap`` (``torch_import._export_per_example``). The imported network
takes any batch and its Jacobians equal ``torch.func``'s; a module that mixes examples is
refused, never imported as something else."""
import numpy as np
import pytest
import torch
from torch import nn

import fwdderiv as fd
from tests.routes import torch_jacobian

RTOL = 1e-9


class WindowsInTheBatch(nn.Module):
    """Patch embedding, then attention inside 2x2 windows that are folded into the batch
    axis (``reshape(-1, ws * ws, C)``) and unfolded with the batch size computed as
    ``int(windows / n_windows)``, a shifted pass with ``roll``, mean-pooled tokens, a
    linear head."""

    def __init__(self, ws=2, dim=6):
        super().__init__()
        self.ws = ws
        self.embed = nn.Conv2d(3, dim, 2, stride=2)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 4)

    def windows(self, x):                       # (B, H, W, C) -> (B * nW, ws * ws, C)
        B, H, W, C = x.shape
        ws = self.ws
        x = x.view(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, ws * ws, C)

    def unwindows(self, w, H, W):               # the inverse; B read back from the size
        ws = self.ws
        B = int(w.shape[0] / (H * W / ws / ws))
        x = w.view(B, H // ws, W // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(B, H, W, -1)

    def attend(self, x):
        _, H, W, C = x.shape
        q, k, v = self.qkv(self.windows(x)).chunk(3, dim=-1)
        a = torch.softmax(q @ k.transpose(-2, -1) / C ** 0.5, dim=-1) @ v
        return x + self.unwindows(a, H, W)

    def forward(self, x):
        x = self.embed(x).permute(0, 2, 3, 1)   # (B, H, W, C)
        x = self.attend(self.norm(x))
        x = torch.roll(self.attend(torch.roll(x, (1, 1), dims=(1, 2))), (-1, -1), dims=(1, 2))
        return self.head(x.flatten(1, 2).mean(1))


class MixesFoldedRows(nn.Module):
    """Rows of every example folded together, a softmax across all of them (examples
    mixed), the batch size read back by int(): it fixes the batch for torch.export, and
    one example at a time computes something else."""

    def forward(self, x):
        r = torch.softmax(x.reshape(-1, 4), dim=0)
        return r.reshape(int(r.shape[0] / 2), 8)


def _model(seed=0):
    torch.manual_seed(seed)
    return WindowsInTheBatch().double().eval()


def test_windows_folded_into_the_batch_import_with_the_jacobians_of_torch_func():
    model = _model()
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8))
    with pytest.raises(Exception, match="batch"):      # what makes the fallback needed
        torch.export.export(model, (torch.from_numpy(x),),
                            dynamic_shapes=({0: torch.export.Dim("batch")},))
    net = fd.from_torch(model, torch.from_numpy(x[:1]))
    assert {"Roll", "MatMul", "Softmax", "Reshape"} <= {type(layer).__name__
                                                       for _, layer, _ in net.nodes}
    for n in (1, 3):                                    # not the traced batch size
        np.testing.assert_allclose(net(x[:n]), model(torch.from_numpy(x[:n])).detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
    for mode in ("reverse", "forward"):
        J, Jt = net.jacobian(x, mode=mode), torch_jacobian(model, x, mode)
        assert np.abs(J - Jt).max() <= RTOL * np.abs(Jt).max(), mode


def test_a_module_that_mixes_examples_is_refused():
    with pytest.raises(ValueError, match="differs from its outputs for each example alone"):
        fd.from_torch(MixesFoldedRows().double().eval(),
                      torch.zeros(2, 8, dtype=torch.float64))


def test_a_module_that_fixes_the_batch_names_the_fix():
    class Fixed(nn.Module):
        def forward(self, x):
            return x.view(4, -1) * 2.0

    with pytest.raises(ValueError, match=r"fixes the batch size.*x\.view\(x\.size\(0\), -1\)"):
        fd.from_torch(Fixed().eval(), torch.zeros(4, 3))


def test_the_onnx_export_is_refused_at_the_folding_reshape(tmp_path):
    from tests.routes import imported
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"shape \[-1, 4, 6\] whose -1 folds 4 rows of each "
                                         r"example .* into the batch axis.*fwdderiv\.from_torch"):
        imported(_model(), x, "onnx", tmp_path)


class MultiheadBlock(nn.Module):
    """A pre-norm transformer block on nn.MultiheadAttention, batch first or (as older
    code writes it) sequence first with the transposes around it."""

    def __init__(self, batch_first, need_weights=False):
        super().__init__()
        self.batch_first, self.need_weights = batch_first, need_weights
        self.norm = nn.LayerNorm(6)
        self.mha = nn.MultiheadAttention(6, 2, batch_first=batch_first)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.norm(x)
        if not self.batch_first:
            h = h.transpose(0, 1)
        a = self.mha(h, h, h, need_weights=self.need_weights)[0]
        if not self.batch_first:
            a = a.transpose(0, 1)
        return self.head((x + a).mean(1))


@pytest.mark.parametrize("batch_first, need_weights", [(True, False), (False, False),
                                                       (True, True)])
def test_multihead_attention_imports_with_the_jacobians_of_torch_func(batch_first,
                                                                      need_weights):
    torch.manual_seed(1)
    model = MultiheadBlock(batch_first, need_weights).double().eval()
    x = np.random.default_rng(1).standard_normal((2, 7, 6))
    net = fd.from_torch(model, torch.from_numpy(x))
    np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    Jt = torch_jacobian(model, x, "reverse")    # (PyTorch has no forward AD for its
    for mode in ("reverse", "forward"):         # fused CPU attention)
        J = net.jacobian(x, mode=mode)
        assert np.abs(J - Jt).max() <= RTOL * np.abs(Jt).max(), mode


def test_the_onnx_export_of_multihead_attention_points_to_from_torch(tmp_path):
    from tests.routes import imported
    x = np.random.default_rng(0).standard_normal((2, 7, 6))
    with pytest.raises(ValueError, match=r"moves the batch axis.*nn\.MultiheadAttention.*"
                                         r"fwdderiv\.from_torch"):
        imported(MultiheadBlock(True).double().eval(), x, "onnx", tmp_path)


def test_a_float32_module_imports_per_example_too():
    model = _model().float()
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    net = fd.from_torch(model, torch.from_numpy(x))
    np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


class ConvStemAttention(nn.Module):
    """A convolution, eval-mode BatchNorm and ReLU make the tokens of a MultiheadBlock (a
    hybrid ViT's stem): the per-example trace takes the batch norm as its arithmetic,
    since vmap's rule for the fused operator folds the batch into the channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(6)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)
        self.block = MultiheadBlock(True)

    def forward(self, x):
        t = torch.relu(self.bn(self.conv(x)))
        return self.block(t.flatten(2).transpose(1, 2))


def test_batch_norm_before_multihead_attention_imports_per_example():
    torch.manual_seed(2)
    model = ConvStemAttention().double().eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8))
    net = fd.from_torch(model, torch.from_numpy(x))
    Jt = torch_jacobian(model, x, "reverse")
    for mode in ("reverse", "forward"):
        J = net.jacobian(x, mode=mode)
        assert np.abs(J - Jt).max() <= RTOL * np.abs(Jt).max(), mode
