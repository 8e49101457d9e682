"""Adaptive pooling (``torch.nn.AdaptiveAvgPool2d``, ``AdaptiveMaxPool2d``): a fixed
output size; output cell ``i`` of an axis of length ``n`` pools input rows
``floor(i*n/o) <= r < ceil((i+1)*n/o)`` (PyTorch's start and end indices), so windows
may overlap and differ in size when ``o`` does not divide ``n``."""
import numbers

import numpy as np

from ..core.layer import Layer, fold, unfold
from ..kernels import pool as K
from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ._util import chw


def _ranges(n, o):
    i = np.arange(o)
    return (i * n) // o, -((-(i + 1) * n) // o)


def _output_size(value, owner):
    if value is None or isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        value = tuple(value)
        ok = len(value) == 2 and all(v is None or isinstance(v, numbers.Integral) and
                                     not isinstance(v, bool) and v >= 0 for v in value)
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"{owner}: output_size must be an int, None or a pair of them (ints "
                        f">= 0), got {value!r}")
    return tuple(None if v is None else int(v) for v in value)


class _Adaptive(Layer):
    def __init__(self, output_size):
        self.output_size = _output_size(output_size, type(self).__name__)

    def get_config(self):
        return {"output_size": list(self.output_size)}

    def output_shape(self, in_shape):
        C, H, W = chw(self, in_shape)
        Ho, Wo = (n if o is None else o for n, o in zip((H, W), self.output_size))
        if (H == 0 and Ho) or (W == 0 and Wo):
            raise self._input_error("(N, C, H, W) with H, W > 0", ("N", C, H, W),
                                    "adaptive pooling needs a non-empty image")
        return (C, Ho, Wo)


class AdaptiveAvgPool2d(_Adaptive):
    r"""Mean over each adaptive window: :math:`y = A_h\, x\, A_w^T` with averaging matrices
    :math:`A`. Linear; the VJP is :math:`A_h^T g A_w`."""

    linear = True

    def _mats(self, in_shape, dtype):
        _, Ho, Wo = self.output_shape(in_shape)
        mats = []
        for n, o in zip(in_shape[1:], (Ho, Wo)):
            start, end = _ranges(n, o)
            j = np.arange(n)
            inside = (j[None] >= start[:, None]) & (j[None] < end[:, None])
            mats.append((inside / (end - start)[:, None]).astype(dtype))
        return mats

    def _apply(self, x):
        Ah, Aw = self._mats(x.shape[1:], x.dtype)
        return np.matmul(np.matmul(Ah, x), Aw.T)

    def forward(self, x):
        return self._apply(x), x.shape[1:]

    def jvp(self, cache, dx):
        return unfold(self._apply(fold(dx)), *dx.shape[:2])

    def vjp(self, cache, gy):
        Ah, Aw = self._mats(cache, gy.dtype)
        return np.ascontiguousarray(np.matmul(np.matmul(Ah.T, gy), Aw))


class AdaptiveMaxPool2d(_Adaptive):
    """Maximum over each adaptive window. ``return_indices=True`` is refused (one output).

    Kink convention (PyTorch's): among tied maxima the first in row-major window order
    takes the whole derivative. The forward pass caches the argmax."""

    uses_kernels = True

    def __init__(self, output_size, return_indices=False):
        super().__init__(output_size)
        if return_indices:
            raise ValueError("AdaptiveMaxPool2d: return_indices=True is not supported (a layer "
                             "has one output); leave it False")

    def _windows(self, in_shape):
        _, Ho, Wo = self.output_shape(in_shape)
        (hs, he), (ws, we) = _ranges(in_shape[1], Ho), _ranges(in_shape[2], Wo)
        for i in range(Ho):
            for j in range(Wo):
                yield i * Wo + j, hs[i], he[i], ws[j], we[j]

    def forward(self, x):
        C, Ho, Wo = self.output_shape(x.shape[1:])
        M, _, H, W = x.shape
        y = np.empty((M, C, Ho * Wo), x.dtype)
        argmax = np.empty((M, C, Ho * Wo), np.int64)
        for p, h0, h1, w0, w1 in self._windows(x.shape[1:]):
            win = x[:, :, h0:h1, w0:w1].reshape(M, C, (h1 - h0) * (w1 - w0))
            a = np.argmax(win, axis=2)            # first maximum; a NaN wins
            y[:, :, p] = np.take_along_axis(win, a[..., None], axis=2)[..., 0]
            argmax[:, :, p] = (h0 + a // (w1 - w0)) * W + w0 + a % (w1 - w0)
        return y.reshape(M, C, Ho, Wo), (argmax, x.shape[1:])

    def jvp(self, cache, dx):
        argmax, (C, H, W) = cache
        _, Ho, Wo = self.output_shape((C, H, W))
        N, D = dx.shape[:2]
        return K.gather(dx.reshape(N, D, C, H * W), argmax).reshape(N, D, C, Ho, Wo)

    def vjp(self, cache, gy):
        argmax, (C, H, W) = cache
        N, Kc = gy.shape[:2]
        gx = K.scatter(gy.reshape(N, Kc, C, argmax.shape[2]), argmax, H * W)
        return gx.reshape(N, Kc, C, H, W)

    def jvp_grad(self, cache, x, dx, gdy):
        """Zero, as :meth:`MaxPool2d.jvp_grad`: the JVP selects entries of ``dx``."""
        return None, {}

    def kinks(self, x, tol):
        """Windows whose two largest values are within ``tol`` (ties)."""
        count = 0
        for _, h0, h1, w0, w1 in self._windows(x.shape[1:]):
            win = x[:, :, h0:h1, w0:w1].reshape(x.shape[0], x.shape[1], (h1 - h0) * (w1 - w0))
            if win.shape[2] > 1:
                top2 = -np.partition(-win, 1, axis=2)[:, :, :2]
                count += int(np.count_nonzero(np.abs(top2[..., 0] - top2[..., 1]) <= tol))
        return count


# -- registry entries ------------------------------------------------------------------------
_SCHEMA = schema.LayerSchema({"output_size": (schema.output_size, schema.REQUIRED)})


def _avg_from_torch(ctx, a):
    x = a["self"]
    (_, h, w), (oh, ow) = ctx.shape(x), exchange.ints(a["output_size"])
    if h % oh == 0 and w % ow == 0:  # equal windows: an ordinary average pooling
        return ctx.emit(ctx.layer("AvgPool2d", kernel_size=(h // oh, w // ow)), x)
    return ctx.emit(ctx.layer("AdaptiveAvgPool2d", output_size=(oh, ow)), x)


def _max_from_torch(ctx, a):
    size = exchange.ints(a["output_size"])
    return ctx.emit(ctx.layer("AdaptiveMaxPool2d", output_size=size), a["self"])


def _global_max_from_onnx(imp, node, a):
    """GlobalMaxPool: an AdaptiveMaxPool2d to 1 x 1 over (C, H, W), else the Amax over the
    spatial axes."""
    exchange.onnx_global_pool(imp, node, "Amax",
                              lambda shape: imp.layer("AdaptiveMaxPool2d", output_size=(1, 1)))


register_layer(AdaptiveAvgPool2d, schema=_SCHEMA,
               torch={"adaptive_avg_pool2d": _avg_from_torch},
               to_torch=exchange.same_torch_module,
               example=Example({"output_size": [2, 3]}, (2, 5, 7)),
               absent={"onnx": "torch.onnx writes unequal windows as several operators, "
                               "which from_onnx does not read yet; equal windows (and the "
                               "global average) import as AvgPool2d"})
register_layer(AdaptiveMaxPool2d, schema=_SCHEMA,
               torch={"adaptive_max_pool2d": exchange.returns_tuple(_max_from_torch)},
               onnx={"GlobalMaxPool": _global_max_from_onnx},
               to_torch=exchange.same_torch_module,
               example=Example({"output_size": [1, 1]}, (2, 5, 7), values="distinct"))
