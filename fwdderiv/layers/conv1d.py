"""1-D convolution (``torch.nn.Conv1d``): a :class:`Conv2d` of height one, sharing its
kernels (im2col and BLAS products) and its derivatives."""
import numbers

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ..core.layer import Layer
from ._util import positive_int
from .conv import PADDING_MODES, Conv2d, groups_divide_channels


class Conv1d(Layer):
    r"""1-D convolution with stride, padding, dilation and groups, PyTorch's layout and
    arguments (MLP-Mixer's token mixing is ``Conv1d(kernel_size=1)``).

    .. math::
        y_{o,i} = b_o + \sum_{c,u} W_{o,c,u}\, x_{c,\, s i + d u - p}

    The input ``(N, C, L)`` is viewed as ``(N, C, 1, L)`` and goes through a
    :class:`Conv2d` with kernel ``(1, k)``, whose weight is this layer's, viewed as
    ``(out, in/groups, 1, k)``: the same memory, so that updating ``weight`` in place
    updates the convolution. Linear: the JVP is the convolution of the tangent without the
    bias, the VJP the transposed convolution.

    Parameters
    ----------
    in_channels, out_channels, kernel_size : int
    stride, dilation, groups : int
    padding : int, 'valid' or 'same'
    bias : bool
    padding_mode : 'zeros', 'reflect', 'replicate' or 'circular'
    seed : int

    Attributes
    ----------
    weight : ndarray of shape (out_channels, in_channels // groups, kernel_size)
    bias : ndarray of shape (out_channels,) or None
    """

    linear = True
    uses_kernels = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", seed=0):
        name = "Conv1d"
        k = positive_int(kernel_size, "kernel_size", name)
        s = positive_int(stride, "stride", name)
        d = positive_int(dilation, "dilation", name)
        g = positive_int(groups, "groups", name)
        in_channels = positive_int(in_channels, "in_channels", name)
        out_channels = positive_int(out_channels, "out_channels", name)
        if in_channels % g or out_channels % g:
            raise ValueError(f"Conv1d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({g}); change "
                             f"groups or the channel counts")
        if padding in ("same", "valid"):
            if padding == "same" and s != 1:
                raise ValueError(f"Conv1d: padding='same' is not supported for strided "
                                 f"convolutions (stride={s}), as in PyTorch; give a number")
            pad2 = padding
        elif isinstance(padding, numbers.Integral) and not isinstance(padding, bool) and \
                padding >= 0:
            pad2 = (0, int(padding))
        else:
            raise ValueError(f"Conv1d: padding must be 'valid', 'same' or an int >= 0, got "
                             f"{padding!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"Conv1d: padding_mode must be one of {sorted(PADDING_MODES)}, "
                             f"got {padding_mode!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.dilation, self.groups = s, d, g
        self.padding, self.padding_mode = padding, padding_mode
        self.conv = Conv2d(in_channels, out_channels, (1, k), stride=(1, s), padding=pad2,
                           dilation=(1, d), groups=g, bias=bias, padding_mode=padding_mode,
                           seed=seed)
        self.param_names = self.conv.param_names

    # the parameters are the inner Conv2d's, seen without its axis of height one
    @property
    def weight(self):
        return self.conv.weight[:, :, 0, :]

    @weight.setter
    def weight(self, value):
        self.conv.weight = np.asarray(value)[:, :, None, :]

    @property
    def bias(self):
        return self.conv.bias

    @bias.setter
    def bias(self, value):
        self.conv.bias = value

    def get_config(self):
        config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                  "kernel_size": self.kernel_size, "stride": self.stride,
                  "padding": self.padding, "dilation": self.dilation, "groups": self.groups,
                  "bias": self.conv.bias is not None}
        if self.padding_mode != "zeros":
            config["padding_mode"] = self.padding_mode
        return config

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v, d in (
            ("stride", self.stride, 1), ("padding", self.padding, 0),
            ("dilation", self.dilation, 1), ("groups", self.groups, 1),
            ("bias", self.conv.bias is not None, True),
            ("padding_mode", self.padding_mode, "zeros")) if v != d)
        return f"Conv1d({self.in_channels}, {self.out_channels}, {self.kernel_size}{extra})"

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        if len(in_shape) != 2 or in_shape[0] != self.in_channels:
            raise self._input_error(f"(N, {self.in_channels}, L)", ("N",) + in_shape,
                                    "give a batch of sequences (channels, length)")
        try:
            co, _, lo = self.conv.output_shape((in_shape[0], 1, in_shape[1]))
        except ValueError:
            raise self._input_error(f"(N, {self.in_channels}, L) with L large enough for "
                                    f"the kernel", ("N",) + in_shape,
                                    "pad the sequence or use a smaller kernel") from None
        return co, lo

    def forward(self, x):
        self.output_shape(x.shape[1:])
        y, cache = self.conv.forward(x[:, :, None, :])
        return y[:, :, 0, :], cache

    def jvp_residual(self, cache, dx):
        dy, residual = self.conv.jvp_residual(cache, dx[:, :, :, None, :])
        return dy[:, :, :, 0, :], residual

    def jvp(self, cache, dx):
        return self.jvp_residual(cache, dx)[0]

    def vjp(self, cache, gy):
        return self.conv.vjp(cache, gy[:, :, :, None, :])[:, :, :, 0, :]

    def param_vjp(self, cache, gy):
        return self._flat(self.conv.param_vjp(cache, gy[:, :, None, :]))

    def jvp_grad(self, cache, x, dx, gdy, residual=None):
        """The inner :meth:`Conv2d.jvp_grad` (the weight gradient of the tangents)."""
        gx, grads = self.conv.jvp_grad(cache, x[:, :, None, :], dx[:, :, :, None, :],
                                       gdy[:, :, :, None, :], residual=residual)
        return gx, self._flat(grads)

    @staticmethod
    def _flat(grads):
        grads["weight"] = grads["weight"][:, :, 0, :]
        return grads

    def work_size(self, in_shape):
        return self.conv.work_size((in_shape[0], 1, in_shape[1]))


# -- registry entry --------------------------------------------------------------------------
def _conv1d_arrays(c):
    shapes = {"weight": (c["out_channels"], c["in_channels"] // c["groups"], c["kernel_size"])}
    if c["bias"]:
        shapes["bias"] = (c["out_channels"],)
    return shapes


SCHEMA = schema.LayerSchema(
    {"in_channels": (schema.POSITIVE, schema.REQUIRED),
     "out_channels": (schema.POSITIVE, schema.REQUIRED),
     "kernel_size": (schema.POSITIVE, schema.REQUIRED), "stride": (schema.POSITIVE, 1),
     "padding": (schema.either(schema.choice("same", "valid"), schema.NONNEGATIVE), 0),
     "dilation": (schema.POSITIVE, 1), "groups": (schema.POSITIVE, 1),
     "bias": (schema.boolean, True),
     "padding_mode": (schema.choice(*PADDING_MODES), "zeros")},
    _conv1d_arrays, groups_divide_channels)


def from_torch(ctx, a):
    """``conv1d`` (and ``convolution`` of a 1-d input, through Conv2d's rule)."""
    x = a["input"]
    w, b = exchange.torch_weight_bias(ctx, a)
    out_c, in_g, k = w.shape
    groups, padding = int(a["groups"]), a["padding"]
    if not isinstance(padding, str):
        (padding,) = exchange.ints(padding, 1)
    layer = ctx.layer("Conv1d", in_channels=in_g * groups, out_channels=out_c, kernel_size=k,
                      stride=exchange.ints(a["stride"], 1)[0], padding=padding,
                      dilation=exchange.ints(a["dilation"], 1)[0], groups=groups,
                      bias=b is not None)
    layer.weight, layer.bias = w, b
    return ctx.emit(layer, x)


def from_onnx(imp, node, a):
    """ONNX ``Conv`` of a 1-d input (through Conv2d's rule, which owns ``Conv``);
    ``auto_pad=SAME_UPPER`` at stride 1 is PyTorch's ``padding='same'``."""
    x = node.input[0]
    w = imp.const(node.input[1]).copy()
    b = imp.const(node.input[2]).copy() if len(node.input) > 2 and node.input[2] else None
    g, stride = int(a.get("group", 1)), int(a.get("strides", [1])[0])
    auto = a.get("auto_pad", b"NOTSET")
    if auto in (b"SAME_UPPER", "SAME_UPPER") and stride == 1:
        padding = "same"
    else:
        exchange.onnx_auto_pad(imp, a)
        (padding,) = (int(p) for p in exchange.onnx_pads(imp, a.get("pads"), n=1))
    layer = imp.layer("Conv1d", "pads", in_channels=w.shape[1] * g, out_channels=w.shape[0],
                      kernel_size=w.shape[2], stride=stride, padding=padding,
                      dilation=int(a.get("dilations", [1])[0]), groups=g, bias=b is not None)
    layer.weight, layer.bias = w, b
    exchange.onnx_output(imp, node, imp.emit(layer, x))


register_layer(Conv1d, schema=SCHEMA, torch={"conv1d": from_torch},
               to_torch=exchange.same_torch_module,
               example=Example(dict(in_channels=4, out_channels=6, kernel_size=3, stride=2,
                                    padding=2, dilation=2, groups=2), (4, 9)),
               absent={"onnx": "ONNX Conv is Conv2d's rule, which makes a Conv1d for a "
                               "1-d input"})
