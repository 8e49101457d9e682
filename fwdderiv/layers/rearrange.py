"""Layers that move entries without changing them: ``torch.roll`` (a Swin transformer's
shifted windows), ``nn.Unfold`` (sliding blocks as columns, ``aten.im2col``), and
``nn.PixelShuffle`` / ``nn.PixelUnshuffle`` (channels to space and back; ONNX
``DepthToSpace`` / ``SpaceToDepth``).

Each is a linear map that copies entries (Unfold may copy one entry to several columns,
or to none): the tangent goes through the layer's own forward map, and the cotangent
through its transpose (a roll back, a column-to-image sum, the inverse shuffle).
"""
import numbers

import numpy as np

from .. import schema
from ..core.layer import Layer
from ..registry import Example, register_layer
from . import exchange
from ._util import chw, pair, positive_int


def _per_example_axes(dims, owner):
    try:
        dims = [int(d) for d in dims]
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: dims must be a sequence of ints, got {dims!r}") from None
    if not dims or 0 in dims or len(set(dims)) != len(dims):
        raise ValueError(f"{owner}: dims must be distinct per-example axes (the batch axis "
                         f"is 0; a roll of the flattened batch is not a map of each example), "
                         f"got {dims}")
    return dims


class Roll(Layer):
    r"""``torch.roll(x, shifts, dims)``: entries move ``shifts[i]`` places along axis
    ``dims[i]`` (the batch axis is 0), those pushed past the end coming back at the start.
    Linear and a permutation: :math:`dy = \mathrm{roll}(dx)`, and the cotangent rolls
    back, :math:`g_x = \mathrm{roll}(g_y, -\text{shifts})`."""

    linear = True

    def __init__(self, shifts, dims):
        shifts = [shifts] if isinstance(shifts, numbers.Integral) else list(shifts)
        dims = [dims] if isinstance(dims, numbers.Integral) else dims
        self.dims = _per_example_axes(dims, "Roll")
        if len(shifts) != len(self.dims) or not all(
                isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shifts):
            raise ValueError(f"Roll: shifts must hold one int per axis of dims {self.dims}, "
                             f"got {shifts!r}")
        self.shifts = [int(s) for s in shifts]

    def get_config(self):
        return {"shifts": self.shifts, "dims": self.dims}

    def _axes(self, in_shape):
        nd = len(in_shape)
        if any(not -nd <= d <= nd for d in self.dims):
            raise self._input_error(f"an input with axes {self.dims}", ("N",) + tuple(in_shape),
                                    f"roll axes 1..{nd} (or -1..-{nd})")
        return [d % (nd + 1) for d in self.dims]

    def output_shape(self, in_shape):
        self._axes(in_shape)
        return tuple(in_shape)

    def forward(self, x):
        return np.roll(x, self.shifts, axis=self._axes(x.shape[1:])), x.shape[1:]

    def jvp(self, cache, dx):
        return np.roll(dx, self.shifts, axis=[a + 1 for a in self._axes(cache)])

    def vjp(self, cache, gy):
        return np.roll(gy, [-s for s in self.shifts], axis=[a + 1 for a in self._axes(cache)])


class Unfold(Layer):
    r"""``torch.nn.Unfold(kernel_size, dilation=1, padding=0, stride=1)`` on ``(N, C, H,
    W)``: every sliding block of the zero-padded input as a column, output ``(N, C k_h k_w,
    L)`` with the rows in (channel, kernel row, kernel column) order and the ``L`` blocks
    row-major, as PyTorch's ``im2col``. Linear: the tangent is unfolded the same way, and
    the cotangent folded back (each column entry added to the input entry it copied;
    entries that no block covers get zero)."""

    linear = True

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        self.kernel_size = pair(kernel_size, "kernel_size", "Unfold")
        self.dilation = pair(dilation, "dilation", "Unfold")
        self.padding = pair(padding, "padding", "Unfold", minimum=0)
        self.stride = pair(stride, "stride", "Unfold")

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "dilation": list(self.dilation),
                "padding": list(self.padding), "stride": list(self.stride)}

    def _blocks(self, in_shape):
        """The number of block positions along H and W."""
        C, H, W = chw(self, in_shape)
        out = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in zip(
            (H, W), self.padding, self.dilation, self.kernel_size, self.stride)]
        if min(out) < 1:
            raise self._input_error(f"(N, C, H, W) with a padded H, W of at least the "
                                    f"dilated kernel", ("N",) + tuple(in_shape),
                                    "use a larger input or a smaller kernel")
        return out

    def output_shape(self, in_shape):
        oh, ow = self._blocks(in_shape)
        return (in_shape[0] * self.kernel_size[0] * self.kernel_size[1], oh * ow)

    def _columns(self, v, lead):
        """``v`` of shape ``(*lead, C, H, W)`` -> ``(*lead, C kh kw, L)``."""
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (self.kernel_size, self.dilation,
                                                  self.padding, self.stride)
        oh, ow = self._blocks(v.shape[lead:])
        v = np.pad(v, [(0, 0)] * (v.ndim - 2) + [(ph, ph), (pw, pw)])
        win = np.lib.stride_tricks.sliding_window_view(
            v, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(-2, -1))
        win = win[..., :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw, ::dh, ::dw]
        nd = win.ndim                   # (*lead, C, oh, ow, kh, kw) -> (*lead, C, kh, kw, oh, ow)
        win = win.transpose(tuple(range(nd - 4)) + (nd - 2, nd - 1, nd - 4, nd - 3))
        return np.ascontiguousarray(win).reshape(v.shape[:lead] + (-1, oh * ow))

    def forward(self, x):
        return self._columns(x, 1), x.shape[1:]

    def jvp(self, cache, dx):
        return self._columns(dx, 2)

    def vjp(self, cache, gy):
        C, H, W = cache
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (self.kernel_size, self.dilation,
                                                  self.padding, self.stride)
        oh, ow = self._blocks(cache)
        g = gy.reshape(gy.shape[:2] + (C, kh, kw, oh, ow))
        gx = np.zeros(gy.shape[:2] + (C, H + 2 * ph, W + 2 * pw), gy.dtype)
        for i in range(kh):
            for j in range(kw):
                gx[..., i * dh:i * dh + sh * (oh - 1) + 1:sh,
                   j * dw:j * dw + sw * (ow - 1) + 1:sw] += g[:, :, :, i, j]
        return np.ascontiguousarray(gx[..., ph:ph + H, pw:pw + W])


def _shuffle(v, r, lead):
    """``(*lead, C r r, H, W)`` -> ``(*lead, C, H r, W r)``, PyTorch's pixel shuffle."""
    c, h, w = v.shape[lead:]
    v = v.reshape(v.shape[:lead] + (c // (r * r), r, r, h, w))
    order = tuple(range(lead)) + tuple(lead + k for k in (0, 3, 1, 4, 2))
    return np.ascontiguousarray(v.transpose(order)).reshape(
        v.shape[:lead] + (c // (r * r), h * r, w * r))


def _unshuffle(v, r, lead):
    """``(*lead, C, H r, W r)`` -> ``(*lead, C r r, H, W)``, the inverse of :func:`_shuffle`."""
    c, h, w = v.shape[lead:]
    v = v.reshape(v.shape[:lead] + (c, h // r, r, w // r, r))
    order = tuple(range(lead)) + tuple(lead + k for k in (0, 2, 4, 1, 3))
    return np.ascontiguousarray(v.transpose(order)).reshape(
        v.shape[:lead] + (c * r * r, h // r, w // r))


class PixelShuffle(Layer):
    r"""``torch.nn.PixelShuffle(upscale_factor)``: ``(N, C r^2, H, W)`` -> ``(N, C, H r,
    W r)``, output ``(c, h r + i, w r + j)`` read from input ``(c r^2 + i r + j, h, w)``
    (super-resolution networks; ONNX ``DepthToSpace`` in CRD mode). A permutation: the
    tangent is shuffled, the cotangent unshuffled."""

    linear = True

    def __init__(self, upscale_factor):
        self.upscale_factor = positive_int(upscale_factor, "upscale_factor", "PixelShuffle")

    def get_config(self):
        return {"upscale_factor": self.upscale_factor}

    def output_shape(self, in_shape):
        C, H, W = chw(self, in_shape)
        r = self.upscale_factor
        if C % (r * r):
            raise self._input_error(f"(N, C, H, W) with C a multiple of {r * r}",
                                    ("N",) + tuple(in_shape),
                                    "give upscale_factor**2 times the output channels")
        return (C // (r * r), H * r, W * r)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        return _shuffle(x, self.upscale_factor, 1), None

    def jvp(self, cache, dx):
        return _shuffle(dx, self.upscale_factor, 2)

    def vjp(self, cache, gy):
        return _unshuffle(gy, self.upscale_factor, 2)


class PixelUnshuffle(Layer):
    r"""``torch.nn.PixelUnshuffle(downscale_factor)``: ``(N, C, H r, W r)`` -> ``(N, C
    r^2, H, W)``, the inverse of :class:`PixelShuffle`. A permutation: the tangent is
    unshuffled, the cotangent shuffled."""

    linear = True

    def __init__(self, downscale_factor):
        self.downscale_factor = positive_int(downscale_factor, "downscale_factor",
                                             "PixelUnshuffle")

    def get_config(self):
        return {"downscale_factor": self.downscale_factor}

    def output_shape(self, in_shape):
        C, H, W = chw(self, in_shape)
        r = self.downscale_factor
        if H % r or W % r:
            raise self._input_error(f"(N, C, H, W) with H and W multiples of {r}",
                                    ("N",) + tuple(in_shape), "crop or pad the input")
        return (C * r * r, H // r, W // r)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        return _unshuffle(x, self.downscale_factor, 1), None

    def jvp(self, cache, dx):
        return _unshuffle(dx, self.downscale_factor, 2)

    def vjp(self, cache, gy):
        return _shuffle(gy, self.downscale_factor, 2)


# -- import rules ---------------------------------------------------------------------------
def _roll_from_torch(ctx, a):
    x, nd = a["self"], len(ctx.shape(a["self"])) + 1
    dims, shifts = exchange.ints(a.get("dims") or [], 1), exchange.ints(a["shifts"], 1)
    if not dims:
        ctx.fail("a roll of the flattened tensor (no dims), which mixes the examples",
                 "give dims, e.g. torch.roll(x, shifts, dims=(2, 3))")
    if any(d % nd == 0 for d in dims):
        ctx.fail("a roll along the batch axis", "roll per-example axes only")
    return ctx.emit(ctx.layer("Roll", shifts=shifts, dims=[d % nd for d in dims]), x)


def _im2col_from_torch(ctx, a):
    return ctx.emit(ctx.layer("Unfold", kernel_size=exchange.ints(a["kernel_size"]),
                              dilation=exchange.ints(a["dilation"]),
                              padding=exchange.ints(a["padding"]),
                              stride=exchange.ints(a["stride"])), a["self"])


def _rearranged(imp, node, x, steps):
    """Emit Reshape/Permute ``steps`` ((layer name, kwargs), ...) in a chain from ``x``."""
    for k, (name, kwargs) in enumerate(steps):
        last = k == len(steps) - 1
        x = imp.emit(imp.layer(name, **kwargs), x, None if last else f"{node.output[0]}_{k}")
    exchange.onnx_output(imp, node, x)


def _depth_to_space_from_onnx(imp, node, a):
    x, r = node.input[0], int(a["blocksize"])
    mode = a.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "CRD":
        layer = imp.layer("PixelShuffle", "blocksize", upscale_factor=r)
        return exchange.onnx_output(imp, node, imp.emit(layer, x))
    C, H, W = imp.shape(x)
    if C % (r * r):                              # DCR: channels ordered (i, j, c)
        imp.fail(f"{C} channels for blocksize {r}", "blocksize")
    _rearranged(imp, node, x, [("Reshape", {"shape": [r, r, C // (r * r), H, W]}),
                               ("Permute", {"dims": [0, 3, 4, 1, 5, 2]}),
                               ("Reshape", {"shape": [C // (r * r), H * r, W * r]})])


def _space_to_depth_from_onnx(imp, node, a):
    x, r = node.input[0], int(a["blocksize"])
    C, H, W = imp.shape(x)
    if H % r or W % r:
        imp.fail(f"a {H}x{W} input for blocksize {r}", "blocksize")
    _rearranged(imp, node, x, [("Reshape", {"shape": [C, H // r, r, W // r, r]}),
                               ("Permute", {"dims": [0, 3, 5, 1, 2, 4]}),
                               ("Reshape", {"shape": [C * r * r, H // r, W // r]})])


def _roll_to_torch(layer):
    import torch
    return exchange.torch_function_module(
        lambda x: torch.roll(x, tuple(layer.shifts), tuple(layer.dims)), "Roll")


def _axis_list(v, field):
    return schema.int_list(minimum=-schema.MAX_AXES, maximum=schema.MAX_AXES, min_len=1,
                           nonzero=True, distinct=True)(v, field)


def _roll_relations(c):
    if len(c["shifts"]) != len(c["dims"]):
        raise schema.SchemaError(f"fields 'shifts' and 'dims' must have one entry per axis, "
                                 f"got {c['shifts']} and {c['dims']}")


register_layer(Roll, schema=schema.LayerSchema(
                   {"shifts": (schema.int_list(minimum=-2 ** 40, maximum=2 ** 40, min_len=1),
                               schema.REQUIRED),
                    "dims": (_axis_list, schema.REQUIRED)}, relations=_roll_relations),
               torch={"roll": _roll_from_torch}, to_torch=_roll_to_torch,
               example=Example({"shifts": [1, -2], "dims": [1, 3]}, (3, 2, 4)),
               absent={"onnx": "ONNX has no Roll: torch.onnx writes torch.roll as Slice and "
                               "Concat nodes, which import as those layers"})
register_layer(Unfold, schema=schema.LayerSchema(
                   {"kernel_size": (schema.ints(2, 1), schema.REQUIRED),
                    "dilation": (schema.ints(2, 1), 1), "padding": (schema.ints(2, 0), 0),
                    "stride": (schema.ints(2, 1), 1)}),
               torch={"im2col": _im2col_from_torch}, to_torch=exchange.same_torch_module,
               example=Example({"kernel_size": [2, 3], "dilation": [2, 1], "padding": [1, 0],
                                "stride": [1, 2]}, (2, 4, 6)),
               absent={"onnx": "ONNX has no Im2Col: torch.onnx writes nn.Unfold as Pad, "
                               "Gather, Transpose and Reshape, which import as those layers"})
register_layer(PixelShuffle, schema=schema.LayerSchema(
                   {"upscale_factor": (schema.integer(1), schema.REQUIRED)}),
               torch={"pixel_shuffle": exchange.torch_elementwise(
                   "PixelShuffle", upscale_factor="upscale_factor")},
               onnx={"DepthToSpace": _depth_to_space_from_onnx},
               to_torch=exchange.same_torch_module,
               example=Example({"upscale_factor": 2}, (8, 2, 3)))
register_layer(PixelUnshuffle, schema=schema.LayerSchema(
                   {"downscale_factor": (schema.integer(1), schema.REQUIRED)}),
               torch={"pixel_unshuffle": exchange.torch_elementwise(
                   "PixelUnshuffle", downscale_factor="downscale_factor")},
               onnx={"SpaceToDepth": _space_to_depth_from_onnx},
               to_torch=exchange.same_torch_module,
               example=Example({"downscale_factor": 2}, (2, 4, 6)))
