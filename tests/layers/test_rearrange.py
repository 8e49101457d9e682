"""Rearranging operators as users write them, through both import routes (``from_torch``
and ``torch.onnx`` -> ``from_onnx``), forward and reverse Jacobians against PyTorch's in
float64: every output of ``chunk``/``split``/``unbind`` (ONNX ``Split``), ``x[:, 0]`` (a
vision transformer's class token), ``x[:, idx]``/``index_select``/``torch.gather`` with
constant indices (ONNX ``Gather``/``GatherElements``), ``torch.roll`` (a Swin
transformer's shifted windows, with its relative position bias table indexed by a
constant), ``nn.Unfold``, ``PixelShuffle``/``PixelUnshuffle`` and the einops-style patch
embedding; and the refusals."""
import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn
from torch.nn import functional as F

import fwdderiv as fd
from tests.routes import imported, torch_jacobian
from fwdderiv.kernels.gather import scatter_add


def check(model, x, route, tmp_path, layers=(), opset=17):
    """Both Jacobian modes of the imported model equal PyTorch's; ``layers`` are among
    the imported network's layer types."""
    model = model.double().eval()
    net = imported(model, x, route, tmp_path, opset)
    kinds = {type(layer).__name__ for layer in getattr(net, "layers", None) or
             [layer for _, layer, _ in net.nodes]}
    assert set(layers) <= kinds, kinds
    with torch.no_grad():
        np.testing.assert_allclose(net(x), model(torch.from_numpy(x)).numpy(),
                                   rtol=1e-12, atol=1e-12)
    J = torch_jacobian(model, x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(net.jacobian(x, mode=mode), J, rtol=1e-10, atol=1e-12,
                                   err_msg=mode)
    return net


ROUTES = ["torch", "onnx"]


class Pieces(nn.Module):
    """BotNet's ``q, k, v = qkv.chunk(3, dim=1)``, ``split`` by size and by sizes, and
    ``unbind``, every piece used."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Conv2d(2, 9, 1)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=1)
        y = torch.tanh(q) * k + v                                  # (N, 3, 4, 4)
        a, b = torch.split(y, [1, 2], dim=1)
        c, d = y.split(3, dim=-1)                                 # 3 and 1 columns
        rows = torch.unbind(torch.sigmoid(y), dim=2)
        return torch.cat([a.flatten(1), b.flatten(1), c.flatten(1), d.flatten(1) * 2,
                          (rows[0] * rows[3]).flatten(1), (rows[1] - rows[2]).flatten(1)], dim=1)


@pytest.mark.parametrize("route", ROUTES)
def test_every_output_of_chunk_split_and_unbind(route, tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 4))
    check(Pieces(), x, route, tmp_path, layers=("Slice",))


@pytest.mark.parametrize("opset", [13, 18])
def test_onnx_split_with_sizes_and_equal_parts(opset, tmp_path):
    class M(nn.Module):
        def forward(self, x):
            a, b, c = x.chunk(3, dim=1)                            # equal parts
            d, e = x.split([1, 5], dim=1)
            return torch.cat([a * c - b, torch.tanh(d) * e[:, 2:3]], dim=1)
    x = np.random.default_rng(1).normal(size=(2, 6, 3))
    check(M(), x, "onnx", tmp_path, opset=opset)


def test_max_pool_with_indices_keeps_importing_its_first_output():
    model = nn.Sequential(nn.MaxPool2d(2, return_indices=False), nn.Flatten()).double()

    class WithIndices(nn.Module):
        def forward(self, x):
            y, _ = F.max_pool2d_with_indices(x, 2)
            return y.flatten(1)
    x = np.random.default_rng(2).permutation(64).reshape(2, 2, 4, 4) / 64.0
    for m in (model, WithIndices()):
        net = fd.from_torch(m, torch.from_numpy(x))
        np.testing.assert_allclose(net.jacobian(x), torch_jacobian(m, x), atol=1e-14)


class ClassToken(nn.Module):
    """A vision transformer's head reads its class token, ``x[:, 0]``; also a strided
    slice, constant integer indices and ``index_select``."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(5, 6)
        self.register_buffer("order", torch.tensor([3, 0, 0, 2]))
        self.head = nn.Linear(6 + 4 * 3 + 8 + 2 * 3, 4)

    def forward(self, x):                                          # (N, 4, 5) tokens
        t = torch.tanh(self.proj(x))
        cls = t[:, 0]
        picked = t[:, self.order, 1:4:1]                           # repeats and a slice
        sel = torch.index_select(t, 2, torch.tensor([5, 1]))
        every = t[:, 1::2, ::2][:, :, :3].flatten(1)
        return self.head(torch.cat([cls, picked.flatten(1), sel.flatten(1)[:, :8], every],
                                   dim=1))


@pytest.mark.parametrize("route", ROUTES)
def test_class_token_and_constant_indices(route, tmp_path):
    torch.manual_seed(1)
    x = np.random.default_rng(3).normal(size=(3, 4, 5))
    check(ClassToken(), x, route, tmp_path, layers=("Gather",))


class TwoIndices(nn.Module):
    """Advanced indexing with two index tensors on adjacent axes (broadcast together)."""

    def forward(self, x):                                          # (N, 3, 4, 2)
        i, j = torch.tensor([[0, 2], [1, 1]]), torch.tensor([3, -1])
        return torch.tanh(x[:, i, j]).flatten(1)


def test_several_index_tensors_through_torch():
    x = np.random.default_rng(4).normal(size=(2, 3, 4, 2))
    check(TwoIndices(), x, "torch", None, layers=("Gather", "Reshape"))


class GatherRows(nn.Module):
    """``torch.gather`` with a constant index broadcast to the batch."""

    def __init__(self):
        super().__init__()
        self.register_buffer("index", torch.tensor([[[2, 0, 1], [1, 1, 1]]]))

    def forward(self, x):                                          # (N, 2, 3)
        return torch.gather(x, 2, self.index.expand(x.shape[0], -1, -1)) * x


@pytest.mark.parametrize("route", ROUTES)
def test_torch_gather_with_a_constant_index(route, tmp_path):
    x = np.random.default_rng(5).normal(size=(2, 2, 3))
    check(GatherRows(), x, route, tmp_path, layers=("GatherElements",))


def window_partition(x, w):
    n, h, wd, c = x.shape
    x = x.view(n, h // w, w, wd // w, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(n, (h // w) * (wd // w), w * w, c)


class ShiftedWindows(nn.Module):
    """Swin's shifted-window attention bias path: ``torch.roll`` of the feature map, window
    partition by view/permute, a relative position bias gathered from a parameter table
    with a constant index (folded at import), and the roll back."""

    def __init__(self, w=2, c=3):
        super().__init__()
        self.w = w
        self.table = nn.Parameter(torch.randn((2 * w - 1) ** 2, 1))
        coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij"))
        flat = coords.flatten(1)
        rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (w - 1)
        self.register_buffer("index", rel[..., 0] * (2 * w - 1) + rel[..., 1])
        self.proj = nn.Linear(c, c)

    def forward(self, x):                                          # (N, H, W, C)
        n, h, wd, c = x.shape
        s = torch.roll(x, shifts=(-1, -1), dims=(1, 2))
        win = window_partition(s, self.w)                          # (N, nW, w*w, C)
        bias = self.table[self.index.view(-1)].view(self.w ** 2, self.w ** 2)
        mixed = torch.softmax(bias, dim=-1).sum(-1)
        win = torch.tanh(self.proj(win)) * mixed.view(1, 1, -1, 1)
        win = win.view(n, h // self.w, wd // self.w, self.w, self.w, c)
        out = win.permute(0, 1, 3, 2, 4, 5).reshape(n, h, wd, c)
        return torch.roll(out, shifts=(1, 1), dims=(1, 2)).flatten(1)


@pytest.mark.parametrize("route", ROUTES)
def test_swin_shifted_windows(route, tmp_path):
    torch.manual_seed(2)
    x = np.random.default_rng(6).normal(size=(2, 4, 4, 3))
    check(ShiftedWindows(), x, route, tmp_path,
          layers=("Roll",) if route == "torch" else ("Concat",))


class Blocks(nn.Module):
    """``nn.Unfold`` into a linear map of each block, as a patch embedding or a Swin patch
    merging written with unfold does."""

    def __init__(self):
        super().__init__()
        self.unfold = nn.Unfold(kernel_size=(2, 3), dilation=(1, 2), padding=1, stride=2)
        self.proj = nn.Linear(2 * 2 * 3, 5)

    def forward(self, x):
        cols = self.unfold(torch.tanh(x))                          # (N, 12, L)
        return self.proj(cols.transpose(1, 2)).flatten(1)


@pytest.mark.parametrize("route", ROUTES)
def test_unfold(route, tmp_path):
    torch.manual_seed(3)
    x = np.random.default_rng(7).normal(size=(2, 2, 5, 6))
    check(Blocks(), x, route, tmp_path,
          layers=("Unfold",) if route == "torch" else ("Gather",))


class SubPixel(nn.Module):
    """A super-resolution tail: conv, PixelShuffle, then PixelUnshuffle back."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.up = nn.PixelShuffle(2)
        self.down = nn.PixelUnshuffle(2)

    def forward(self, x):
        y = torch.tanh(self.up(self.conv(x)))                      # (N, 2, 2H, 2W)
        return self.down(y * y[:, :1]).flatten(1)


@pytest.mark.parametrize("route", ROUTES)
def test_pixel_shuffle_and_unshuffle(route, tmp_path):
    torch.manual_seed(4)
    x = np.random.default_rng(8).normal(size=(2, 2, 3, 2))
    check(SubPixel(), x, route, tmp_path, layers=("PixelShuffle",))


def onnx_model(nodes, in_shape, out_shape, inits=()):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", *out_shape])],
        list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_onnx_depth_to_space_and_space_to_depth(mode):
    """Both DepthToSpace modes and SpaceToDepth, against their ONNX definitions
    (onnx.reference), composed so that the result is a permutation of the input."""
    from onnx.reference import ReferenceEvaluator
    nodes = [helper.make_node("DepthToSpace", ["x"], ["d"], blocksize=2, mode=mode),
             helper.make_node("Tanh", ["d"], ["t"]),
             helper.make_node("SpaceToDepth", ["t"], ["y"], blocksize=2)]
    model = onnx_model(nodes, [8, 2, 3], [8, 2, 3])
    x = np.random.default_rng(9).normal(size=(2, 8, 2, 3))
    net = fd.from_onnx(model)
    np.testing.assert_allclose(net(x), ReferenceEvaluator(model).run(None, {"x": x})[0],
                               rtol=1e-14)
    J = net.jacobian(x)
    np.testing.assert_allclose(net.jacobian(x, mode="reverse"), J, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("opset, attrs, sizes", [
    (11, {}, None),                                # equal parts
    (11, {"split": [2, 4, 1]}, None),              # sizes as an attribute
    (13, {}, [1, 1, 5]),                           # sizes as an input
    (18, {"num_outputs": 3}, None)])               # 3, 3 and a smaller last piece
def test_onnx_split_in_every_form(opset, attrs, sizes):
    from onnx.reference import ReferenceEvaluator
    n = 6 if opset == 11 and not attrs else 7
    inputs, inits = ["x"], []
    if sizes is not None:
        inits = [helper.make_tensor("s", TensorProto.INT64, [3], sizes)]
        inputs.append("s")
    nodes = [helper.make_node("Split", inputs, ["a", "b", "c"], axis=-1, **attrs),
             helper.make_node("Tanh", ["b"], ["t"]),
             helper.make_node("Concat", ["c", "t", "a"], ["y"], axis=2)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2, n])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    x = np.random.default_rng(14).normal(size=(2, 2, n))
    net = fd.from_onnx(model)
    np.testing.assert_allclose(net(x), ReferenceEvaluator(model).run(None, {"x": x})[0],
                               rtol=1e-14)
    J = net.jacobian(x)
    np.testing.assert_allclose(net.jacobian(x, mode="reverse"), J, rtol=1e-14)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)


def test_onnx_gather_elements_and_scalar_gather():
    from onnx.reference import ReferenceEvaluator
    index = helper.make_tensor("i", TensorProto.INT64, [1, 2, 3], [2, 0, 1, -1, 1, 1])
    zero = helper.make_tensor("z", TensorProto.INT64, [], [1])
    nodes = [helper.make_node("GatherElements", ["x", "i"], ["g"], axis=2),
             helper.make_node("Gather", ["x", "z"], ["s"], axis=1),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Concat", ["f", "s"], ["y"], axis=1)]
    model = onnx_model(nodes, [2, 3], [9], [index, zero])
    x = np.random.default_rng(10).normal(size=(3, 2, 3))
    net = fd.from_onnx(model)
    for k in range(3):          # the index (batch 1) is ONNX's for one example at a time
        np.testing.assert_allclose(net(x[k:k + 1]),
                                   ReferenceEvaluator(model).run(None, {"x": x[k:k + 1]})[0])
    J = net.jacobian(x)
    np.testing.assert_allclose(net.jacobian(x, mode="reverse"), J, rtol=1e-14)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)


class PatchEmbedding(nn.Module):
    """einops' ``rearrange(x, 'n c (h p1) (w p2) -> n (h w) (p1 p2 c)')`` written with
    reshape and permute, then flatten/unflatten and transpose."""

    def __init__(self, p=2):
        super().__init__()
        self.p = p
        self.proj = nn.Linear(p * p * 3, 4)

    def forward(self, x):
        n, c, h, w = x.shape
        p = self.p
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        x = self.proj(x.reshape(n, (h // p) * (w // p), p * p * c))   # (N, L, 4)
        x = x.transpose(1, 2).unflatten(2, (h // p, w // p))          # (N, 4, h, w)
        return torch.flatten(torch.tanh(x), 2).reshape(n, -1)


@pytest.mark.parametrize("route", ROUTES)
def test_patch_embedding_by_reshape_and_permute(route, tmp_path):
    torch.manual_seed(5)
    x = np.random.default_rng(11).normal(size=(2, 3, 4, 6))
    check(PatchEmbedding(), x, route, tmp_path, layers=("Permute",))


# -- the layers themselves ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_add_kernel_equals_numpys_add_at(dtype):
    rng = np.random.default_rng(12)
    flat = rng.integers(0, 7, size=20)
    g = rng.normal(size=(2, 3, 20)).astype(dtype)
    expected = np.zeros((2, 3, 7), dtype)
    np.add.at(expected, (slice(None), slice(None), flat), g)
    out = scatter_add(g, flat, 7)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)
    perm = rng.permutation(7)
    np.testing.assert_array_equal(scatter_add(g[0, :, :7], perm, 7)[:, perm], g[0, :, :7])


@pytest.mark.parametrize("layer, shape", [
    (fd.Gather(-1, [[1, 1], [0, 2]]), (2, 3)),
    (fd.GatherElements(1, [[1, 0], [1, 1], [0, 0]]), (2, 2)),
    (fd.Roll([2, -1], [1, -1]), (3, 4)),
    (fd.Unfold(3, padding=1, stride=2), (2, 5, 4)),
    (fd.PixelShuffle(3), (9, 2, 1)),
    (fd.PixelUnshuffle(2), (1, 4, 2))])
def test_jacobians_and_shared_seeds(layer, shape):
    """Both modes agree with finite differences; a shared tangent (batch 1) goes through."""
    x = np.random.default_rng(13).normal(size=(2,) + shape)
    net = fd.Sequential([layer, fd.Tanh()])
    J = net.jacobian(x)
    np.testing.assert_allclose(net.jacobian(x, mode="reverse"), J, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(J, fd.numeric.jacobian_fd(net, x), rtol=1e-6, atol=1e-8)
    y, cache = layer.forward(x)
    seed = np.eye(x[0].size).reshape((1, -1) + shape)
    np.testing.assert_array_equal(layer.jvp(cache, seed)[0].reshape(-1, y[0].size).T,
                                  layer.jvp(cache, np.broadcast_to(seed, (2,) + seed.shape[1:]))
                                  [1].reshape(-1, y[0].size).T)


# -- refusals -------------------------------------------------------------------------------
def test_indices_that_depend_on_the_input_are_refused():
    nodes = [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
             helper.make_node("Gather", ["x", "i"], ["y"], axis=1)]
    with pytest.raises(ValueError, match="indices that are computed from the input"):
        fd.from_onnx(onnx_model(nodes, [3], [3, 3]))


def test_chunks_of_the_batch_axis_are_refused(tmp_path):
    class M(nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, dim=0)
            return torch.cat([a, b], dim=1)
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="fixes the batch size"):
        imported(M(), x, "torch", tmp_path)
    with pytest.raises(ValueError, match="batch"):
        imported(M(), x, "onnx", tmp_path)


def test_a_roll_of_the_flattened_tensor_is_refused():
    class M(nn.Module):
        def forward(self, x):
            return torch.roll(x, 1)
    with pytest.raises(ValueError, match="roll of the flattened tensor.*give dims"):
        fd.from_torch(M(), torch.zeros(2, 3))


@pytest.mark.parametrize("make, match", [
    (lambda: fd.Gather(0, [1]), "batch axis"),
    (lambda: fd.Gather(1, [0.5]), "nested list of ints"),
    (lambda: fd.Roll([1], [1, 2]), "one int per axis"),
    (lambda: fd.Roll([1], [0]), "batch axis"),
    (lambda: fd.PixelShuffle(0), "positive int")])
def test_bad_arguments_are_refused(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (fd.Gather(2, [3]), (2, 3), r"Gather\(dim=2, indices=\[3\]\) expected .*-size..size-1"),
    (fd.GatherElements(1, [[0]]), (2,), "one axis per per-example axis"),
    (fd.PixelShuffle(2), (6, 2, 2), "multiple of 4"),
    (fd.PixelUnshuffle(2), (1, 3, 2), "multiples of 2"),
    (fd.Unfold(4), (1, 3, 3), "dilated kernel")])
def test_inputs_that_do_not_fit_are_refused(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer.output_shape(shape)
