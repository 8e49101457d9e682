"""Parameters used as activations, as vision transformers and ConvNeXt write them: a class
token concatenated to the patch tokens (``torch.cat([cls.expand(n, -1, -1), x], 1)``, or
einops' ``repeat``), a positional embedding added (also in place, and sliced), a
layer-scale vector multiplied. Through both import routes each Jacobian, forward and
reverse, equals PyTorch's in float64; ONNX writes the class token's expansion with a
size computed from the input's shape (``Shape``, ``Equal``, ``Where``, ``Expand``).

Imported, such a parameter is a :class:`fwdderiv.Constant` (a buffer: its derivative is
zero and the Jacobian penalty does not train it)."""
import numpy as np
import pytest
import torch
from einops import rearrange, repeat
from torch import nn

import fwdderiv as fd
from fwdderiv.regularization import jacobian_penalty

from tests.routes import imported, torch_exact_penalty, torch_jacobian


class TokenEmbedding(nn.Module):
    """A convolutional patch embedding, the class token in front, the positional embedding
    added, a layer-scale vector on the channels of each token, a linear head."""

    def __init__(self, dim=6, tokens=4):
        super().__init__()
        self.proj = nn.Conv2d(2, dim, 2, stride=2)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens + 1, dim))
        self.gamma = nn.Parameter(torch.randn(dim))
        self.head = nn.Linear((tokens + 1) * dim, 3)

    def forward(self, x):
        x = self.proj(x).flatten(2).transpose(1, 2)
        n = x.shape[0]
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        x = x + self.pos_embedding
        x = self.gamma * torch.tanh(x)
        return self.head(x.flatten(1))


class LucidrainsViT(nn.Module):
    """lucidrains/vit-pytorch's embedding: einops patches, ``repeat`` for the class token,
    an in-place addition of a slice of a longer positional embedding."""

    def __init__(self, patch=2, dim=5):
        super().__init__()
        self.patch = patch
        self.to_embedding = nn.Linear(patch * patch * 2, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, 8, dim))
        self.head = nn.Linear(7 * dim, 3)

    def forward(self, img):
        x = rearrange(img, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=self.patch,
                      p2=self.patch)
        x = self.to_embedding(x)
        b, n, _ = x.shape
        cls_tokens = repeat(self.cls_token, "1 1 d -> b 1 d", b=b)
        x = torch.cat((cls_tokens, x), dim=1)
        x += self.pos_embedding[:, :(n + 1)]
        return self.head(torch.tanh(x).flatten(1))


class LayerScale(nn.Module):
    """ConvNeXt's block end: a depthwise convolution, channels-last, a layer-scale vector,
    back to channels-first, and a residual; then a channels-first scale ``(C, 1, 1)``."""

    def __init__(self, dim=4):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.gamma = nn.Parameter(torch.randn(dim))
        self.scale = nn.Parameter(torch.randn(dim, 1, 1))
        self.head = nn.Linear(dim * 16, 3)

    def forward(self, x):
        y = torch.tanh(self.dwconv(x)).permute(0, 2, 3, 1)
        x = x + (self.gamma * y).permute(0, 3, 1, 2)
        return self.head(torch.flatten(self.scale * torch.tanh(x), 1))


class TokenAtTheEnd(nn.Module):
    """A token appended after the patch tokens, expanded with ``expand_as``-style sizes."""

    def __init__(self, dim=4):
        super().__init__()
        self.proj = nn.Linear(4, dim)
        self.register = nn.Parameter(torch.randn(1, 2, dim))
        self.head = nn.Linear(5 * dim, 3)

    def forward(self, x):
        x = self.proj(x)
        x = torch.cat([x, self.register.expand(x.shape[0], 2, x.shape[2])], dim=1)
        return self.head(torch.tanh(x).flatten(1))


CASES = {"token_embedding": (TokenEmbedding, (2, 4, 4)),
         "lucidrains_vit": (LucidrainsViT, (2, 4, 6)),
         "layer_scale": (LayerScale, (4, 4, 4)),
         "token_at_the_end": (TokenAtTheEnd, (3, 4))}


def case(name):
    cls, shape = CASES[name]
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((3,) + shape)
    return cls().double().eval(), x


@pytest.mark.parametrize("route", ["torch", "onnx"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_pytorchs_jacobian_in_both_modes(name, route, tmp_path):
    model, x = case(name)
    net = imported(model, x, route, tmp_path)
    assert any(isinstance(layer, fd.Constant) for layer in net.layers)
    with torch.no_grad():
        np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).numpy(), rtol=1e-12,
                                   atol=1e-13)
    J = torch_jacobian(model, x)
    assert np.abs(J).max() > 1e-3
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=1e-10, atol=1e-13,
                                   err_msg=mode)


def test_the_class_token_is_a_constant_of_the_example_shape():
    model, x = case("token_embedding")
    net = fd.from_torch(model, torch.from_numpy(x))
    tokens = [layer for layer in net.layers if isinstance(layer, fd.Constant)
              and layer.shape == (1, 6)]
    assert len(tokens) == 1
    np.testing.assert_array_equal(tokens[0].value, model.cls_token.detach().numpy()[0])
    assert net(x[:1]).shape == (1, 3)                     # any batch size afterwards


def test_the_penalty_gradients_equal_pytorch_double_backward():
    model, x = case("token_embedding")
    net = fd.from_torch(model, torch.from_numpy(x))
    value, grads = jacobian_penalty(net, x, method="exact")
    assert value == pytest.approx(torch_exact_penalty(model, x), rel=1e-10)
    ours = [(layer, g) for layer, g in zip(net.layers, grads) if layer.params]
    for (layer, g), mod in zip(ours, (model.proj, model.head)):
        for name, p in mod.named_parameters():
            tg = np.zeros(tuple(p.shape)) if p.grad is None else p.grad.numpy()
            np.testing.assert_allclose(g[name], tg, rtol=1e-9, atol=1e-13,
                                       err_msg=f"{layer!r} {name}")


def expand_model(tmp_path, token):
    """ONNX: a constant token expanded to the input's shape, then put before it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Expand", ["token", "s"], ["t"]),
             helper.make_node("Concat", ["t", "x"], ["y"], axis=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 4, 3])],
        [numpy_helper.from_array(token, "token")])
    path = tmp_path / "expand.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_expands_a_constant_along_example_axes_too(tmp_path):
    net = fd.from_onnx(expand_model(tmp_path, np.arange(3.0).reshape(1, 1, 3)))
    x = np.random.default_rng(0).standard_normal((2, 2, 3))
    np.testing.assert_array_equal(net(x)[:, :2], np.broadcast_to(np.arange(3.0), (2, 2, 3)))
    np.testing.assert_array_equal(net(x)[:, 2:], x)


def test_onnx_refuses_a_constant_that_fills_the_batch_axis(tmp_path):
    with pytest.raises(ValueError, match=r"Expand.*a constant of shape \(2, 1, 3\).*one "
                                         r"entry along the batch axis"):
        fd.from_onnx(expand_model(tmp_path, np.ones((2, 1, 3))))
