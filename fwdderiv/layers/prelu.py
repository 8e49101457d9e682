r"""The parametric rectifier, ``torch.nn.PReLU``: :math:`y = x` for :math:`x > 0`, else
:math:`a\,x`, with one learnt slope :math:`a` for all entries or one per channel (the
super-resolution networks' activation: FSRCNN, ESPCN, SRResNet)."""
import numpy as np

from .. import schema
from ..core.elementwise import Elementwise
from ..core.layer import cast_param
from ..registry import Example, register_layer
from . import exchange
from ._util import finite_real, positive_int


class PReLU(Elementwise):
    r""":math:`y = x` for :math:`x > 0`, else :math:`a_c\,x`: ``torch.nn.PReLU(num_parameters=1,
    init=0.25)``. With ``num_parameters`` C > 1, slope :math:`a_c` applies to channel c,
    the first per-example axis (axis 1 of ``(N, C, ...)``, as in PyTorch); with 1, one
    slope for every entry.

    .. math:: dy = s \odot dx,\quad s = 1[x > 0] + a\,1[x \le 0],\qquad
              \frac{\partial y}{\partial a_c} = x\,1[x \le 0]\ \text{(channel c)}

    Kink convention (PyTorch's): the slope at :math:`x = 0` is :math:`a`. For the Jacobian
    penalty, :math:`\sum\langle g, s\,dx\rangle` is piecewise constant in :math:`x` (no
    input gradient) and its gradient in :math:`a_c` sums :math:`g\,dx` over the entries of
    channel c with :math:`x \le 0`.

    Parameters
    ----------
    num_parameters : int
        1 (one slope) or the number of channels C.
    init : float
        Initial value of every slope (``weight``, of shape ``(num_parameters,)``).
    """

    param_names = ("weight",)
    kink_points = (0.0,)

    def __init__(self, num_parameters=1, init=0.25):
        self.num_parameters = positive_int(num_parameters, "num_parameters", "PReLU")
        self.init = finite_real(init, "init", "PReLU")
        self.weight = np.full(self.num_parameters, self.init, np.float32)

    def get_config(self):
        return {"num_parameters": self.num_parameters, "init": self.init}

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        C = self.num_parameters
        if C > 1 and (not in_shape or in_shape[0] != C):
            raise self._input_error(
                f"(N, {C}, ...)", ("N",) + in_shape,
                f"{C} slopes apply to the channel axis (axis 1), which must have {C} entries; "
                f"use PReLU({in_shape[0] if in_shape else 1}) or PReLU(1) for one shared slope")
        return in_shape

    def _slopes(self, x):
        """The slope(s), shaped to broadcast over ``x`` of shape (N, *S)."""
        a = cast_param(np.asarray(self.weight).reshape(-1), x.dtype)
        if a.size != self.num_parameters:
            raise ValueError(f"{self!r}: weight must hold {self.num_parameters} slopes, got "
                             f"shape {np.shape(self.weight)}")
        return a.reshape((1, -1) + (1,) * (x.ndim - 2)) if a.size > 1 else a.reshape(())

    def value_and_slope(self, x):
        self.output_shape(x.shape[1:])
        neg = x <= 0
        a = self._slopes(x)
        return np.where(neg, a * x, x), np.where(neg, a, x.dtype.type(1))

    def forward(self, x):
        y, slope = self.value_and_slope(x)
        return y, (slope, x)

    def slope(self, cache):
        return cache[0]

    def jvp(self, cache, dx):
        return cache[0][:, None] * dx

    vjp = jvp                         # a diagonal map is its own transpose

    def _per_slope(self, g):
        """``g`` (N, *S) summed into one entry per slope."""
        axes = (0,) + tuple(range(2, g.ndim)) if self.num_parameters > 1 else None
        return np.asarray(g.sum(axis=axes)).reshape(-1).astype(self.weight.dtype, copy=False)

    def param_vjp(self, cache, gy):
        _, x = cache
        return {"weight": self._per_slope(gy * np.where(x <= 0, x, 0))}

    def jvp_grad(self, cache, x, dx, gdy):
        g = np.einsum("nd...,nd...->n...", gdy, np.broadcast_to(dx, gdy.shape[:1] + dx.shape[1:]))
        return None, {"weight": self._per_slope(np.where(x <= 0, g, 0))}

    def second_slope(self, x):
        """Zero: piecewise linear in ``x``."""
        return np.zeros_like(x)


# -- registry entry --------------------------------------------------------------------------
def _layer_of(weight):
    """A PReLU holding the slopes ``weight`` (one, or one per channel)."""
    weight = np.asarray(weight).reshape(-1).copy()
    layer = PReLU(weight.size)
    layer.weight = weight
    return layer


def _from_torch(ctx, a):                       # aten.prelu(self, weight), _prelu_kernel
    x = a["self"]
    weight = ctx.param(a["weight"])
    shape = ctx.shape(x)
    if weight.size != 1 and (not shape or weight.size != shape[0]):
        ctx.fail(f"{weight.size} PReLU slopes for an input of per-example shape {shape}",
                 "give one slope or one per channel (axis 1)")
    return ctx.emit(_layer_of(weight), x)


def _from_onnx(imp, node, a):
    """ONNX PRelu: the slope broadcasts to the input (PyTorch writes shape (C, 1, 1) for
    images); it must be one number or vary along the channel axis only."""
    x = node.input[0]
    slope = np.asarray(imp.const(node.input[1]))
    full = (1,) + tuple(imp.shape(x))
    try:
        ok = slope.ndim <= len(full) and np.broadcast_shapes(slope.shape, full) == full
    except ValueError:
        ok = False
    lead = (1,) * (len(full) - slope.ndim) + slope.shape     # aligned with (N, *S)
    per_channel = all(n == 1 for i, n in enumerate(lead) if i != 1)
    if not ok or slope.size == 0 or not (slope.size == 1 or per_channel):
        imp.fail(f"a slope of shape {slope.shape} for an input of per-example shape "
                 f"{imp.shape(x)}", fix="use one slope or one per channel (axis 1)")
    exchange.onnx_output(imp, node, imp.emit(_layer_of(slope), x))


register_layer(PReLU, schema=schema.LayerSchema(
                   {"num_parameters": (schema.integer(1), 1), "init": (schema.ANY_REAL, 0.25)},
                   lambda c: {"weight": (c["num_parameters"],)}),
               torch={"prelu": _from_torch, "_prelu_kernel": _from_torch},
               onnx={"PRelu": _from_onnx}, to_torch=exchange.same_torch_module,
               example=Example({"num_parameters": 3}, (3, 4, 5)))
