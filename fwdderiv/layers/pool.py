"""Max and average pooling over the last two axes of (N, C, H, W)."""
import numpy as np

from ..core import local
from ..core.layer import Layer, fold, unfold
from ..kernels import pool as K
from ..kernels.conv import col2im, im2col, out_size
from ..kernels.local import maxpool_window
from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ._util import chw, pair
from .padding import pad2d


def pool_size(size, k, s, p, d, ceil_mode):
    """Output length of a pooling window, PyTorch's rule: with ``ceil_mode`` the division
    rounds up, but the last window must start inside the input or the left padding."""
    if not ceil_mode:
        return out_size(size, k, s, p, d)
    out = -(-(size + 2 * p - d * (k - 1) - 1) // s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    return out


class _Pool2d(Layer):
    uses_kernels = True
    dilation = (1, 1)
    ceil_mode = False

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, minimum=0)
        if not isinstance(ceil_mode, bool):
            raise TypeError(f"{name}: ceil_mode must be True or False, got {ceil_mode!r}")
        self.ceil_mode = ceil_mode

    def _check_padding(self):
        span = [d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation)]
        if any(2 * p > k for p, k in zip(self.padding, span)):
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at most "
                             f"half the (dilated) kernel size {tuple(span)} (as in PyTorch)")

    def get_config(self):
        config = {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                  "padding": list(self.padding)}
        if self.ceil_mode:
            config["ceil_mode"] = True
        return config

    def __repr__(self):
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        extra = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        extra += f", padding={self.padding}" if self.padding != (0, 0) else ""
        extra += "".join(f", {k}={v!r}" for k, v in self.get_config().items()
                         if k not in ("kernel_size", "stride", "padding"))
        return f"{type(self).__name__}({k}{extra})"

    def output_shape(self, in_shape):
        C, H, W = chw(self, in_shape)
        Ho, Wo = (pool_size(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in zip(
            (H, W), self.kernel_size, self.stride, self.padding, self.dilation))
        if Ho < 1 or Wo < 1:
            raise self._input_error(f"(N, C, H, W) with H, W >= kernel {self.kernel_size}",
                                    ("N",) + tuple(in_shape), "use a smaller pooling window")
        return (C, Ho, Wo)

    def _extra(self, in_shape):
        """Rows and columns past the bottom/right padding that ceil_mode's last window
        reaches (0 without ceil_mode)."""
        _, Ho, Wo = self.output_shape(in_shape)
        return tuple(max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for o, n, k, s, p, d in
                     zip((Ho, Wo), in_shape[1:], self.kernel_size, self.stride, self.padding,
                         self.dilation))

    def _plain(self):
        """True with PyTorch's default options, where the windowed rule applies."""
        return self.dilation == (1, 1) and not self.ceil_mode

    def window_rule(self, window):
        if not self._plain():
            return None
        return local.grow(window, self.kernel_size, self.stride, self.padding)


class MaxPool2d(_Pool2d):
    """Maximum over each window; ``stride`` defaults to ``kernel_size``.

    Arguments as ``torch.nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1,
    return_indices=False, ceil_mode=False)``; ``return_indices=True`` is refused (a layer
    here has one output). Dilation or ceil_mode decline the windowed forward rule.

    The derivative of a window is the derivative of its maximum. Kink convention
    (PyTorch's): among tied maxima the first in row-major window order takes the whole
    derivative. A NaN in a window is its maximum, so NaN propagates. The forward pass
    caches the argmax indices.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = pair(dilation, "dilation", "MaxPool2d")
        if return_indices:
            raise ValueError("MaxPool2d: return_indices=True is not supported (a layer has one "
                             "output); leave it False")
        self._check_padding()

    def get_config(self):
        config = super().get_config()
        if self.dilation != (1, 1):
            config["dilation"] = list(self.dilation)
        return config

    def window_jvp(self, cache, T, window, nxt, n):
        argmax, (C, H, W) = cache
        _, Ho, Wo = self.output_shape((C, H, W))
        return maxpool_window(T, argmax, (H, W), (Ho, Wo), self, window, nxt.size)

    def kinks(self, x, tol):
        """Windows whose two largest values are within ``tol`` (ties)."""
        M, C, H, W = x.shape
        eh, ew = self._extra((C, H, W))
        if eh or ew:
            x = np.concatenate([x, np.full((M, C, eh, W), -np.inf)], axis=2)
            x = np.concatenate([x, np.full((M, C, H + eh, ew), -np.inf)], axis=3)
            H, W = H + eh, W + ew
        cols = im2col(x.reshape(M * C, 1, H, W), self.kernel_size, self.stride,
                      self.padding, self.dilation, fill=-np.inf)
        if cols.shape[2] < 2:
            return 0
        top2 = -np.partition(-cols, 1, axis=2)[:, :, :2]
        return int(np.count_nonzero(np.abs(top2[:, :, 0] - top2[:, :, 1]) <= tol))

    def forward(self, x):
        self.output_shape(x.shape[1:])
        _, Ho, Wo = self.output_shape(x.shape[1:])
        y, argmax = K.maxpool_forward(x, self.kernel_size, self.stride, self.padding,
                                      self.dilation, (Ho, Wo))
        return y, (argmax, x.shape[1:])

    def jvp(self, cache, dx):
        argmax, (C, H, W) = cache
        N, D = dx.shape[:2]
        _, Ho, Wo = self.output_shape((C, H, W))
        dy = K.gather(dx.reshape(N, D, C, H * W), argmax)
        return dy.reshape(N, D, C, Ho, Wo)

    def vjp(self, cache, gy):
        argmax, (C, H, W) = cache
        N, Kc = gy.shape[:2]
        gx = K.scatter(gy.reshape(N, Kc, C, argmax.shape[2]), argmax, H * W)
        return gx.reshape(N, Kc, C, H, W)

    def jvp_grad(self, cache, x, dx, gdy):
        """Zero: the JVP selects entries of ``dx`` and does not change with ``x`` except at
        ties, where it is not differentiable (PyTorch's double backward also gives 0)."""
        return None, {}


class AvgPool2d(_Pool2d):
    """Mean over each window. Linear, so the JVP is the forward map of the tangent.

    Arguments as ``torch.nn.AvgPool2d(kernel_size, stride=None, padding=0,
    ceil_mode=False, count_include_pad=True, divisor_override=None)``: the divisor of a
    window is ``divisor_override`` if given, else its size clipped to the padded input
    (``count_include_pad``) or to the input. Options other than the defaults decline the
    windowed forward rule.
    """

    linear = True

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self._check_padding()
        if not isinstance(count_include_pad, bool):
            raise TypeError(f"AvgPool2d: count_include_pad must be True or False, got "
                            f"{count_include_pad!r}")
        self.count_include_pad = count_include_pad
        if divisor_override is not None and (
                isinstance(divisor_override, bool) or not isinstance(divisor_override, int)
                or divisor_override == 0):
            raise ValueError(f"AvgPool2d: divisor_override must be None or a non-zero int, got "
                             f"{divisor_override!r}")
        self.divisor_override = divisor_override

    def get_config(self):
        config = super().get_config()
        if not self.count_include_pad:
            config["count_include_pad"] = False
        if self.divisor_override is not None:
            config["divisor_override"] = self.divisor_override
        return config

    def _plain(self):
        return super()._plain() and self.divisor_override is None and \
            (self.count_include_pad or self.padding == (0, 0))

    def _divisor(self, in_shape):
        """PyTorch's divisor of every window, shape (Ho, Wo)."""
        _, Ho, Wo = self.output_shape(in_shape)
        if self.divisor_override is not None:
            return np.full((Ho, Wo), float(self.divisor_override))
        sizes = []
        for o, n, k, s, p in zip((Ho, Wo), in_shape[1:], self.kernel_size, self.stride,
                                 self.padding):
            start = np.arange(o) * s - p
            end = np.minimum(start + k, n + p)
            if self.count_include_pad:
                sizes.append(end - start)
            else:
                sizes.append(np.minimum(end, n) - np.maximum(start, 0))
        return np.outer(*sizes).astype(np.float64)

    def _general(self, x):
        """Sum over each window of the zero-padded input (ceil_mode's extra rows too),
        divided by :meth:`_divisor`."""
        M, C, H, W = x.shape
        out = self.output_shape(x.shape[1:])
        eh, ew = self._extra(x.shape[1:])
        ph, pw = self.padding
        xp = pad2d(x.reshape(M * C, 1, H, W), (pw, pw + ew, ph, ph + eh))
        cols = im2col(xp, self.kernel_size, self.stride, (0, 0), (1, 1))
        y = cols.sum(axis=2) / self._divisor(x.shape[1:]).reshape(-1).astype(x.dtype)
        return y.reshape((M,) + out)

    def work_size(self, in_shape):
        C, Ho, Wo = self.output_shape(in_shape)
        return C * Ho * Wo * self.kernel_size[0] * self.kernel_size[1]

    def _tiles(self, in_shape):
        """True if the windows tile the input without overlap or padding (a global
        average pool is one tile): the mean is then a reshape's, with no im2col."""
        _, Ho, Wo = self.output_shape(in_shape)
        return self._plain() and self.stride == self.kernel_size and \
            self.padding == (0, 0) and not self.ceil_mode and \
            (Ho * self.kernel_size[0], Wo * self.kernel_size[1]) == tuple(in_shape[1:])

    def _apply(self, x):
        if not self._plain():
            return self._general(x)
        out = self.output_shape(x.shape[1:])
        M, C, H, W = x.shape
        if self._tiles(x.shape[1:]):
            (kh, kw), (_, Ho, Wo) = self.kernel_size, out
            return x.reshape(M, C, Ho, kh, Wo, kw).mean(axis=(3, 5))
        cols = im2col(x.reshape(M * C, 1, H, W), self.kernel_size, self.stride,
                      self.padding, (1, 1))
        return cols.mean(axis=2).reshape((M,) + out)

    def forward(self, x):
        return self._apply(x), x.shape[1:]

    def jvp(self, cache, dx):
        return unfold(self._apply(fold(dx)), *dx.shape[:2])

    def vjp(self, cache, gy):
        if not self._plain():
            return self._general_vjp(cache, gy)
        C, H, W = cache
        g = fold(gy)
        M, P = g.shape[0] * C, g.shape[2] * g.shape[3]
        kh, kw = self.kernel_size
        if self._tiles(cache):                  # each entry spread over its own tile
            Ho, Wo = g.shape[2:]
            share = (g / g.dtype.type(kh * kw)).reshape(g.shape[:2] + (Ho, 1, Wo, 1))
            gx = np.broadcast_to(share, g.shape[:2] + (Ho, kh, Wo, kw))
            return gx.reshape(gy.shape[:2] + (C, H, W))
        cols = np.broadcast_to(g.reshape(M, P, 1) / (kh * kw), (M, P, kh * kw))
        gx = col2im(cols, (1, H, W), self.kernel_size, self.stride, self.padding, (1, 1))
        return gx.reshape(gy.shape[:2] + (C, H, W))

    def _general_vjp(self, cache, gy):
        C, H, W = cache
        g = fold(gy)
        M, P = g.shape[0] * C, g.shape[2] * g.shape[3]
        eh, ew = self._extra(cache)
        ph, pw = self.padding
        kh, kw = self.kernel_size
        g = g.reshape(M, P, 1) / self._divisor(cache).reshape(1, P, 1).astype(g.dtype)
        gp = col2im(np.broadcast_to(g, (M, P, kh * kw)), (1, H + 2 * ph + eh, W + 2 * pw + ew),
                    self.kernel_size, self.stride, (0, 0), (1, 1))
        gx = gp[:, :, ph:ph + H, pw:pw + W]
        return np.ascontiguousarray(gx).reshape(gy.shape[:2] + (C, H, W))

    def window_jvp(self, cache, T, window, nxt, n):
        """The mean of the shifted windows of each pooling window."""
        N, H, W, C0, Rh, Rw, C = T.shape
        (kh, kw), (s1, s2), (p1, p2) = self.kernel_size, self.stride, self.padding
        _, Ho, Wo = self.output_shape((C, H, W))
        Tp = np.zeros((N, H + 2 * p1, W + 2 * p2, C0, Rh, Rw, C), T.dtype)
        Tp[:, p1:p1 + H, p2:p2 + W] = T
        out = np.zeros((N, Ho, Wo, C0) + nxt.size + (C,), T.dtype)
        Sh, Sw = window.stride
        scale = T.dtype.type(1.0 / (kh * kw))
        for ky in range(kh):
            for kx in range(kw):
                out[:, :, :, :, ky * Sh:ky * Sh + Rh, kx * Sw:kx * Sw + Rw] += scale * Tp[
                    :, ky:ky + (Ho - 1) * s1 + 1:s1, kx:kx + (Wo - 1) * s2 + 1:s2]
        return out


# -- registry entries ------------------------------------------------------------------------
def _padding_within_kernel(c):
    span = [d * (k - 1) + 1 for k, d in zip(c["kernel_size"], c.get("dilation", [1, 1]))]
    if any(2 * p > k for p, k in zip(c["padding"], span)):
        raise schema.SchemaError(f"field 'padding' {c['padding']} must be at most half of the "
                                 f"(dilated) kernel size {span}")


_WINDOW = {"kernel_size": (schema.ints(2, 1), schema.REQUIRED),
           "stride": (schema.optional(schema.ints(2, 1)), None),
           "padding": (schema.ints(2, 0), 0), "ceil_mode": (schema.boolean, False)}
_MAX_SCHEMA = schema.LayerSchema({**_WINDOW, "dilation": (schema.ints(2, 1), 1)},
                                 relations=_padding_within_kernel)
_AVG_SCHEMA = schema.LayerSchema({**_WINDOW, "count_include_pad": (schema.boolean, True),
                                  "divisor_override": (schema.optional(schema.integer(1)),
                                                       None)},
                                 relations=_padding_within_kernel)


def _window(a):
    k = exchange.ints(a["kernel_size"])
    stride = exchange.ints(a["stride"]) if a["stride"] else k
    return {"kernel_size": k, "stride": stride, "padding": exchange.ints(a["padding"]),
            **({"ceil_mode": True} if a["ceil_mode"] else {})}


def _max_from_torch(ctx, a):
    extra = {}
    if exchange.ints(a["dilation"]) != [1, 1]:
        extra["dilation"] = exchange.ints(a["dilation"])
    return ctx.emit(ctx.layer("MaxPool2d", **_window(a), **extra), a["self"])


def _avg_from_torch(ctx, a):
    extra = {}
    if not a["count_include_pad"] and any(exchange.ints(a["padding"])):
        extra["count_include_pad"] = False
    if a["divisor_override"] is not None:
        extra["divisor_override"] = int(a["divisor_override"])
    return ctx.emit(ctx.layer("AvgPool2d", **_window(a), **extra), a["self"])


def _mean_from_torch(ctx, a):
    x = a["self"]
    shape = ctx.shape(x)
    dims = sorted({d % (len(shape) + 1) for d in (a["dim"] or range(1, len(shape) + 1))})
    if 0 in dims:
        ctx.fail(f"a mean over axes {dims}, the batch axis among them",
                 "average over per-example axes")
    if len(shape) != 3 or dims != [2, 3]:       # not the spatial mean: a Mean layer
        return ctx.emit(ctx.layer("Mean", dims=dims, keepdim=bool(a["keepdim"])), x)
    y = ctx.emit(ctx.layer("AvgPool2d", kernel_size=shape[1:]), x)
    return y if a["keepdim"] else ctx.emit(ctx.layer("Flatten"), y)


def _from_onnx(name):
    def rule(imp, node, a):
        exchange.onnx_auto_pad(imp, a)
        kwargs = {"kernel_size": list(a["kernel_shape"]),
                  "stride": list(a.get("strides", [1, 1])),
                  "padding": exchange.onnx_pads(imp, a.get("pads"))}
        if a.get("ceil_mode", 0):
            kwargs["ceil_mode"] = True
        if list(a.get("dilations", [1, 1])) != [1, 1]:
            kwargs["dilation"] = list(a["dilations"])
        if name == "AvgPool2d" and any(kwargs["padding"]) and not a.get("count_include_pad", 0):
            kwargs["count_include_pad"] = False
        if a.get("storage_order", 0):
            imp.fail("storage_order=1", "storage_order")
        exchange.onnx_unused_outputs(imp, node, "Indices")
        layer = imp.layer(name, "kernel_shape", **kwargs)
        exchange.onnx_output(imp, node, imp.emit(layer, node.input[0]))
    return rule


def _global_from_onnx(imp, node, a):
    """GlobalAveragePool: an AvgPool2d over (C, H, W), else the Mean over the spatial axes
    (``nn.AdaptiveAvgPool1d(1)`` on (C, L), as Swin's head pools its tokens)."""
    exchange.onnx_global_pool(imp, node, "Mean",
                              lambda shape: imp.layer("AvgPool2d", kernel_size=shape[1:]))


register_layer(MaxPool2d, schema=_MAX_SCHEMA,
               torch={"max_pool2d": _max_from_torch,
                      "max_pool2d_with_indices": exchange.returns_tuple(_max_from_torch)},
               onnx={"MaxPool": _from_onnx("MaxPool2d")}, to_torch=exchange.same_torch_module,
               example=Example({"kernel_size": 3, "stride": 2, "padding": 1}, (2, 5, 6),
                               values="distinct"))
register_layer(AvgPool2d, schema=_AVG_SCHEMA,
               torch={"avg_pool2d": _avg_from_torch, "mean": _mean_from_torch},
               onnx={"AveragePool": _from_onnx("AvgPool2d"),
                     "GlobalAveragePool": _global_from_onnx},
               to_torch=exchange.same_torch_module,
               example=Example({"kernel_size": 2, "stride": 1, "padding": 1,
                                "count_include_pad": False}, (2, 4, 5)))
