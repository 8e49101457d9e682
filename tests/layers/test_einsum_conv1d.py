"""Einsum, Conv1d and Tile (with a constant repeated over the batch) in models as their
authors write them (attention with einsum, BoTNet's relative position logits, CaiT's
talking heads, an MLP-Mixer block, a class token), through both import routes; each
Jacobian, forward and reverse, equals PyTorch's own in float64. Then the layers' own
corner cases (diagonals, summed letters, broadcast axes, the penalty's gradients) and
their refusals."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fwdderiv as fd
from tests.routes import imported, torch_jacobian
from fwdderiv.interop.onnx_import import OnnxImportError
from fwdderiv.layers.einsum import Einsum

RTOL = 1e-10


def assert_same_jacobian(model, x, route, tmp_path):
    model = model.double().eval()
    net = imported(model, x, route, tmp_path)
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x), model(torch.from_numpy(x)).numpy(),
                                   rtol=RTOL, atol=1e-12)
    J = torch_jacobian(model, x)
    scale = np.abs(J).max()
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=RTOL,
                                   atol=RTOL * scale, err_msg=mode)
    return net


# -- models as users write them -----------------------------------------------------------------
class TalkingHeadsAttention(nn.Module):
    """CaiT's attention: einsum of q and k, talking heads mixed by parameters before and
    after the softmax, einsum with v."""

    def __init__(self, dim=8, heads=2, dim_head=4):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.mix_pre = nn.Parameter(torch.randn(heads, heads))
        self.mix_post = nn.Parameter(torch.randn(heads, heads))
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)
                   for t in self.to_qkv(x).chunk(3, dim=-1))
        dots = torch.einsum("b h i d, b h j d -> b h i j", q, k) * self.scale
        dots = torch.einsum("b h i j, h g -> b g i j", dots, self.mix_pre)
        attn = torch.einsum("b h i j, h g -> b g i j", dots.softmax(dim=-1), self.mix_post)
        out = torch.einsum("b h i j, b h j d -> b h i d", attn, v)
        return self.to_out(out.permute(0, 2, 1, 3).reshape(b, n, -1))


def rel_to_abs(x):
    """BoTNet's relative -> absolute logits: pad a column of zeros, flatten, pad, reshape,
    slice."""
    b, h, l, _ = x.shape
    x = torch.cat((x, torch.zeros((b, h, l, 1), dtype=x.dtype)), dim=3)
    flat = torch.cat((x.reshape(b, h, l * (2 * l)), torch.zeros((b, h, l - 1), dtype=x.dtype)),
                     dim=2)
    return flat.reshape(b, h, l + 1, 2 * l - 1)[:, :, :l, (l - 1):]


class RelPosAttention(nn.Module):
    """BoTNet's attention on a feature map with relative position logits along the width
    (einsum with a parameter, rel_to_abs, the logits repeated over the rows)."""

    def __init__(self, dim=4, fmap=3, heads=2, dim_head=2):
        super().__init__()
        self.heads, self.fmap, self.scale = heads, fmap, dim_head ** -0.5
        self.to_qkv = nn.Conv2d(dim, 3 * heads * dim_head, 1, bias=False)
        self.rel_width = nn.Parameter(torch.randn(2 * fmap - 1, dim_head) * 0.5)

    def forward(self, fmap):
        b, _, h, w = fmap.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w).transpose(2, 3)
                   for t in self.to_qkv(fmap).chunk(3, dim=1))
        sim = torch.einsum("b h i d, b h j d -> b h i j", q, k) * self.scale
        qx = q.reshape(b, self.heads, h, w, -1)
        logits = torch.einsum("b h x y d, r d -> b h x y r", qx, self.rel_width)
        logits = rel_to_abs(logits.reshape(b, self.heads * h, w, -1))
        logits = logits.reshape(b, self.heads, h, 1, w, w).expand(-1, -1, -1, h, -1, -1)
        sim = sim + logits.reshape(b, self.heads, h * w, h * w)
        out = torch.einsum("b h i j, b h j d -> b h i d", sim.softmax(dim=-1), v)
        return out.transpose(2, 3).reshape(b, -1, h, w)


class MixerBlock(nn.Module):
    """MLP-Mixer: token mixing by Conv1d(kernel_size=1) over the patches, channel mixing by
    Linear, pre-norm residuals."""

    def __init__(self, patches=4, dim=6):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tokens = nn.Sequential(nn.Conv1d(patches, 8, 1), nn.GELU(), nn.Conv1d(8, patches, 1))
        self.channels = nn.Sequential(nn.Linear(dim, 12), nn.GELU(), nn.Linear(12, dim))

    def forward(self, x):
        x = self.tokens(self.norm1(x)) + x
        return self.channels(self.norm2(x)) + x


class Conv1dNet(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, **kw)

    def forward(self, x):
        return torch.tanh(self.conv(x))


class ClassToken(nn.Module):
    """A class token repeated over the batch (``cls.repeat(n, 1, 1)``), joined to the
    tokens, and the tokens repeated along a per-example axis."""

    def __init__(self, dim=3):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.fc = nn.Linear(dim, 2)

    def forward(self, x):
        cls = self.cls.repeat(x.shape[0], 1, 1)
        x = torch.cat((cls, x.repeat(1, 2, 1)), dim=1)
        return self.fc(torch.tanh(x))


class EinsumForms(nn.Module):
    """An ellipsis, a diagonal, a letter summed out of one operand, and a broadcast axis."""

    def forward(self, x):                                   # x: (N, 3, 3)
        y = torch.einsum("...ij,...jk->...ik", x, torch.tanh(x))
        d = torch.einsum("bii->bi", y)                      # (N, 3)
        s = torch.einsum("bij,bj->bi", torch.tanh(y), d)    # (N, 3)
        one = x[:, :1, :]                                   # (N, 1, 3): broadcast along i
        t = torch.einsum("bij,bij->bij", one, x)
        return torch.cat((d, s, t.reshape(x.shape[0], -1)), dim=1)


CASES = {
    "talking heads": (TalkingHeadsAttention, (5, 8)),
    "relative logits": (RelPosAttention, (4, 3, 3)),
    "mixer block": (MixerBlock, (4, 6)),
    "conv1d": (lambda: Conv1dNet(stride=2, padding=1, dilation=2, groups=2), (4, 11)),
    "conv1d same": (lambda: Conv1dNet(padding="same", dilation=2), (4, 7)),
    "class token": (ClassToken, (2, 3)),
    "einsum forms": (EinsumForms, (3, 3)),
}


@pytest.mark.parametrize("route", ["torch", "onnx"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_model_jacobian_equals_torch(case, route, tmp_path):
    make, shape = CASES[case]
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((2,) + shape)
    net = assert_same_jacobian(make(), x, route, tmp_path)
    names = {type(layer).__name__ for layer in getattr(net, "layers", None) or
             [layer for _, layer, _ in net.nodes]}
    expected = {"talking heads": "Einsum", "relative logits": "Einsum",
                "mixer block": "Conv1d", "conv1d": "Conv1d", "conv1d same": "Conv1d",
                "class token": "Constant", "einsum forms": "Einsum"}[case]
    assert expected in names


def test_mixer_block_imports_conv1d_and_exports_back():
    torch.manual_seed(0)
    model = MixerBlock().double().eval()
    x = np.random.default_rng(2).standard_normal((3, 4, 6))
    net = fd.from_torch(model, torch.from_numpy(x))
    back = fd.to_torch(net).double()
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(x)).numpy(), net.forward(x),
                                   rtol=1e-12)


# -- the layers on their own ----------------------------------------------------------------------
EQUATIONS = [  # equation, operand shapes (batch first)
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
    ("bii,bj->bij", [(2, 3, 3), (2, 2)]),          # a diagonal of one operand
    ("bijk,bk->bi", [(2, 3, 2, 4), (2, 4)]),       # j summed out of one operand
    ("bhij,bxjk->bhik", [(2, 2, 3, 4), (2, 1, 4, 2)]),   # x broadcast (size 1)
    ("bij,bij->bi", [(2, 1, 3), (2, 4, 3)]),       # i broadcast in the first operand
]


@pytest.mark.parametrize("equation,shapes", EQUATIONS)
def test_einsum_derivatives_equal_torch(equation, shapes):
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal(s) for s in shapes)
    layer = Einsum(equation)
    y, cache = layer.forward(a, b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(y, torch.einsum(equation, ta, tb).numpy(), rtol=1e-12)
    da, db = (rng.standard_normal((s[0], 3) + s[1:]) for s in shapes)
    gy = rng.standard_normal((y.shape[0], 3) + y.shape[1:])
    dy = layer.jvp(cache, da, db)
    ga, gb = layer.vjp(cache, gy)
    for d in range(3):
        _, t_dy = torch.func.jvp(lambda u, v: torch.einsum(equation, u, v), (ta, tb),
                                 (torch.from_numpy(da[:, d]), torch.from_numpy(db[:, d])))
        np.testing.assert_allclose(dy[:, d], t_dy.numpy(), rtol=1e-12, atol=1e-12)
        _, pull = torch.func.vjp(lambda u, v: torch.einsum(equation, u, v), ta, tb)
        t_ga, t_gb = pull(torch.from_numpy(gy[:, d]))
        np.testing.assert_allclose(ga[:, d], t_ga.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gb[:, d], t_gb.numpy(), rtol=1e-12, atol=1e-12)
    # the penalty's gradient: of sum_d <g_d, E(da_d, b) + E(a, db_d)> in a and b
    (pa, pb), _ = layer.jvp_grad(cache, (a, b), (da, db), gy)
    ta.requires_grad_(True)
    tb.requires_grad_(True)
    t_val = (torch.from_numpy(gy) * torch.func.vmap(
        lambda u, v: torch.einsum(equation, u, tb) + torch.einsum(equation, ta, v),
        in_dims=(1, 1), out_dims=1)(torch.from_numpy(da), torch.from_numpy(db))).sum()
    t_pa, t_pb = torch.autograd.grad(t_val, (ta, tb))
    np.testing.assert_allclose(pa, t_pa.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pb, t_pb.numpy(), rtol=1e-12, atol=1e-12)


def test_einsum_of_one_operand_is_linear_and_shares_a_seed():
    layer = Einsum("bij->bji")
    assert layer.linear and not layer.multi_input
    net = fd.Sequential([layer, fd.Tanh()])
    x = np.random.default_rng(4).standard_normal((2, 3, 2))
    J = net.jacobian(x)
    np.testing.assert_allclose(J, net.jacobian(x, mode="reverse"), rtol=1e-13)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)


def test_a_constant_operand_is_a_constant_layer(tmp_path):
    torch.manual_seed(0)
    model = TalkingHeadsAttention().double().eval()
    x = np.random.default_rng(5).standard_normal((2, 5, 8))
    net = fd.from_torch(model, torch.from_numpy(x))
    mixes = [layer.value for _, layer, _ in net.nodes if isinstance(layer, fd.Constant)]
    assert any(np.array_equal(m, model.mix_pre.detach().numpy()) for m in mixes)
    path = tmp_path / "net.npz"
    fd.save(net, path)
    np.testing.assert_allclose(fd.load(path).forward(x), net.forward(x), rtol=1e-13)


def test_conv1d_weight_is_a_view_of_the_convolution():
    conv = fd.Conv1d(2, 3, 3, padding=1)
    x = np.random.default_rng(6).standard_normal((2, 2, 5))
    before = conv(x)
    conv.params["weight"][...] *= 2                 # in place, as a trainer updates it
    np.testing.assert_allclose(conv(x) - conv.bias[:, None], 2 * (before - conv.bias[:, None]),
                               rtol=1e-6, atol=1e-6)
    assert conv.weight.shape == (3, 2, 3)


def test_conv1d_padding_modes_equal_torch():
    """Other padding modes run in the inner Conv2d (padding first); exported back to
    nn.Conv1d. (Their import goes through aten.pad of one axis, which the Pad rules do not
    take yet.)"""
    x = np.random.default_rng(8).standard_normal((2, 4, 7))
    for mode in ("reflect", "replicate", "circular"):
        conv = fd.Conv1d(4, 6, 3, padding=2, dilation=2, padding_mode=mode, seed=1)
        conv.weight, conv.bias = conv.weight.astype(np.float64), conv.bias.astype(np.float64)
        net = fd.Sequential([conv, fd.Tanh()])
        model = fd.to_torch(net).double()
        J = torch_jacobian(model, x)
        for m in ("forward", "reverse"):
            np.testing.assert_allclose(net.jacobian(x, mode=m), J, rtol=RTOL, atol=1e-12,
                                       err_msg=f"{mode} {m}")


def test_tile_sums_cotangents_over_copies():
    layer = fd.Tile([2, 3])
    x = np.random.default_rng(7).standard_normal((2, 2, 2))
    y, cache = layer.forward(x)
    np.testing.assert_array_equal(y, np.tile(x, (1, 2, 3)))
    gy = np.ones((2, 1) + y.shape[1:])
    np.testing.assert_array_equal(layer.vjp(cache, gy), np.full((2, 1, 2, 2), 6.0))


# -- refusals -------------------------------------------------------------------------------------
@pytest.mark.parametrize("equation,needle", [
    ("ib,bj->ij", "batch letter"),
    ("bij,bjk", "explicit equation"),
    ("bi,bj,bk->bijk", "one or two operands"),
    ("b...i->b...i", "explicit equation"),
    ("bi,bj->bik", "every letter of the output"),
])
def test_einsum_refuses_equations_it_cannot_run(equation, needle):
    with pytest.raises(ValueError, match=needle):
        Einsum(equation)


def test_einsum_names_itself_for_operands_that_do_not_fit():
    with pytest.raises(ValueError, match=r"Einsum\(equation='bij,bjk->bik'\): letter 'j'"):
        Einsum("bij,bjk->bik").output_shape((3, 4), (5, 2))


class ThreeOperands(nn.Module):
    def forward(self, x):
        return torch.einsum("bi,bj,bk->bijk", x, x, x)


class ConstantAlongBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 3))

    def forward(self, x):
        return torch.einsum("bi,bi->bi", x, self.w)     # the parameter indexed by the batch


@pytest.mark.parametrize("model,needle", [(ThreeOperands(), "einsum of 3 operands"),
                                          (ConstantAlongBatch(), "along the batch letter")])
def test_einsum_import_refusals(model, needle, tmp_path):
    """(torch.export itself fixes the batch size of both: ONNX's route shows the rule's
    refusal.)"""
    x = np.random.default_rng(9).standard_normal((2, 3))
    with pytest.raises(OnnxImportError, match=needle):
        imported(model.double(), x, "onnx", tmp_path)


def test_conv1d_and_tile_refusals():
    with pytest.raises(ValueError, match="padding='same'.*strided"):
        fd.Conv1d(2, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"Conv1d\(2, 4, 3\) expected input of shape \(N, 2, L\)"):
        fd.Conv1d(2, 4, 3)(np.zeros((1, 3, 5)))
    with pytest.raises(ValueError, match="L large enough"):
        fd.Conv1d(2, 4, 3)(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="Tile: repeats"):
        fd.Tile([0, 2])
    with pytest.raises(ValueError, match="one repeat count per axis"):
        fd.Tile([2])(np.zeros((1, 2, 2)))
