"""Padding of the last two axes of (N, C, H, W), as torch.nn's ``ZeroPad2d``,
``ConstantPad2d``, ``ReflectionPad2d``, ``ReplicationPad2d`` and ``CircularPad2d``.

Every mode is a map ``y[..., i, j] = x[..., r[i], c[j]]`` (or a constant where ``r[i]`` or
``c[j]`` is -1) with one index table per axis; the adjoint sums the cotangent back along
the same tables. The tables follow ``torch.nn.functional.pad``: reflect mirrors without
repeating the edge, replicate repeats it, circular wraps around.
"""
import numbers

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ..core import local
from ..core.layer import Layer
from ._util import chw

MODES = ("constant", "reflect", "replicate", "circular")


def four(padding, owner):
    """An int or (left, right, top, bottom) -> a tuple of four ints."""
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        padding = (padding,) * 4
    try:
        padding = tuple(padding)
        ok = len(padding) == 4 and all(isinstance(p, numbers.Integral) and
                                       not isinstance(p, bool) for p in padding)
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"{owner}: padding must be an int or 4 ints (left, right, top, bottom), "
                        f"got {padding!r}")
    return tuple(int(p) for p in padding)


def _table(n, before, after, mode):
    """Source index of each of the ``before + n + after`` padded positions (-1: constant)."""
    j = np.arange(-before, n + after)
    if mode == "constant":
        return np.where((j >= 0) & (j < n), j, -1)
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j >= n, 2 * (n - 1) - j, j)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    return j % n


def pad2d(x, padding, mode="constant", value=0.0):
    """Pad the last two axes of ``x`` by ``(left, right, top, bottom)`` in ``mode``."""
    left, right, top, bottom = padding
    r = _table(x.shape[-2], top, bottom, mode)
    c = _table(x.shape[-1], left, right, mode)
    out = np.full(x.shape[:-2] + (len(r), len(c)), value, dtype=x.dtype)
    rk, ck = np.flatnonzero(r >= 0), np.flatnonzero(c >= 0)
    if rk.size and ck.size:
        rows, cols = _as_slice(rk, r), _as_slice(ck, c)
        if rows is not None and cols is not None:        # a plain copy (constant mode)
            out[..., rows[0], cols[0]] = x[..., rows[1], cols[1]]
        else:
            out[..., rk[:, None], ck[None, :]] = x[..., r[rk][:, None], c[ck][None, :]]
    return out


def _as_slice(keep, table):
    """``(destination, source)`` slices when the positions ``keep`` and their sources
    ``table[keep]`` are both runs of consecutive indices, else None: a slice copy is
    many times faster than fancy indexing."""
    src = table[keep]
    if (np.diff(keep) != 1).any() or (np.diff(src) != 1).any():
        return None
    return slice(keep[0], keep[-1] + 1), slice(src[0], src[-1] + 1)


def pad2d_adjoint(g, padding, mode, hw):
    """The adjoint of :func:`pad2d` (the constant dropped): cotangents ``g`` (..., Hp, Wp)
    summed back onto the input plane of shape ``hw``."""
    left, right, top, bottom = padding
    (H, W) = hw
    r, c = _table(H, top, bottom, mode), _table(W, left, right, mode)
    rk, ck = np.flatnonzero(r >= 0), np.flatnonzero(c >= 0)
    if mode == "constant" and rk.size and ck.size:   # a slice: each input read once
        rows, cols = _as_slice(rk, r), _as_slice(ck, c)
        if rows[1] == slice(0, H) and cols[1] == slice(0, W):
            # every input entry has its cotangent: one copy, no zero fill
            return np.ascontiguousarray(g[..., rows[0], cols[0]])
        out = np.zeros(g.shape[:-2] + (H, W), dtype=g.dtype)
        out[..., rows[1], cols[1]] = g[..., rows[0], cols[0]]
        return out
    R = (r[:, None] == np.arange(H)[None, :]).astype(g.dtype)      # (Hp, H) one-hot
    C = (c[:, None] == np.arange(W)[None, :]).astype(g.dtype)      # (Wp, W)
    return np.ascontiguousarray(np.matmul(np.matmul(R.T, g), C))


class _Pad2d(Layer):
    """Padding of the last two axes; subclasses fix ``mode``."""

    linear = True
    mode = "constant"

    def __init__(self, padding):
        name = type(self).__name__
        self.padding = four(padding, name)
        if self.mode != "constant" and min(self.padding) < 0:
            raise ValueError(f"{name}: padding must be non-negative in {self.mode} mode, got "
                             f"{padding!r}")
        self.value = 0.0

    def get_config(self):
        return {"padding": list(self.padding)}

    def output_shape(self, in_shape):
        C, H, W = chw(self, in_shape)
        left, right, top, bottom = self.padding
        Ho, Wo = H + top + bottom, W + left + right
        limit = {"reflect": (H - 1, W - 1), "circular": (H, W)}.get(self.mode)
        if limit and (max(top, bottom) > limit[0] or max(left, right) > limit[1]) or \
                self.mode == "replicate" and (H == 0 or W == 0) and max(self.padding) > 0 or \
                Ho < 0 or Wo < 0:
            what = {"reflect": "smaller than", "circular": "at most"}.get(self.mode, "within")
            raise self._input_error(
                f"(N, C, H, W) with padding {what} the input size", ("N", C, H, W),
                "use less padding or a larger input")
        return (C, Ho, Wo)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        return pad2d(x, self.padding, self.mode, x.dtype.type(self.value)), x.shape[2:]

    def jvp(self, cache, dx):
        return pad2d(dx, self.padding, self.mode)

    def vjp(self, cache, gy):
        return pad2d_adjoint(gy, self.padding, self.mode, cache)


class ZeroPad2d(_Pad2d):
    """Zero padding, ``torch.nn.ZeroPad2d(padding)``: an int or (left, right, top,
    bottom); negative entries crop, as in PyTorch."""

    def window_rule(self, window):
        if min(self.padding) < 0:
            return None
        return local.shift(window, self.padding[2], self.padding[0])

    def window_jvp(self, cache, T, window, nxt, n):
        """Zero windows around the image (``T`` is channels-last, (N, H, W, ...))."""
        left, right, top, bottom = self.padding
        N, H, W = T.shape[:3]
        out = np.zeros((N, H + top + bottom, W + left + right) + T.shape[3:], T.dtype)
        out[:, top:top + H, left:left + W] = T
        return out


class ConstantPad2d(ZeroPad2d):
    """Padding with a constant, ``torch.nn.ConstantPad2d(padding, value)``. The tangent
    is zero-padded (the constant does not move with the input)."""

    def __init__(self, padding, value):
        super().__init__(padding)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"ConstantPad2d: value must be a real number, got {value!r}")
        self.value = float(value)

    def get_config(self):
        return {"padding": list(self.padding), "value": self.value}


class ReflectionPad2d(_Pad2d):
    """Mirror padding without repeating the edge, ``torch.nn.ReflectionPad2d(padding)``;
    each pad must be smaller than the input size along its axis."""

    mode = "reflect"


class ReplicationPad2d(_Pad2d):
    """Edge padding, ``torch.nn.ReplicationPad2d(padding)``."""

    mode = "replicate"


class CircularPad2d(_Pad2d):
    """Periodic padding, ``torch.nn.CircularPad2d(padding)``; each pad at most the input
    size along its axis."""

    mode = "circular"


# -- registry entries ------------------------------------------------------------------------
#: Padding of the last two axes; negative entries crop (ZeroPad2d, ConstantPad2d).
_CROPPING = {"padding": (schema.ints(4, -schema.MAX_EXTENT), schema.REQUIRED)}
_BY_PAD = {kind: "the Pad layer's rule (aten.pad / ONNX Pad) makes this layer"
           for kind in ("torch", "onnx")}
_BY_PAD_AS_PAD = {"torch": "the Pad layer's rule (aten.pad) makes it for cropping, and a "
                           "Pad layer otherwise",
                  "onnx": "ONNX Pad with a constant imports as the Pad layer"}


def zero_pad_to_torch(layer):
    """``torch.nn.ZeroPad2d`` with the layer's padding (ZeroPad2d and Pad2d export)."""
    from torch import nn
    return nn.ZeroPad2d(tuple(layer.padding))


def _constant_pad_to_torch(layer):
    from torch import nn
    return nn.ConstantPad2d(tuple(layer.padding), layer.value)


register_layer(ZeroPad2d, schema=schema.LayerSchema(_CROPPING), to_torch=zero_pad_to_torch,
               example=Example({"padding": [1, 0, 2, -1]}, (2, 4, 5)), absent=_BY_PAD_AS_PAD)
register_layer(ConstantPad2d,
               schema=schema.LayerSchema({**_CROPPING, "value": (schema.ANY_REAL,
                                                                 schema.REQUIRED)}),
               to_torch=_constant_pad_to_torch,
               example=Example({"padding": [1, 2, 0, 1], "value": 0.5}, (2, 4, 5)),
               absent=_BY_PAD_AS_PAD)
for _cls in (ReflectionPad2d, ReplicationPad2d, CircularPad2d):
    register_layer(_cls, schema=schema.LayerSchema({"padding": (schema.ints(4, 0),
                                                                schema.REQUIRED)}),
                   to_torch=exchange.same_torch_module,
                   example=Example({"padding": [1, 2, 2, 0]}, (2, 4, 5)), absent=_BY_PAD)
