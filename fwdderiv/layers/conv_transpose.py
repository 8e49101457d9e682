"""2-D transposed convolution, ``torch.nn.ConvTranspose2d``: the adjoint of a convolution.

The layer is the input cotangent map of the convolution with the same weight, kernel,
stride, padding, dilation and groups (:class:`~fwdderiv.layers.conv.Conv2d`'s VJP): a
BLAS product and col2im, or a scatter of the non-zero entries when few are non-zero (an
identity seed). Its own VJP is that convolution, im2col and one product.
"""
import numpy as np

from .. import schema
from ..core.layer import Layer, cast_param, fold, init_uniform, unfold
from ..kernels.conv import (col2im_t, conv_vjp_scatter, im2col_t, nonzeros, out_size,
                            scatter_layout)
from ..registry import Example, register_layer
from ..threads import matmul
from . import exchange
from ._util import chw, pair, positive_int
from .conv import groups_divide_channels

NAME = "ConvTranspose2d"


def transposed_size(size, kernel, stride, padding, dilation, output_padding):
    """Output length of a transposed convolution, as in PyTorch's ConvTranspose2d docs."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _check_output_padding(output_padding, stride, dilation):
    """PyTorch's rule: on each axis, output_padding < stride or output_padding < dilation.
    The reason (a string) when it is broken, else None."""
    if all(q < max(s, d) for q, s, d in zip(output_padding, stride, dilation)):
        return None
    return (f"output_padding {list(output_padding)} must be smaller than the stride "
            f"{list(stride)} or the dilation {list(dilation)} on each axis, as in PyTorch")


class ConvTranspose2d(Layer):
    r"""2-D transposed convolution (PyTorch's ``ConvTranspose2d``, zero padding only).

    The adjoint of the convolution :math:`C_W` (stride :math:`s`, padding :math:`p`,
    dilation :math:`d`, groups) whose weight is this layer's, read as ``(out, in, kh,
    kw)`` = ``(in_channels, out_channels // groups, kh, kw)``: every input entry adds its
    weighted kernel to the output,

    .. math::
        y_{o,\, s i + d u - p,\, s j + d v - p} \mathrel{+}= W_{c,o,u,v}\, x_{c,i,j},
        \qquad y = b + C_W^{\top} x,
        \qquad \frac{dy}{dx}\,v = C_W^{\top} v, \qquad g_x = C_W\, g_y

    The JVP is the forward map applied to the tangent without the bias; the VJP is the
    convolution :math:`C_W` of the cotangent. The output has
    ``(H - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1``
    rows (and likewise columns).

    Parameters
    ----------
    in_channels, out_channels : int
        Both divisible by ``groups``.
    kernel_size, stride, dilation : int or (int, int)
    padding : int or (int, int)
        Rows and columns removed from each border of the full output.
    output_padding : int or (int, int)
        Rows and columns added at the bottom and right; smaller than the stride or the
        dilation on each axis, as in PyTorch.
    groups : int
    bias : bool
    padding_mode : 'zeros'
        The only mode PyTorch's ConvTranspose2d supports.
    seed : int
        Seed of the deterministic initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
        ``fan_in = out_channels // groups * kh * kw``, PyTorch's.

    Attributes
    ----------
    weight : ndarray of shape (in_channels, out_channels // groups, kh, kw)
    bias : ndarray of shape (out_channels,) or None

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> up = fd.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    >>> up(np.zeros((2, 8, 7, 7), np.float32)).shape
    (2, 4, 14, 14)
    """

    linear = True
    uses_kernels = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 seed=0):
        self.in_channels = positive_int(in_channels, "in_channels", NAME)
        self.out_channels = positive_int(out_channels, "out_channels", NAME)
        self.kernel_size = pair(kernel_size, "kernel_size", NAME)
        self.stride = pair(stride, "stride", NAME)
        self.padding = pair(padding, "padding", NAME, minimum=0)
        self.output_padding = pair(output_padding, "output_padding", NAME, minimum=0)
        self.dilation = pair(dilation, "dilation", NAME)
        self.groups = positive_int(groups, "groups", NAME)
        if padding_mode != "zeros":
            raise ValueError(f"{NAME}: padding_mode must be 'zeros' (the only mode PyTorch's "
                             f"ConvTranspose2d supports), got {padding_mode!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{NAME}: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"both be divisible by groups ({groups}); change groups or the channel counts")
        reason = _check_output_padding(self.output_padding, self.stride, self.dilation)
        if reason:
            raise ValueError(f"{NAME}: {reason}; lower output_padding")
        kh, kw = self.kernel_size
        fan_in = out_channels // groups * kh * kw
        rng = np.random.default_rng(seed)
        self.weight = init_uniform(rng, (in_channels, out_channels // groups, kh, kw), fan_in)
        self.bias = init_uniform(rng, (out_channels,), fan_in) if bias else None
        self.param_names = ("weight", "bias") if bias else ("weight",)

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "output_padding": list(self.output_padding),
                "groups": self.groups, "bias": self.bias is not None,
                "dilation": list(self.dilation)}

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v, d in (
            ("stride", self.stride, (1, 1)), ("padding", self.padding, (0, 0)),
            ("output_padding", self.output_padding, (0, 0)), ("groups", self.groups, 1),
            ("bias", self.bias is not None, True), ("dilation", self.dilation, (1, 1)))
            if v != d)
        kh, kw = self.kernel_size
        k = kh if kh == kw else self.kernel_size
        return f"{NAME}({self.in_channels}, {self.out_channels}, {k}{extra})"

    # -- shapes ----------------------------------------------------------------------
    def output_shape(self, in_shape):
        _, H, W = chw(self, in_shape, self.in_channels)
        Ho, Wo = (transposed_size(n, *arg) for n, *arg in zip(
            (H, W), self.kernel_size, self.stride, self.padding, self.dilation,
            self.output_padding))
        if Ho < 1 or Wo < 1:
            raise self._input_error(
                f"(N, {self.in_channels}, H, W) with H, W large enough for a non-empty output",
                ("N",) + tuple(in_shape),
                f"the padding {list(self.padding)} removes every row or column of the "
                f"output ({Ho} x {Wo} would be left); use less padding or a larger input")
        return (self.out_channels, Ho, Wo)

    def _grid(self, out_hw):
        """The output grid (Hg, Wg) of the convolution C_W of an output-sized image: the
        input's H x W, or more where output_padding >= stride (allowed below the
        dilation; the extra positions hold zeros)."""
        return tuple(out_size(n, k, s, p, d) for n, k, s, p, d in zip(
            out_hw, self.kernel_size, self.stride, self.padding, self.dilation))

    def _on_grid(self, v, out_hw):
        """``v`` (M, Ci, H, W) with zero rows and columns added at the bottom and right up
        to :meth:`_grid` (no copy where it is H x W already)."""
        Hg, Wg = self._grid(out_hw)
        H, W = v.shape[2:]
        if (Hg, Wg) == (H, W):
            return v
        out = np.zeros(v.shape[:2] + (Hg, Wg), v.dtype)
        out[:, :, :H, :W] = v
        return out

    def work_size(self, in_shape):
        """Workspace per example: the columns of C_W's adjoint and the output."""
        Co, Ho, Wo = self.output_shape(in_shape)
        Hg, Wg = self._grid((Ho, Wo))
        return Hg * Wg * Co * self.kernel_size[0] * self.kernel_size[1] + Co * Ho * Wo

    # -- the map and its adjoint -----------------------------------------------------
    def _apply(self, x, weight=None):
        """``C_W^T x`` for ``x`` (M, Ci, H, W), no bias; also ``x`` on the grid."""
        out_shape = self.output_shape(x.shape[1:])
        xg = np.ascontiguousarray(self._on_grid(x, out_shape[1:]))
        W = cast_param(self.weight if weight is None else weight, x.dtype)
        layout = scatter_layout(W.shape, nonzeros(xg), xg.size) if xg.size else None
        if layout is not None:          # few non-zero entries: scatter each one's window
            y = conv_vjp_scatter(xg, W, out_shape, self.stride, self.padding, self.dilation,
                                 self.groups, nhwc=layout == "nhwc")
            return y, xg
        M, G, Ci = x.shape[0], self.groups, self.in_channels
        Wm = W.reshape(Ci, -1)
        Kg, Cig = Wm.shape[1], Ci // G
        g = xg.reshape(M, Ci, -1)
        if G == 1:
            cols = matmul(Wm.T, g)
        else:
            cols = np.empty((M, Kg * G, g.shape[2]), dtype=x.dtype)
            for i in range(G):
                cols[:, i * Kg:(i + 1) * Kg] = np.matmul(Wm[i * Cig:(i + 1) * Cig].T,
                                                         g[:, i * Cig:(i + 1) * Cig])
        y = col2im_t(cols, out_shape, self.kernel_size, self.stride, self.padding,
                     self.dilation)
        return y, xg

    def _conv(self, g):
        """``C_W g`` for ``g`` (M, Co, Ho, Wo): (M, Ci, Hg, Wg), on the grid."""
        M, G, Ci = g.shape[0], self.groups, self.in_channels
        cols = im2col_t(g, self.kernel_size, self.stride, self.padding, self.dilation)
        Wm = cast_param(self.weight, g.dtype).reshape(Ci, -1)
        Kg, Cig = Wm.shape[1], Ci // G
        if G == 1:
            out = matmul(Wm, cols)
        else:
            out = np.empty((M, Ci, cols.shape[2]), dtype=g.dtype)
            for i in range(G):
                out[:, i * Cig:(i + 1) * Cig] = np.matmul(Wm[i * Cig:(i + 1) * Cig],
                                                          cols[:, i * Kg:(i + 1) * Kg])
        return out.reshape((M, Ci) + self._grid(g.shape[2:]))

    # -- the layer protocol ----------------------------------------------------------
    def forward(self, x):
        y, xg = self._apply(x)
        if self.bias is not None:
            y += cast_param(self.bias, x.dtype)[:, None, None]
        return y, (xg, x.shape[2:])

    def jvp(self, cache, dx):
        """The JVP: the transposed convolution of ``dx`` without the bias."""
        return unfold(self._apply(fold(dx))[0], *dx.shape[:2])

    def vjp(self, cache, gy):
        """The VJP: the convolution ``C_W`` of ``gy``, cut to the input's H x W."""
        _, (H, W) = cache
        gx = self._conv(fold(gy))
        if gx.shape[2:] != (H, W):
            gx = np.ascontiguousarray(gx[:, :, :H, :W])
        return unfold(gx, *gy.shape[:2])

    def _param_grads(self, xg, g):
        """Weight and bias gradients of ``sum <g, C_W^T xg + b>`` over the batch, for
        ``xg`` (M, Ci, Hg, Wg) on the grid and ``g`` (M, Co, Ho, Wo)."""
        cols = im2col_t(g, self.kernel_size, self.stride, self.padding, self.dilation)
        M, G, Ci = xg.shape[0], self.groups, self.in_channels
        xf = xg.reshape(M, Ci, -1)
        Kg, Cig = cols.shape[1] // G, Ci // G
        gW = np.empty((Ci, Kg), dtype=g.dtype)
        for i in range(G):      # sum over examples and positions of x[ci] * cols[k]
            gW[i * Cig:(i + 1) * Cig] = np.tensordot(xf[:, i * Cig:(i + 1) * Cig],
                                                     cols[:, i * Kg:(i + 1) * Kg],
                                                     axes=([0, 2], [0, 2]))
        grads = {"weight": gW.reshape(self.weight.shape).astype(self.weight.dtype, copy=False)}
        if self.bias is not None:
            grads["bias"] = g.sum(axis=(0, 2, 3)).astype(self.bias.dtype, copy=False)
        return grads

    def param_vjp(self, cache, gy):
        xg, _ = cache
        return self._param_grads(xg, gy)

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum \langle g, C_W^{\top} dx\rangle`: the weight gradient of the
        tangents seen as a batch of ``N*D`` images; none in ``x`` or the bias."""
        t = fold(dx)
        grads = self._param_grads(self._on_grid(t, self.output_shape(t.shape[1:])[1:]),
                                  fold(gdy))
        if self.bias is not None:
            grads["bias"] = np.zeros_like(self.bias)
        return None, grads


# -- registry entry --------------------------------------------------------------------------
def _arrays(c):
    kh, kw = c["kernel_size"]
    shapes = {"weight": (c["in_channels"], c["out_channels"] // c["groups"], kh, kw)}
    if c["bias"]:
        shapes["bias"] = (c["out_channels"],)
    return shapes


def _relations(c):
    groups_divide_channels(c)
    reason = _check_output_padding(c["output_padding"], c["stride"], c["dilation"])
    if reason:
        raise schema.SchemaError(f"field 'output_padding': {reason}")


SCHEMA = schema.LayerSchema(
    {"in_channels": (schema.POSITIVE, schema.REQUIRED),
     "out_channels": (schema.POSITIVE, schema.REQUIRED),
     "kernel_size": (schema.ints(2, 1), schema.REQUIRED), "stride": (schema.ints(2, 1), 1),
     "padding": (schema.ints(2, 0), 0), "output_padding": (schema.ints(2, 0), 0),
     "groups": (schema.POSITIVE, 1), "bias": (schema.boolean, True),
     "dilation": (schema.ints(2, 1), 1)},
    _arrays, _relations)


def from_torch(ctx, a):
    """ATen ``conv_transpose2d``, which ``torch.export`` records for nn.ConvTranspose2d and
    F.conv_transpose2d (the arguments carry the same names in ``convolution`` with
    ``transposed=True``, so this rule reads that too)."""
    x = a["input"]
    if len(ctx.shape(x)) != 3:
        ctx.fail(f"a {len(ctx.shape(x)) - 1}-d transposed convolution",
                 "only 2-d transposed convolution of (N, C, H, W) images is")
    w, b = exchange.torch_weight_bias(ctx, a)
    in_c, out_g, kh, kw = w.shape
    groups = int(a.get("groups", 1))
    layer = ctx.layer(NAME, in_channels=in_c, out_channels=out_g * groups,
                      kernel_size=(kh, kw), stride=exchange.ints(a["stride"]),
                      padding=exchange.ints(a["padding"]),
                      output_padding=exchange.ints(a["output_padding"]), groups=groups,
                      dilation=exchange.ints(a["dilation"]), bias=b is not None)
    layer.weight, layer.bias = w, b
    return ctx.emit(layer, x)


def _from_onnx(imp, node, a):
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad != "NOTSET":
        imp.fail(f"auto_pad={auto_pad!r}", "auto_pad", "export with explicit pads")
    if "output_shape" in a:
        imp.fail("an explicit output_shape", "output_shape",
                 "export with pads and output_padding (torch.onnx.export writes them)")
    x = node.input[0]
    if len(imp.shape(x)) != 3:
        imp.fail(f"a {len(imp.shape(x)) - 1}-d transposed convolution", "kernel_shape")
    w = imp.const(node.input[1]).copy()
    b = imp.const(node.input[2]).copy() if len(node.input) > 2 and node.input[2] else None
    g = int(a.get("group", 1))
    layer = imp.layer(NAME, None, in_channels=w.shape[0], out_channels=w.shape[1] * g,
                      kernel_size=list(w.shape[2:]), stride=list(a.get("strides", [1, 1])),
                      padding=exchange.onnx_pads(imp, a.get("pads")),
                      output_padding=list(a.get("output_padding", [0, 0])),
                      dilation=list(a.get("dilations", [1, 1])), groups=g, bias=b is not None)
    layer.weight, layer.bias = w, b
    exchange.onnx_output(imp, node, imp.emit(layer, x))


register_layer(ConvTranspose2d, schema=SCHEMA, torch={"conv_transpose2d": from_torch},
               onnx={"ConvTranspose": _from_onnx}, to_torch=exchange.same_torch_module,
               example=Example(dict(in_channels=2, out_channels=4, kernel_size=3, stride=2,
                                    padding=1, output_padding=1, groups=2), (2, 4, 3)))
