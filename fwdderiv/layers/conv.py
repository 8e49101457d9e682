"""2-D convolution (cross-correlation, as in PyTorch) by im2col and BLAS products."""
import numpy as np

from ..threads import matmul
from ..core import local
from ..core.layer import Layer, cast_param, fold, init_uniform, unfold
from ..kernels import winograd
from ..kernels.conv import (col2im, col2im_t, conv_vjp_layout, conv_vjp_scatter,
                            depthwise_conv, im2col_t, nonzeros, out_size)
from ..kernels.local import conv_window
from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ._util import chw, pair, positive_int
from .padding import pad2d, pad2d_adjoint

#: torch.nn.Conv2d's padding modes and the mode of :func:`pad2d` each one is.
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
                 "circular": "circular"}

#: Output positions (images times pixels) from which a 3x3 stride-1 convolution of a
#: batch of tangents or cotangents goes by Winograd's F(2x2, 3x3) instead of im2col and
#: one product; its gain shrinks with the batch. The measurements behind 512:
#: docs/pages/performance.md#the-engines-thresholds-and-where-their-numbers-come-from.
WINOGRAD_MIN_POSITIONS = 512
#: Bytes of tangent columns :meth:`Conv2d.jvp_residual` keeps for the second-order pass.
KEEP_TANGENT_COLS = 64 << 20


class Conv2d(Layer):
    r"""2-D convolution with stride, zero padding, dilation and groups, PyTorch layout.

    .. math::
        y_{o,i,j} = b_o + \sum_{c,u,v} W_{o,c,u,v}\, x_{c,\, s i + d u - p,\, s j + d v - p},
        \qquad \frac{dy}{dx}\,v = \mathrm{conv}(v, W)

    The JVP is the forward map applied to the tangent without the bias; the VJP is the
    transposed convolution (col2im of ``gy @ W``).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or (int, int)
    padding : int, (int, int), 'valid' or 'same'
        As in PyTorch: 'same' keeps the size (stride 1 only) and, where the total
        padding ``dilation * (kernel_size - 1)`` is odd, puts the extra row or column
        at the bottom or right.
    padding_mode : 'zeros', 'reflect', 'replicate' or 'circular'
        How the padding is filled, as in PyTorch. Zero padding symmetric on each axis
        runs in the convolution kernels (with the windowed and fused fast paths); any
        other padding pads the input first (:mod:`fwdderiv.layers.padding`) and the
        layer declines those fast paths.
    groups : int
        ``in_channels`` and ``out_channels`` must both be divisible by it.
    bias : bool
    seed : int
        Seed of the deterministic initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Attributes
    ----------
    weight : ndarray of shape (out_channels, in_channels // groups, kh, kw)
    bias : ndarray of shape (out_channels,) or None

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> conv = fd.Conv2d(1, 6, 5)
    >>> conv(np.zeros((2, 1, 32, 32), np.float32)).shape
    (2, 6, 28, 28)
    """

    linear = True
    uses_kernels = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", seed=0):
        name = "Conv2d"
        self.in_channels = positive_int(in_channels, "in_channels", name)
        self.out_channels = positive_int(out_channels, "out_channels", name)
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name)
        self.dilation = pair(dilation, "dilation", name)
        self._set_padding(padding, padding_mode)
        self.groups = positive_int(groups, "groups", name)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"both be divisible by groups ({groups}); change groups or the channel counts")
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        rng = np.random.default_rng(seed)
        self.weight = init_uniform(rng, (out_channels, in_channels // groups, kh, kw), fan_in)
        self.bias = init_uniform(rng, (out_channels,), fan_in) if bias else None
        self.param_names = ("weight", "bias") if bias else ("weight",)

    def _set_padding(self, padding, padding_mode):
        """``self.padding`` (symmetric zeros, done by the kernels) and ``self.prepad``:
        (left, right, top, bottom) padded first in ``self.padding_mode``, or None."""
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"Conv2d: padding_mode must be one of {sorted(PADDING_MODES)}, "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.padding_arg = padding
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            if self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' is not supported for strided "
                                 f"convolutions (stride={self.stride}), as in PyTorch; give "
                                 f"the padding as numbers")
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            pads = tuple((t // 2, t - t // 2) for t in total)
        elif isinstance(padding, str):
            raise ValueError(f"Conv2d: padding must be 'valid', 'same', an int or a pair of "
                             f"ints, got {padding!r}")
        else:
            ph, pw = pair(padding, "padding", "Conv2d", minimum=0)
            pads = ((ph, ph), (pw, pw))
        (top, bottom), (left, right) = pads
        if padding_mode == "zeros" and top == bottom and left == right:
            self.padding, self.prepad = (top, left), None
        else:
            self.padding, self.prepad = (0, 0), (left, right, top, bottom)

    def get_config(self):
        padding = self.padding_arg if isinstance(self.padding_arg, str) else \
            list(pair(self.padding_arg, "padding", "Conv2d", minimum=0))
        config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                  "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                  "padding": padding, "dilation": list(self.dilation),
                  "groups": self.groups, "bias": self.bias is not None}
        if self.padding_mode != "zeros":
            config["padding_mode"] = self.padding_mode
        return config

    def __repr__(self):
        padding = self.padding_arg if isinstance(self.padding_arg, str) else \
            pair(self.padding_arg, "padding", "Conv2d", minimum=0)
        extra = "".join(f", {k}={v!r}" for k, v, d in (
            ("stride", self.stride, (1, 1)), ("padding", padding, (0, 0)),
            ("dilation", self.dilation, (1, 1)), ("groups", self.groups, 1),
            ("bias", self.bias is not None, True), ("padding_mode", self.padding_mode, "zeros"))
            if v != d)
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        return f"Conv2d({self.in_channels}, {self.out_channels}, {k}{extra})"

    def output_shape(self, in_shape):
        _, H, W = chw(self, in_shape, self.in_channels)
        if self.prepad is not None:
            left, right, top, bottom = self.prepad
            H, W = H + top + bottom, W + left + right
        return self._conv_shape(H, W, in_shape)

    def _conv_shape(self, H, W, in_shape):
        """Output shape of the convolution proper on an (already pre-padded) H x W."""
        Ho = out_size(H, self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0])
        Wo = out_size(W, self.kernel_size[1], self.stride[1], self.padding[1], self.dilation[1])
        if Ho < 1 or Wo < 1:
            raise self._input_error(
                f"(N, {self.in_channels}, H, W) with H, W large enough for the kernel",
                ("N",) + tuple(in_shape),
                "the image is smaller than the (dilated) kernel; pad it or use a smaller kernel")
        return (self.out_channels, Ho, Wo)

    def work_size(self, in_shape):
        """Workspace per example: im2col columns and the product."""
        Co, Ho, Wo = self.output_shape(in_shape)
        K = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        return Ho * Wo * (K + Co)

    # cols: (M, C*kh*kw, P), one row per kernel tap (im2col transposed); result
    # (M, Co, Ho, Wo) = W @ cols[m] for every m: the products come out channels-first, so
    # no transpose follows them, as one (M*P, K) @ W.T product would need
    def _prepad(self, x, shape):
        """``x`` padded in ``padding_mode`` when the layer pads first; checks ``shape``."""
        if self.prepad is None:
            return x
        self.output_shape(shape)
        return pad2d(x, self.prepad, PADDING_MODES[self.padding_mode])

    def _apply(self, x, bias, weight=None):
        chw(self, x.shape[1:], self.in_channels)
        out_shape = self._conv_shape(x.shape[2], x.shape[3], x.shape[1:])
        M, G, Co = x.shape[0], self.groups, self.out_channels
        W = cast_param(self.weight if weight is None else weight, x.dtype).reshape(Co, -1)
        Kg, Cog = W.shape[1], Co // G
        if out_shape[1:] == (1, 1) and x.shape[2:] == self.kernel_size and \
                self.padding == (0, 0):
            cols = x.reshape(M, Kg * G, 1)          # one window: no copy, one product
            if G == 1:
                y = matmul(cols[:, :, 0], W.T)
            else:
                y = np.empty((M, Co), dtype=x.dtype)
                for g in range(G):
                    y[:, g * Cog:(g + 1) * Cog] = matmul(cols[:, g * Kg:(g + 1) * Kg, 0],
                                                         W[g * Cog:(g + 1) * Cog].T)
            y = y[:, :, None]
        else:
            if self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0):
                cols = np.ascontiguousarray(x).reshape(M, x.shape[1], -1)  # the image itself
            else:
                cols = im2col_t(x, self.kernel_size, self.stride, self.padding, self.dilation)
            if G == 1:
                y = matmul(W, cols)
            else:
                y = np.empty((M, Co, cols.shape[2]), dtype=x.dtype)
                for g in range(G):
                    y[:, g * Cog:(g + 1) * Cog] = np.matmul(W[g * Cog:(g + 1) * Cog],
                                                            cols[:, g * Kg:(g + 1) * Kg])
        if bias and self.bias is not None:
            y += cast_param(self.bias, x.dtype)[:, None]
        return y.reshape((M,) + out_shape), cols

    def forward(self, x):
        xp = self._prepad(x, x.shape[1:])
        y, cols = self._apply(xp, bias=True)
        return y, (cols, xp.shape[1:])

    def jvp(self, cache, dx, weight=None):
        """The JVP: the convolution of ``dx`` without the bias (by ``weight`` in place of
        the layer's, if given)."""
        return self.jvp_residual(cache, dx, weight)[0]

    def jvp_residual(self, cache, dx, weight=None):
        """:meth:`jvp` and the tangent's im2col columns, which :meth:`jvp_grad` would
        otherwise compute again (second-order pass); None when they exceed
        :data:`KEEP_TANGENT_COLS` bytes. ``weight``: in place of the layer's."""
        dx_nd = dx.shape[:2]
        t = self._prepad(fold(dx), dx.shape[2:])
        if self._winograd(t, self.padding):
            W = cast_param(self.weight if weight is None else weight, t.dtype)
            return unfold(winograd.conv3x3(t, W, self.padding), *dx_nd), None
        if self.groups > 1 and self.groups == self.in_channels == self.out_channels:
            chw(self, t.shape[1:], self.in_channels)
            W = cast_param(self.weight if weight is None else weight, t.dtype)
            y = depthwise_conv(t, W, self.stride, self.padding, self.dilation)
            return unfold(y, *dx_nd), None
        y, cols = self._apply(t, bias=False, weight=weight)
        return unfold(y, *dx_nd), (cols if cols.nbytes <= KEEP_TANGENT_COLS else None)

    def _winograd(self, x, padding):
        """True if this layer's convolution of the batch ``x`` (M, C, H, W) with zero
        padding ``padding`` goes by Winograd's F(2x2, 3x3)
        (:mod:`fwdderiv.kernels.winograd`): a 3x3 kernel, stride 1, no dilation, one
        group, and at least WINOGRAD_MIN_POSITIONS output positions."""
        if self.kernel_size != (3, 3) or self.stride != (1, 1) or self.dilation != (1, 1) \
                or self.groups != 1 or x.ndim != 4:
            return False
        Ho, Wo = (x.shape[a] + 2 * padding[a - 2] - 2 for a in (2, 3))
        return x.shape[0] * Ho * Wo >= WINOGRAD_MIN_POSITIONS

    def _scatter(self, g, in_shape, layout, weight=None):
        weight = self.weight if weight is None else weight
        return conv_vjp_scatter(g, weight, in_shape, self.stride, self.padding,
                                self.dilation, self.groups, nhwc=layout == "nhwc")

    # -- fast paths of the layer protocol ----------------------------------------------
    def window_rule(self, window):
        if self.prepad is not None:
            return None
        return local.grow(window, self.kernel_size, self.stride, self.padding, self.dilation)

    def window_jvp(self, cache, T, window, nxt, n):
        _, Ho, Wo = self.output_shape((T.shape[6],) + T.shape[1:3])
        return conv_window(T, self, (Ho, Wo), window, nxt.size)

    def vjp(self, cache, gy, weight=None):
        gx = self._vjp(cache, gy, weight)
        if self.prepad is None:
            return gx
        left, right, top, bottom = self.prepad
        hw = (gx.shape[-2] - top - bottom, gx.shape[-1] - left - right)
        return pad2d_adjoint(gx, self.prepad, PADDING_MODES[self.padding_mode], hw)

    def _vjp(self, cache, gy, weight=None):
        _, in_shape = cache
        weight = self.weight if weight is None else weight
        g = fold(gy)
        layout = conv_vjp_layout(self.weight.shape, self.groups, self.stride, nonzeros(g),
                                 g.size) if g.size else None
        if g.shape[2] * g.shape[3] > 1 and layout is not None:
            return unfold(self._scatter(g, in_shape, layout, weight=weight), *gy.shape[:2])
        M, Co, P = g.shape[0], self.out_channels, g.shape[2] * g.shape[3]
        W = cast_param(weight, gy.dtype).reshape(Co, -1)
        G = self.groups
        Kg, Cog = W.shape[1], Co // G
        if P == 1:                          # one window per example: one product
            g = g.reshape(M, Co)
            if G == 1:
                gcols = matmul(g, W)        # split across the cores (threads.matmul)
            else:
                gcols = np.empty((M, Kg * G), dtype=gy.dtype)
                for i in range(G):
                    gcols[:, i * Kg:(i + 1) * Kg] = (g[:, i * Cog:(i + 1) * Cog]
                                                     @ W[i * Cog:(i + 1) * Cog])
            if tuple(in_shape[1:]) == self.kernel_size and self.padding == (0, 0) and \
                    self.dilation == (1, 1):
                # the window is the whole input, entry for entry (as in _apply): the
                # columns are the input's cotangent, with nothing to add up (col2im was
                # 12% of all-class integrated gradients on LeNet-5)
                return unfold(gcols.reshape((M,) + tuple(in_shape)), *gy.shape[:2])
            gx = col2im(gcols.reshape(M, 1, Kg * G), in_shape, self.kernel_size, self.stride,
                        self.padding, self.dilation)
            return unfold(gx, *gy.shape[:2])
        gx = self._vjp_as_conv(g, in_shape, W)
        if gx is not None:
            return unfold(gx, *gy.shape[:2])
        # W.T @ g[m]: the columns one row per tap, from the channels-first cotangent as it
        # is (the transpose of im2col_t's product in the forward pass)
        g = g.reshape(M, Co, P)
        if G == 1:
            gcols = matmul(W.T, g)
        else:
            gcols = np.empty((M, Kg * G, P), dtype=gy.dtype)
            for i in range(G):
                gcols[:, i * Kg:(i + 1) * Kg] = np.matmul(W[i * Cog:(i + 1) * Cog].T,
                                                          g[:, i * Cog:(i + 1) * Cog])
        gx = col2im_t(gcols, in_shape, self.kernel_size, self.stride, self.padding,
                      self.dilation)
        return unfold(gx, *gy.shape[:2])

    def _vjp_as_conv(self, g, in_shape, W):
        """The input cotangent of a stride-1 convolution as a convolution of ``g`` (M, Co,
        Ho, Wo) itself: with the kernel flipped and its channels swapped, and padding
        ``d*(k-1) - p``, it lands on the input's grid. The gather (im2col of ``g``) then
        replaces col2im's scatter-add, which costs more per entry; it is taken when it
        gathers no more entries than col2im would add (``Co*H*W <= Ci*Ho*Wo``: ResNet's
        same-padded convolutions). None where it does not apply."""
        Co, Ci = self.out_channels, self.in_channels
        (kh, kw), (dh, dw), (ph, pw) = self.kernel_size, self.dilation, self.padding
        qh, qw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
        H, Wd = in_shape[1:]
        if self.stride != (1, 1) or self.groups != 1 or qh < 0 or qw < 0 or \
                Co * H * Wd > Ci * g.shape[2] * g.shape[3]:
            return None
        if self._winograd(g, (qh, qw)):
            return winograd.conv3x3(g, W.reshape(Co, Ci, kh, kw), (qh, qw), adjoint=True)
        flipped = np.ascontiguousarray(
            W.reshape(Co, Ci, kh, kw)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(Ci, -1)
        cols = im2col_t(g, (kh, kw), (1, 1), (qh, qw), (dh, dw))
        return matmul(flipped, cols).reshape((g.shape[0],) + tuple(in_shape))

    def param_vjp(self, cache, gy):
        cols, _ = cache                            # (N, K, P)
        N, Co = gy.shape[0], self.out_channels
        g = gy.reshape(N, Co, -1)
        Kg, Cog = cols.shape[1] // self.groups, Co // self.groups
        gW = np.empty((Co, Kg), dtype=gy.dtype)
        for i in range(self.groups):          # sum over examples of g[n] @ cols[n].T
            gi, ci = g[:, i * Cog:(i + 1) * Cog], cols[:, i * Kg:(i + 1) * Kg]
            if cols.shape[2] == 1:              # one window: a single product
                gW[i * Cog:(i + 1) * Cog] = gi[:, :, 0].T @ ci[:, :, 0]
            else:
                # as (cols[n] @ g[n].T).T: BLAS runs faster with the long side K first
                # than as g[n] @ cols[n].T with its few output channels
                gW[i * Cog:(i + 1) * Cog] = matmul(ci, gi.transpose(0, 2, 1)).sum(axis=0).T
        grads = {"weight": gW.reshape(self.weight.shape).astype(self.weight.dtype, copy=False)}
        if self.bias is not None:
            grads["bias"] = gy.sum(axis=(0, 2, 3)).astype(self.bias.dtype, copy=False)
        return grads

    def jvp_grad(self, cache, x, dx, gdy, residual=None):
        r"""Of :math:`\sum \langle g, \mathrm{conv}(dx, W)\rangle`: the weight gradient of
        the tangents seen as a batch of ``N*D`` images (``param_vjp`` with the tangent's
        columns, from :meth:`jvp_residual` when given); none in ``x`` or the bias."""
        cols = residual
        if cols is None:
            t = np.ascontiguousarray(fold(dx))
            cols = im2col_t(self._prepad(t, dx.shape[2:]), self.kernel_size, self.stride,
                            self.padding, self.dilation)
        grads = self.param_vjp((cols, dx.shape[2:]), fold(gdy))
        if self.bias is not None:
            grads["bias"] = np.zeros_like(self.bias)
        return None, grads


# -- registry entry --------------------------------------------------------------------------
def _conv_arrays(c):
    kh, kw = c["kernel_size"]
    shapes = {"weight": (c["out_channels"], c["in_channels"] // c["groups"], kh, kw)}
    if c["bias"]:
        shapes["bias"] = (c["out_channels"],)
    return shapes


def groups_divide_channels(c):
    """Schema relation of the convolutions: both channel counts divisible by ``groups``."""
    g = c["groups"]
    if c["in_channels"] % g or c["out_channels"] % g:
        raise schema.SchemaError(f"fields 'in_channels' ({c['in_channels']}) and "
                                 f"'out_channels' ({c['out_channels']}) must both be "
                                 f"divisible by 'groups' ({g})")


SCHEMA = schema.LayerSchema(
    {"in_channels": (schema.POSITIVE, schema.REQUIRED),
     "out_channels": (schema.POSITIVE, schema.REQUIRED),
     "kernel_size": (schema.ints(2, 1), schema.REQUIRED), "stride": (schema.ints(2, 1), 1),
     "padding": (schema.either(schema.choice("same", "valid"), schema.ints(2, 0)), 0),
     "dilation": (schema.ints(2, 1), 1), "groups": (schema.POSITIVE, 1),
     "bias": (schema.boolean, True),
     "padding_mode": (schema.choice(*PADDING_MODES), "zeros")},
    _conv_arrays, groups_divide_channels)


def _padding_of(ctx, padding, dilation, kernel):
    if padding == "valid":
        return [0, 0]
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        # symmetric when even; otherwise the layer must support 'same' itself
        return "same" if any(t % 2 for t in total) else [t // 2 for t in total]
    return exchange.ints(padding)


def _from_torch(ctx, a):
    x = a["input"]
    if a.get("transposed"):                 # the same arguments as conv_transpose2d
        from .conv_transpose import from_torch as transposed
        return transposed(ctx, a)
    if len(ctx.shape(x)) == 2:              # (N, C, L): a 1-d convolution
        from .conv1d import from_torch as conv1d
        return conv1d(ctx, a)
    if len(ctx.shape(x)) != 3:
        ctx.fail(f"a {len(ctx.shape(x)) - 1}-d convolution",
                 "use a 1-d (N, C, L) or 2-d (N, C, H, W) convolution")
    w, b = exchange.torch_weight_bias(ctx, a)
    out_c, in_g, kh, kw = w.shape
    groups = int(a["groups"])
    dilation = exchange.ints(a["dilation"])
    layer = ctx.layer("Conv2d", in_channels=in_g * groups, out_channels=out_c,
                      kernel_size=(kh, kw), stride=exchange.ints(a["stride"]),
                      padding=_padding_of(ctx, a["padding"], dilation, (kh, kw)),
                      dilation=dilation, groups=groups, bias=b is not None)
    layer.weight, layer.bias = w, b
    return ctx.emit(layer, x)


def _from_onnx(imp, node, a):
    x = node.input[0]
    if len(imp.shape(x)) == 2:              # (N, C, L): a 1-d convolution
        from .conv1d import from_onnx as conv1d
        return conv1d(imp, node, a)
    exchange.onnx_auto_pad(imp, a)
    if len(imp.shape(x)) != 3:
        imp.fail(f"a {len(imp.shape(x)) - 1}-d convolution", "kernel_shape")
    w = imp.const(node.input[1]).copy()
    b = imp.const(node.input[2]).copy() if len(node.input) > 2 and node.input[2] else None
    g = int(a.get("group", 1))
    layer = imp.layer("Conv2d", "pads", in_channels=w.shape[1] * g, out_channels=w.shape[0],
                      kernel_size=w.shape[2:], stride=list(a.get("strides", [1, 1])),
                      padding=exchange.onnx_pads(imp, a.get("pads")),
                      dilation=list(a.get("dilations", [1, 1])), groups=g, bias=b is not None)
    layer.weight, layer.bias = w, b
    exchange.onnx_output(imp, node, imp.emit(layer, x))


register_layer(Conv2d, schema=SCHEMA,
               torch={"conv2d": _from_torch, "convolution": _from_torch},
               onnx={"Conv": _from_onnx}, to_torch=exchange.same_torch_module,
               example=Example(dict(in_channels=2, out_channels=4, kernel_size=3, padding=1,
                                    stride=2, groups=2), (2, 7, 6)))
