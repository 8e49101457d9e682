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
        self.ws, self.scale = ws, dim ** -0.5    # (a Python number: exact in the ONNX file)
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
        a = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1) @ v
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


class FrozenBatchRunsAtTwo(WindowsInTheBatch):
    """The windows model with the unfolded windows reshaped to the input's shape: exported
    at batch 1, ``int()`` freezes the batch size at 1 in the file, which then still runs
    at batch 2 but mixes the two examples' windows there, as Swin's export does."""

    def attend(self, x):
        _, H, W, C = x.shape
        q, k, v = self.qkv(self.windows(x)).chunk(3, dim=-1)
        a = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1) @ v
        return x + self.unwindows(a, H, W).reshape(x.shape)


def _export(model, x, path, dynamic):
    torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "N"}} if dynamic else None, opset_version=17,
                      dynamo=False)
    return path


def _agrees_with_torch_func(net, model, x):
    for mode in ("reverse", "forward"):
        J, Jt = net.jacobian(x, mode=mode), torch_jacobian(model, x, "reverse")
        assert np.abs(J - Jt).max() <= RTOL * np.abs(Jt).max(), mode


def test_an_onnx_export_at_batch_1_that_folds_windows_is_read_one_example_at_a_time(tmp_path):
    """Exported at a fixed batch of 1 (torch.onnx's default), the file defines the function
    of one example: the batched reading refuses the window partition, the per-example
    reading imports it, for any batch."""
    model = _model()
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8))
    path = _export(model, x[:1], tmp_path / "fixed.onnx", dynamic=False)
    with pytest.raises(ValueError, match=r"fixed batch size 1 in the target shape "
                                         r"\[1, 2, 2, 2, 2, 6\].*per_example=True"):
        fd.from_onnx(path, per_example=False)
    dynamic = _export(model, x[:2], tmp_path / "dynamic.onnx", dynamic=True)
    with pytest.raises(ValueError, match=r"shape \[-1, 4, 6\] whose -1 folds 4 rows.*"
                                         r"per_example=True"):
        fd.from_onnx(dynamic, per_example=False)
    net = fd.from_onnx(path)
    np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    _agrees_with_torch_func(net, model, x)


def test_a_dynamic_export_that_only_runs_at_batch_1_is_read_with_a_warning(tmp_path):
    model = _model()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    path = _export(model, x[:1], tmp_path / "dynamic.onnx", dynamic=True)
    with pytest.warns(UserWarning, match="runs at batch 1 but not at batch 2"):
        net = fd.from_onnx(path)
    _agrees_with_torch_func(net, model, x)


def test_a_dynamic_export_wrong_at_batch_2_is_refused_unless_asked_for(tmp_path):
    """The file runs at batch 2 and mixes the examples there: reading it one example at a
    time would import something else than it computes, so only ``per_example=True`` (the
    user saying the file is meant at batch 1) does."""
    torch.manual_seed(3)
    model = FrozenBatchRunsAtTwo().double().eval()
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8))
    path = _export(model, x[:1], tmp_path / "frozen.onnx", dynamic=True)
    with pytest.raises(ValueError, match=r"at batch 2 the file itself gives each example "
                                         r"something else.*pass per_example=True"):
        fd.from_onnx(path)
    _agrees_with_torch_func(fd.from_onnx(path, per_example=True), model, x)


def test_an_onnx_file_that_mixes_examples_is_refused(tmp_path):
    """A softmax across the batch: one example at a time it would be a softmax over one
    item, which the file at batch 2 contradicts."""
    class SoftmaxOverTheBatch(nn.Module):
        def forward(self, x):
            return torch.softmax(x, dim=0) * x

    path = _export(SoftmaxOverTheBatch(), np.zeros((2, 8)), tmp_path / "mixes.onnx", True)
    with pytest.raises(ValueError, match=r"a softmax over the batch axis.*\n.*at batch 2 the "
                                         r"file itself gives each example something else"):
        fd.from_onnx(path)


def test_per_example_must_be_a_bool_or_none(tmp_path):
    path = _export(_model(), np.zeros((1, 3, 8, 8)), tmp_path / "m.onnx", dynamic=False)
    with pytest.raises(TypeError, match="per_example must be True, False or None, got 'yes'"):
        fd.from_onnx(path, per_example="yes")


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


@pytest.mark.parametrize("batch_first", [True, False])
def test_the_onnx_export_of_multihead_attention_imports_one_example_at_a_time(tmp_path,
                                                                               batch_first):
    """The export folds the batch into the heads: refused as a batch, it imports one
    example at a time (the file keeps examples apart at batch 2, so no flag is needed)."""
    torch.manual_seed(4)
    model = MultiheadBlock(batch_first).double().eval()
    x = np.random.default_rng(4).standard_normal((3, 7, 6))
    path = _export(model, x[:2], tmp_path / "mha.onnx", dynamic=True)
    with pytest.raises(ValueError, match=r"moves the batch axis"):
        fd.from_onnx(path, per_example=False)
    net = fd.from_onnx(path)
    np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    _agrees_with_torch_func(net, model, x)


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
