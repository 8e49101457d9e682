"""Upsampling of the last two axes, ``torch.nn.Upsample`` (``F.interpolate``): nearest
neighbour or bilinear. Both are linear maps of each channel, ``Y = A_h X A_w^T`` with one
interpolation matrix per axis, so the tangents and cotangents go through the same two
small products."""
import numbers

import numpy as np

from .. import schema
from ..core.layer import Layer
from ..registry import Example, register_layer
from . import exchange
from ._util import chw

MODES = ("nearest", "bilinear")


def _source(n_in, n_out, mode, align_corners, factor):
    """Source coordinate of each output index along one axis, as PyTorch computes it
    (``aten/src/ATen/native/UpSample.h``): the scale is ``1 / scale_factor`` when a factor
    was given, else ``n_in / n_out``; with ``align_corners`` the corners map to corners."""
    o = np.arange(n_out, dtype=np.float64)
    if align_corners:
        return o * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    scale = 1.0 / factor if factor else n_in / n_out
    if mode == "nearest":
        return np.minimum(np.floor(o * scale), n_in - 1)
    return np.maximum((o + 0.5) * scale - 0.5, 0.0)


def interpolation(n_in, n_out, mode, align_corners=False, factor=None):
    """The (n_out, n_in) matrix of one axis."""
    src = _source(n_in, n_out, mode, align_corners, factor)
    A = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if mode == "nearest":
        A[rows, src.astype(np.int64)] = 1.0
        return A
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    np.add.at(A, (rows, i0), 1.0 - w1)
    np.add.at(A, (rows, i1), w1)
    return A


class Upsample(Layer):
    """``torch.nn.Upsample(size=None, scale_factor=None, mode="nearest",
    align_corners=None)`` on ``(N, C, H, W)``: one of ``size`` (an int or (H, W)) and
    ``scale_factor`` (a number or a pair); ``mode`` ``"nearest"`` or ``"bilinear"``
    (``align_corners`` only for bilinear, default False, as in PyTorch)."""

    linear = True

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        if mode not in MODES:
            raise ValueError(f"Upsample: mode must be one of {list(MODES)}, got {mode!r}")
        if align_corners is not None and mode == "nearest":
            raise ValueError("Upsample: align_corners is for mode='bilinear' only")
        self.size = None if size is None else _pair(size, "size", int)
        self.scale_factor = None if scale_factor is None else \
            _pair(scale_factor, "scale_factor", float)
        self.mode, self.align_corners = mode, align_corners

    def get_config(self):
        config = {"mode": self.mode}
        if self.size is not None:
            config["size"] = list(self.size)
        else:
            config["scale_factor"] = list(self.scale_factor)
        if self.align_corners is not None:
            config["align_corners"] = self.align_corners
        return config

    def output_shape(self, in_shape):
        C, H, W = chw(self, in_shape)
        if self.size is not None:
            return (C,) + tuple(self.size)
        return (C, int(np.floor(H * self.scale_factor[0])),
                int(np.floor(W * self.scale_factor[1])))

    def _matrices(self, H, W, dtype):
        _, Ho, Wo = self.output_shape((1, H, W))
        factors = self.scale_factor or (None, None)
        return tuple(interpolation(n, m, self.mode, bool(self.align_corners), f).astype(dtype)
                     for n, m, f in ((H, Ho, factors[0]), (W, Wo, factors[1])))

    def _apply(self, v, Ah, Aw):
        return np.ascontiguousarray(np.einsum("hH,...HW,wW->...hw", Ah, v, Aw, optimize=True))

    def forward(self, x):
        Ah, Aw = self._matrices(x.shape[2], x.shape[3], x.dtype)
        return self._apply(x, Ah, Aw), (Ah, Aw)

    def jvp(self, cache, dx):
        return self._apply(dx, *cache)

    def vjp(self, cache, gy):
        Ah, Aw = cache
        return self._apply(gy, Ah.T, Aw.T)


def _pair(v, name, kind):
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        v = (v, v)
    try:
        a, b = (kind(u) for u in v)
    except (TypeError, ValueError):
        raise TypeError(f"Upsample: {name} must be a number or a pair, got {v!r}") from None
    if not (a > 0 and b > 0 and np.isfinite(a) and np.isfinite(b)):
        raise ValueError(f"Upsample: {name} must be positive, got {v!r}")
    return (a, b)


# -- registry entry --------------------------------------------------------------------------
def _from_torch(mode):
    def rule(ctx, a):
        x = a["input"]
        factors = a.get("scale_factors") or ([a["scales_h"], a["scales_w"]]
                                             if a.get("scales_h") is not None else None)
        align = bool(a["align_corners"]) if mode == "bilinear" else None
        if factors:
            layer = ctx.layer("Upsample", scale_factor=[float(f) for f in factors], mode=mode,
                              align_corners=align)
        else:
            layer = ctx.layer("Upsample", size=list(ctx.out_shape()[1:]), mode=mode,
                              align_corners=align)
        return ctx.emit(layer, x)
    return rule


def _decode(v):
    return v.decode() if isinstance(v, bytes) else v


def _resize_from_onnx(imp, node, a):
    """ONNX Resize as PyTorch exports nearest (asymmetric, floor) and bilinear (linear,
    pytorch_half_pixel or align_corners) upsampling."""
    x = node.input[0]
    mode = _decode(a.get("mode", b"nearest"))
    transform = _decode(a.get("coordinate_transformation_mode", b"half_pixel"))
    known = {("nearest", "asymmetric"): ("nearest", None),
             ("linear", "pytorch_half_pixel"): ("bilinear", False),
             ("linear", "half_pixel"): ("bilinear", False),
             ("linear", "align_corners"): ("bilinear", True)}
    if (mode, transform) not in known or \
            mode == "nearest" and _decode(a.get("nearest_mode", b"round_prefer_floor")) != "floor":
        imp.fail(f"mode={mode!r} with coordinate_transformation_mode={transform!r}", "mode",
                 "export nearest or bilinear upsampling from PyTorch")
    sizes = node.input[3] if len(node.input) > 3 and node.input[3] else None
    if sizes is not None:           # a shape computation (batch unknown) or a constant
        sizes = imp.shapes[sizes] if sizes in imp.shapes else \
            list(np.asarray(imp.const(sizes)).reshape(-1))
        kwargs = {"size": [int(s) for s in sizes[-2:]]}
    else:
        scales = [float(s) for s in np.asarray(imp.const(node.input[2])).reshape(-1)]
        if scales[:2] != [1.0, 1.0]:
            imp.fail(f"scales {scales} on the batch or channel axis", "scales")
        kwargs = {"scale_factor": scales[2:]}
    layer = imp.layer("Upsample", "mode", mode=known[mode, transform][0],
                      align_corners=known[mode, transform][1], **kwargs)
    exchange.onnx_output(imp, node, imp.emit(layer, x))


def _size_or_factor(v, field):
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != 2 or not all(
            isinstance(u, numbers.Real) and not isinstance(u, bool) and 0 < u <= 1 << 16
            for u in v):
        raise schema.SchemaError(f"field {field!r} must be a list of two positive numbers "
                                 f"up to 65536, got {schema.describe(v)}")
    return list(v)


def _one_of(c):
    if (c["size"] is None) == (c["scale_factor"] is None):
        raise schema.SchemaError("fields 'size' and 'scale_factor': give exactly one")


register_layer(
    Upsample,
    schema=schema.LayerSchema({"size": (_size_or_factor, None),
                               "scale_factor": (_size_or_factor, None),
                               "mode": (schema.choice(*MODES), "nearest"),
                               "align_corners": (schema.optional(schema.boolean), None)},
                              relations=_one_of),
    torch={"upsample_nearest2d": _from_torch("nearest"),
           "upsample_bilinear2d": _from_torch("bilinear")},
    onnx={"Resize": _resize_from_onnx},
    to_torch=exchange.same_torch_module,
    example=Example({"scale_factor": [2, 3], "mode": "bilinear"}, (2, 3, 4)))
