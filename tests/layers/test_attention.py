"""Attention through both import routes: multi-head self-attention as vision transformers
write it, ``F.scaled_dot_product_attention`` (no mask, a constant mask, ``is_causal``),
and the pieces around it (Linear on tokens, LayerNorm over the
last axes, GELU both forms, softmax on any axis; ``nn.MultiheadAttention`` is in
``tests/interop/test_per_example.py``). Every Jacobian, forward and reverse,
equals ``torch.func``'s in float64; the Jacobian penalty's gradients through MatMul equal
PyTorch's double backward."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fwdderiv as fd
from fwdderiv.regularization import jacobian_penalty
from fwdderiv.testing import check_jvp, check_shapes, check_vjp

from ..interop.test_blocks import imported

RTOL = 1e-10


class Attention(nn.Module):
    """Multi-head self-attention as ViT code writes it (timm's ``Attention``)."""

    def __init__(self, dim=8, heads=2, unbind=False):
        super().__init__()
        self.heads, self.unbind = heads, unbind
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0) if self.unbind else (qkv[0], qkv[1], qkv[2])
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):
    """Pre-norm transformer block: attention and an MLP with GELU, residuals."""

    def __init__(self, dim=8, approximate="none"):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate=approximate),
                                 nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SDPA(nn.Module):
    """q, k, v from one Linear on tokens, split into heads; F.scaled_dot_product_attention."""

    def __init__(self, mask=None, is_causal=False, scale=None, tokens=5, dim=8, heads=2):
        super().__init__()
        self.heads, self.mask, self.is_causal, self.scale = heads, mask, is_causal, scale
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.reshape(B, T, self.heads, C // self.heads).transpose(1, 2)
                   for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask,
                                           is_causal=self.is_causal, scale=self.scale)
        return y.transpose(1, 2).reshape(B, T, C)


def jacobians(model, x):
    """torch.func's Jacobian in reverse mode, and in forward mode where PyTorch has it
    (its CPU attention kernel has no forward-mode derivative: then the reverse one)."""
    f = (lambda v: model(v[None])[0])
    xt = torch.from_numpy(x)
    rev = torch.vmap(torch.func.jacrev(f))(xt).detach().numpy()
    try:
        return rev, torch.vmap(torch.func.jacfwd(f))(xt).detach().numpy()
    except NotImplementedError:
        return rev, rev


def check_routes(model, x, tmp_path, routes=("torch", "onnx")):
    """Both modes of fwdderiv's Jacobian, through each import route, against torch.func."""
    model = model.double().eval()
    rev, fwd = jacobians(model, x)
    np.testing.assert_allclose(rev, fwd, rtol=1e-12, atol=1e-13)
    scale = np.abs(rev).max()
    for route in routes:
        net = imported(model, x, route, tmp_path)
        with torch.no_grad():
            np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).numpy(),
                                       rtol=RTOL, atol=RTOL * scale)
        for mode in ("forward", "reverse"):
            np.testing.assert_allclose(net.jacobian(x, mode=mode), rev, rtol=RTOL,
                                       atol=RTOL * scale, err_msg=f"{route} {mode}")
    return net


def tokens(n=2, t=5, c=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t, c))


# -- the layer --------------------------------------------------------------------------------
@pytest.mark.parametrize("sa, sb", [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)),
                                    ((2, 1, 3, 4), (3, 4, 2)), ((4,), (2, 4, 3)),
                                    ((2, 3, 4), (4,)), ((4,), (4,))])
def test_matmul_derivatives_match_finite_differences(sa, sb):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3,) + sa), rng.normal(size=(3,) + sb)
    y = fd.MatMul().forward(a, b)[0]
    for i in range(3):
        np.testing.assert_allclose(y[i], np.matmul(a[i], b[i]), rtol=1e-14)
    check_shapes(_Joined(sa, sb), (int(np.prod(sa)) + int(np.prod(sb)),))
    x = np.concatenate([a.reshape(3, -1), b.reshape(3, -1)], axis=1)
    check_jvp(_Joined(sa, sb), x)
    check_vjp(_Joined(sa, sb), x)


class _Joined(fd.Layer):
    """MatMul of the two halves of a flat input (to reuse fwdderiv.testing's checks)."""

    def __init__(self, sa, sb):
        self.sa, self.sb, self.m = sa, sb, fd.MatMul()

    def output_shape(self, in_shape):
        return self.m.output_shape(self.sa, self.sb)

    def _split(self, v, lead):
        k = int(np.prod(self.sa))
        return (v[..., :k].reshape(v.shape[:lead] + self.sa),
                v[..., k:].reshape(v.shape[:lead] + self.sb))

    def forward(self, x):
        return self.m.forward(*self._split(x, 1))

    def jvp(self, cache, dx):
        return self.m.jvp(cache, *self._split(dx, 2))

    def vjp(self, cache, gy):
        ga, gb = self.m.vjp(cache, gy)
        return np.concatenate([ga.reshape(gy.shape[:2] + (-1,)),
                               gb.reshape(gy.shape[:2] + (-1,))], axis=2)


def test_a_tangent_shared_by_the_examples_gives_the_broadcast_product():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 2, 4, 5)), rng.normal(size=(3, 2, 5, 3))
    da, db = rng.normal(size=(1, 6, 2, 4, 5)), rng.normal(size=(3, 6, 2, 5, 3))
    layer = fd.MatMul()
    _, cache = layer.forward(a, b)
    shared = layer.jvp(cache, da, db)
    full = layer.jvp(cache, np.broadcast_to(da, (3,) + da.shape[1:]), db)
    np.testing.assert_allclose(shared, full, rtol=1e-14)
    dA = np.broadcast_to(da, full.shape[:2] + da.shape[2:])
    naive = np.einsum("ndhik,nhkj->ndhij", dA, b) + np.einsum("nhik,ndhkj->ndhij", a, db)
    np.testing.assert_allclose(full, naive, rtol=1e-12)


def test_matmul_refuses_shapes_that_do_not_multiply():
    with pytest.raises(ValueError, match=r"MatMul\(\) expected two inputs .* got \(N, 2, 3, 4\), "
                                         r"\(N, 2, 3, 4\); transpose an operand"):
        fd.MatMul().output_shape((2, 3, 4), (2, 3, 4))
    with pytest.raises(ValueError, match="leading axes broadcast"):
        fd.MatMul().output_shape((2, 3, 4), (3, 4, 4))


# -- imports ----------------------------------------------------------------------------------
@pytest.mark.parametrize("unbind", [False, True])
def test_vit_attention_imports_through_both_routes(unbind, tmp_path):
    torch.manual_seed(0)
    check_routes(Attention(unbind=unbind), tokens(), tmp_path, routes=("torch", "onnx"))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_pre_norm_transformer_block_imports_through_both_routes(approximate, tmp_path):
    torch.manual_seed(1)
    check_routes(Block(approximate=approximate), tokens(seed=1), tmp_path)


CAUSAL = torch.tril(torch.ones(5, 5, dtype=torch.bool))


@pytest.mark.parametrize("kwargs, routes", [
    ({}, ("torch", "onnx")),
    ({"is_causal": True}, ("torch", "onnx")),
    ({"mask": CAUSAL.flip(1) | torch.eye(5, dtype=torch.bool)}, ("torch", "onnx")),
    # torch.onnx refuses a float64 mask: the float mask goes through from_torch only
    ({"mask": torch.randn(5, 5, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64), "scale": 0.3}, ("torch",)),
])
def test_scaled_dot_product_attention_imports(kwargs, routes, tmp_path):
    torch.manual_seed(2)
    check_routes(SDPA(**kwargs), tokens(seed=2), tmp_path, routes=routes)


def test_bmm_and_matmul_of_three_axes(tmp_path):
    class Gram(nn.Module):
        def forward(self, x):
            g = torch.bmm(x, x.transpose(1, 2))
            return torch.matmul(g.softmax(-1), x)

    check_routes(Gram(), tokens(seed=4), tmp_path)


@pytest.mark.parametrize("dim", [1, 2, -1])
def test_softmax_and_log_softmax_on_any_axis_of_four(dim, tmp_path):
    class M(nn.Module):
        def forward(self, x):
            y = x.reshape(x.shape[0], 2, 5, 4)
            return y.softmax(dim) + y.log_softmax(dim if dim != -1 else 3) * 0.5

    check_routes(M(), tokens(seed=5), tmp_path)


def test_layer_norm_over_the_last_two_axes(tmp_path):
    torch.manual_seed(6)
    model = nn.Sequential(nn.LayerNorm([5, 8]), nn.Linear(8, 3), nn.LayerNorm(3))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    check_routes(model, tokens(seed=6), tmp_path)


# -- the Jacobian penalty ------------------------------------------------------------------------
class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.head = Attention(), nn.Linear(5 * 8, 3)

    def forward(self, x):
        return self.head(torch.flatten(torch.tanh(self.attn(x)), 1))


def test_penalty_gradients_through_matmul_equal_pytorch_double_backward():
    torch.manual_seed(7)
    model = Classifier().double().eval()
    x = tokens(n=3, seed=7)
    net = fd.from_torch(model, torch.from_numpy(x))
    assert any(isinstance(layer, fd.MatMul) for layer in net.layers)
    value, grads = jacobian_penalty(net, x, method="exact")
    xt = torch.from_numpy(x).requires_grad_(True)
    z, sq = model(xt), 0
    for c in range(z.shape[1]):
        g, = torch.autograd.grad(z[:, c].sum(), xt, create_graph=True)
        sq = sq + g.pow(2).flatten(1).sum(1)
    t_value = 0.5 * sq.mean()
    t_value.backward()
    assert value == pytest.approx(t_value.item(), rel=1e-10)
    by_weight = {id(layer): g for layer, g in zip(net.layers, grads)}
    for module in (model.attn.qkv, model.attn.proj, model.head):
        layer = next(layer for layer in net.layers if isinstance(layer, fd.Linear) and
                     np.array_equal(layer.weight, module.weight.detach().numpy()))
        for name in ("weight", "bias"):
            p = getattr(module, name)            # no grad: the Jacobian does not depend on it
            t = np.zeros(tuple(p.shape)) if p.grad is None else p.grad.numpy()
            np.testing.assert_allclose(by_weight[id(layer)][name], t, rtol=1e-9,
                                       atol=1e-11 * np.abs(t).max(), err_msg=name)


def test_matmul_jvp_grad_matches_finite_differences():
    """Of s(a, b) = sum <g, J(a, b) (da, db)>, the gradient in a and b."""
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 1, 5, 3))
    da, db = rng.normal(size=(2, 4) + a.shape[1:]), rng.normal(size=(2, 4) + b.shape[1:])
    g = rng.normal(size=(2, 4, 3, 4, 3))
    layer = fd.MatMul()

    def s(a, b):
        return np.sum(g * layer.jvp(layer.forward(a, b)[1], da, db))

    (ga, gb), _ = layer.jvp_grad(layer.forward(a, b)[1], (a, b), (da, db), g)
    for v, gv, f in ((a, ga, lambda t: s(t, b)), (b, gb, lambda t: s(a, t))):
        d = rng.normal(size=v.shape)
        fd_d = (f(v + 1e-6 * d) - f(v - 1e-6 * d)) / 2e-6
        assert np.sum(gv * d) == pytest.approx(fd_d, rel=1e-7)


# -- refusals ---------------------------------------------------------------------------------
def onnx_model(nodes, shape, initializers=()):
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N"] + list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_products_that_do_not_multiply_are_refused():
    from onnx import helper
    square = onnx_model([helper.make_node("MatMul", ["x", "x"], ["y"])], (5, 4))
    with pytest.raises(ValueError, match=r"from_onnx: node 'y' \(operator MatMul\): MatMul\(\) "
                                         r"on per-example shapes \[\(5, 4\), \(5, 4\)\] .*"
                                         r"transpose an operand"):
        fd.from_onnx(square)
    shape = helper.make_tensor("s", 7, [3], [0, 4, 10])
    ranks = onnx_model([helper.make_node("Reshape", ["x", "s"], ["r"]),
                        helper.make_node("MatMul", ["x", "r"], ["y"])], (2, 5, 4), [shape])
    with pytest.raises(ValueError, match=r"a product of values of per-example shapes "
                                         r"\(2, 5, 4\) and \(4, 10\) \(the batch axis of one "
                                         r"would multiply another axis of the other\)"):
        fd.from_onnx(ranks)


def test_a_permutation_moving_the_batch_axis_imports_per_example_unless_it_mixes_examples():
    class Moved(nn.Module):             # sums each example's rows: per example after all
        def forward(self, x):
            return x.permute(1, 0, 2).sum(0)

    class Mixed(nn.Module):             # a softmax across the batch
        def forward(self, x):
            return x.permute(1, 0, 2).softmax(1).sum(0)

    x = np.random.default_rng(0).standard_normal((3, 5, 8))
    net = fd.from_torch(Moved().eval(), torch.zeros(2, 5, 8))
    np.testing.assert_allclose(net(x), x.sum(1), rtol=1e-12)
    with pytest.raises(ValueError, match=r"a permutation \[1, 0, 2\] that moves the batch "
                                         r"axis, read by aten.softmax.* read it only by items.*one "
                                         r"example at a time.*mixes examples"):
        fd.from_torch(Mixed().eval(), torch.zeros(2, 5, 8))


def test_attention_with_dropout_is_refused():
    class Drop(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x, dropout_p=0.5)

    with pytest.raises(ValueError, match=r"dropout_p=0.5 is not supported; use dropout_p=0"):
        fd.from_torch(Drop().eval(), torch.zeros(2, 5, 8))


def test_linear_on_tokens_through_the_slope_into_linear_fusion():
    """ReLU -> Linear on tokens (N, T, C), and a chain to a Linear on features: the
    fusion's columns are an example's units only for features; on tokens it runs the
    nodes one by one, with the same Jacobian as the plan without it."""
    from fwdderiv.core.plan import without
    net = fd.Sequential([fd.Linear(8, 6, seed=1), fd.ReLU(), fd.Linear(6, 4, seed=2),
                         fd.ReLU(), fd.Flatten(), fd.Linear(20, 3, seed=3)])
    x = tokens(n=3, seed=9)
    assert any(s.rule.startswith("slope into linear") for s in net.plan((5, 8)).steps)
    with without("slope into linear"):
        plain = net.jacobian(x)
    np.testing.assert_allclose(net.jacobian(x), plain, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(net.jacobian(x, mode="reverse"), plain, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(plain, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)


def test_linear_refuses_a_last_axis_of_another_size():
    with pytest.raises(ValueError, match=r"Linear\(in_features=8, out_features=3, bias=True\) "
                                         r"expected input of shape \(N, 8\) or \(N, \.\.\., 8\), "
                                         r"got \(N, 5, 6\); the previous layer must produce 8 "
                                         r"features on its last axis"):
        fd.Linear(8, 3).output_shape((5, 6))
    with pytest.raises(ValueError, match=r"got \(N, 2, 4\); put a Flatten\(\) before it"):
        fd.Linear(8, 3).output_shape((2, 4))
