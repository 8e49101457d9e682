"""Elementwise activations, each a :class:`fwdderiv.core.Elementwise`: the forward pass
caches f'(x), the only thing the JVP (``f'(x) * dx``) and the VJP (``f'(x) * gy``) need."""
import numbers

import numpy as np

from ..core.elementwise import Elementwise
from .. import schema
from ..kernels.activation import erf, relu
from ..registry import Example, register_layer
from . import exchange
from ._util import finite_real


class ReLU(Elementwise):
    r"""Rectifier, :math:`y = \max(x, 0)`.

    Kink convention (PyTorch's): relu'(0) = 0, so the derivative is ``1[not x <= 0]``;
    a NaN input gives a NaN output and passes the derivative through, as PyTorch does.
    """

    kink_points = (0.0,)

    def value_and_slope(self, x):
        return relu(x)

    def second_slope(self, x):
        """Zero: ReLU is piecewise linear (its second derivative is zero everywhere but
        at the kink 0, where it does not exist; PyTorch's double backward also gives 0)."""
        return np.zeros_like(x)


class Sigmoid(Elementwise):
    r"""Logistic function, :math:`y = 1/(1+e^{-x})`, :math:`y' = y(1-y)`."""

    def value_and_slope(self, x):
        # exp of a non-positive number only: no overflow warning for large |x|
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return y, y * (1 - y)

    def second_slope(self, x):
        r""":math:`y'' = y(1-y)(1-2y)`."""
        y = self.value_and_slope(x)[0]
        return y * (1 - y) * (1 - 2 * y)


class Tanh(Elementwise):
    r"""Hyperbolic tangent, :math:`y' = 1 - y^2`."""

    def value_and_slope(self, x):
        y = np.tanh(x)
        return y, 1 - y * y

    def second_slope(self, x):
        r""":math:`y'' = -2y(1-y^2)`."""
        y = np.tanh(x)
        return -2 * y * (1 - y * y)

class Erf(Elementwise):
    r"""The error function, :math:`y = \operatorname{erf}(x)`, :math:`y' = \frac{2}{\sqrt\pi}
    e^{-x^2}` (``torch.erf``; ONNX ``Erf``): the exact GELU as it is written by hand,
    ``0.5 * x * (1 + erf(x / sqrt(2)))``, and as ``torch.onnx`` exports ``nn.GELU`` before
    opset 20. Smooth: no kinks."""

    def value_and_slope(self, x):
        t = x.dtype.type
        return erf(x), np.exp(-x * x) * t(2 / np.sqrt(np.pi))

    def second_slope(self, x):
        r""":math:`y'' = -2x\,y'`."""
        t = x.dtype.type
        return t(-4 / np.sqrt(np.pi)) * x * np.exp(-x * x)


# -- the activations of torch.nn, same names, arguments and defaults ---------------------
# ``inplace`` is accepted where PyTorch has it and ignored: it changes no value here.

def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class LeakyReLU(Elementwise):
    r""":math:`y = x` for :math:`x > 0`, else :math:`a x` (``negative_slope`` a).

    Kink convention (PyTorch's): the slope is ``1 if x > 0 else negative_slope``, so
    LeakyReLU'(0) = negative_slope and a NaN input passes ``negative_slope``."""

    kink_points = (0.0,)

    def __init__(self, negative_slope=0.01, inplace=False):
        self.negative_slope = finite_real(negative_slope, "negative_slope", "LeakyReLU")

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    def value_and_slope(self, x):
        a = x.dtype.type(self.negative_slope)
        pos = x > 0
        return np.where(pos, x, a * x), np.where(pos, x.dtype.type(1), a)


    def second_slope(self, x):
        """Zero: piecewise linear (PyTorch's double backward also gives 0 at the kinks)."""
        return np.zeros_like(x)


class ELU(Elementwise):
    r""":math:`y = x` for :math:`x > 0`, else :math:`\alpha (e^x - 1)`.

    Kink convention (PyTorch's): the slope is ``1 if not x <= 0 else alpha * e^x``, so
    ELU'(0) = alpha and a NaN input passes 1."""

    kink_points = (0.0,)

    def __init__(self, alpha=1.0, inplace=False):
        self.alpha = finite_real(alpha, "alpha", "ELU")

    def get_config(self):
        return {"alpha": self.alpha}

    def value_and_slope(self, x):
        a = x.dtype.type(self.alpha)
        neg = x <= 0
        xn = np.where(neg, x, 0)
        return np.where(neg, a * np.expm1(xn), x), np.where(neg, a * np.exp(xn), x.dtype.type(1))

    def second_slope(self, x):
        r""":math:`\alpha e^x` where :math:`x \le 0` (the slope's side at the kink), else 0."""
        neg = x <= 0
        return np.where(neg, x.dtype.type(self.alpha) * np.exp(np.where(neg, x, 0)),
                        x.dtype.type(0))


class GELU(Elementwise):
    r"""Gaussian error linear unit, :math:`y = x\,\Phi(x)`, :math:`y' = \Phi(x) + x\,\phi(x)`;
    ``approximate='tanh'`` uses :math:`\Phi(x) \approx \frac12(1 + \tanh(\sqrt{2/\pi}
    (x + 0.044715 x^3)))` as PyTorch does. Smooth: no kinks."""

    def __init__(self, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def get_config(self):
        return {"approximate": self.approximate}

    def value_and_slope(self, x):
        t = x.dtype.type
        if self.approximate == "tanh":
            k = t(np.sqrt(2 / np.pi))
            u = k * (x + t(0.044715) * x ** 3)
            th = np.tanh(u)
            y = t(0.5) * x * (1 + th)
            slope = t(0.5) * (1 + th) + t(0.5) * x * (1 - th * th) * k * (1 + t(3 * 0.044715) * x * x)
            return y, slope
        cdf = t(0.5) * (1 + erf(x * t(np.sqrt(0.5))))
        pdf = np.exp(t(-0.5) * x * x) * t(1 / np.sqrt(2 * np.pi))
        return x * cdf, cdf + x * pdf

    def second_slope(self, x):
        r""":math:`\phi(x)(2 - x^2)`; with ``approximate='tanh'``, for
        :math:`u = k(x + c x^3)`, :math:`t = \tanh u`:
        :math:`(1 - t^2)\,(u' + \frac x2 (u'' - 2 t u'^2))`."""
        t = x.dtype.type
        if self.approximate == "tanh":
            k, c = t(np.sqrt(2 / np.pi)), t(0.044715)
            th = np.tanh(k * (x + c * x ** 3))
            du, ddu = k * (1 + t(3) * c * x * x), t(6) * k * c * x
            return (1 - th * th) * (du + t(0.5) * x * (ddu - t(2) * th * du * du))
        pdf = np.exp(t(-0.5) * x * x) * t(1 / np.sqrt(2 * np.pi))
        return pdf * (t(2) - x * x)


class SiLU(Elementwise):
    r""":math:`y = x\,\sigma(x)`, :math:`y' = \sigma(x)(1 + x(1 - \sigma(x)))`. Smooth."""

    def __init__(self, inplace=False):
        pass

    def value_and_slope(self, x):
        s = _sigmoid(x)
        return x * s, s * (1 + x * (1 - s))

    def second_slope(self, x):
        r""":math:`\sigma(1 - \sigma)(2 + x(1 - 2\sigma))`."""
        s = _sigmoid(x)
        return s * (1 - s) * (2 + x * (1 - 2 * s))


class Mish(Elementwise):
    r""":math:`y = x \tanh(\mathrm{softplus}(x))`,
    :math:`y' = \tanh(sp) + x\,\sigma(x)(1 - \tanh^2(sp))`. Smooth."""

    def __init__(self, inplace=False):
        pass

    def value_and_slope(self, x):
        th = np.tanh(np.logaddexp(x.dtype.type(0), x))
        return x * th, th + x * _sigmoid(x) * (1 - th * th)

    def second_slope(self, x):
        r"""With :math:`t = \tanh(\mathrm{softplus}(x))`: :math:`(1 - t^2)\,\sigma(x)
        \,(2 + x(1 - \sigma(x) - 2 t \sigma(x)))`."""
        th = np.tanh(np.logaddexp(x.dtype.type(0), x))
        s = _sigmoid(x)
        return (1 - th * th) * s * (2 + x * (1 - s - 2 * th * s))


class Softplus(Elementwise):
    r""":math:`y = \frac1\beta \log(1 + e^{\beta x})`, and :math:`y = x` where
    :math:`\beta x > ` ``threshold`` (PyTorch's switch to the identity).

    Kink convention (PyTorch's): the slope is ``1 if beta*x > threshold else
    sigmoid(beta*x)``; at ``beta*x == threshold`` it is the sigmoid."""

    def __init__(self, beta=1.0, threshold=20.0):
        self.beta = finite_real(beta, "beta", "Softplus")
        self.threshold = finite_real(threshold, "threshold", "Softplus")
        if self.beta == 0:
            raise ValueError("Softplus: beta must be non-zero, got 0")
        self.kink_points = (self.threshold / self.beta,)

    def get_config(self):
        return {"beta": self.beta, "threshold": self.threshold}

    def value_and_slope(self, x):
        t = x.dtype.type
        bx = x * t(self.beta)
        lin = bx > t(self.threshold)
        with np.errstate(over="ignore"):      # PyTorch's formulas, so kinks agree exactly
            z = np.exp(np.where(lin, t(0), bx))
        y = np.where(lin, x, np.log1p(z) / t(self.beta))
        return y.astype(x.dtype, copy=False), np.where(lin, t(1), z / (z + 1))

    def second_slope(self, x):
        r""":math:`\beta\,\sigma(\beta x)(1 - \sigma(\beta x))`, and 0 on the identity
        side of ``threshold``."""
        t = x.dtype.type
        bx = x * t(self.beta)
        s = _sigmoid(bx)
        return np.where(bx > t(self.threshold), t(0), t(self.beta) * s * (1 - s))


class Hardtanh(Elementwise):
    r""":math:`y = \min(\max(x, a), b)` (``min_val`` a, ``max_val`` b).

    Kink convention (PyTorch's): the slope is ``0 if x <= a or x >= b else 1``, so it
    is 0 at both bounds and 1 at a NaN input."""

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        name = type(self).__name__
        self.min_val = finite_real(min_val, "min_val", name)
        self.max_val = finite_real(max_val, "max_val", name)
        if self.max_val <= self.min_val:
            raise ValueError(f"{name}: max_val must be greater than min_val, got "
                             f"min_val={min_val!r}, max_val={max_val!r}")
        self.kink_points = (self.min_val, self.max_val)

    def get_config(self):
        return {"min_val": self.min_val, "max_val": self.max_val}

    def value_and_slope(self, x):
        t = x.dtype.type
        a, b = t(self.min_val), t(self.max_val)
        flat = (x <= a) | (x >= b)
        return np.where(x < a, a, np.where(x > b, b, x)), (~flat).astype(x.dtype)


    def second_slope(self, x):
        """Zero: piecewise linear (PyTorch's double backward also gives 0 at the kinks)."""
        return np.zeros_like(x)


class ReLU6(Hardtanh):
    r""":math:`y = \min(\max(x, 0), 6)`, PyTorch's ``Hardtanh(0, 6)``.

    Kink convention (PyTorch's): the slope is 0 at x = 0 and at x = 6."""

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0)

    def get_config(self):
        return {}


class Hardswish(Elementwise):
    r""":math:`y = x\,\mathrm{relu6}(x + 3)/6`.

    Kink convention (PyTorch's): the slope is ``0 if x <= -3, x/3 + 1/2 if x < 3, else
    1``, so 0 at x = -3, 1 at x = 3 and 1 at a NaN input."""

    kink_points = (-3.0, 3.0)

    def __init__(self, inplace=False):
        pass

    def value_and_slope(self, x):
        t = x.dtype.type
        y = x * np.minimum(np.maximum(x + t(3), t(0)), t(6)) / t(6)
        slope = np.where(x <= t(-3), t(0), np.where(x < t(3), x / t(3) + t(0.5), t(1)))
        return y, slope.astype(x.dtype, copy=False)

    def second_slope(self, x):
        """1/3 where ``-3 < x < 3`` (the slope's linear piece), else 0."""
        t = x.dtype.type
        return np.where((x > t(-3)) & (x < t(3)), t(1) / t(3), t(0)).astype(x.dtype, copy=False)


class Pow(Elementwise):
    r""":math:`y = x^p` for a constant exponent ``p``, :math:`y' = p\,x^{p-1}`: ``x ** p``,
    ``x.pow(p)``, ``torch.sqrt`` (p = 1/2), ``torch.rsqrt`` (-1/2), ``x.reciprocal()`` and
    division by a value (-1), ``x.square()`` (2), as hand-written normalisations use them.
    Where :math:`x^p` is undefined (a negative base with a fractional exponent, or 0 with a
    negative one) the value is NaN or Inf, as in PyTorch."""

    def __init__(self, exponent):
        self.exponent = finite_real(exponent, "exponent", "Pow")

    def get_config(self):
        return {"exponent": self.exponent}

    def __repr__(self):
        return f"Pow({self.exponent:g})"

    def value_and_slope(self, x):
        p = x.dtype.type(self.exponent)
        with np.errstate(divide="ignore", invalid="ignore"):
            return x ** p, p * x ** (p - 1)

    def second_slope(self, x):
        r""":math:`p(p-1)\,x^{p-2}`."""
        p = x.dtype.type(self.exponent)
        with np.errstate(divide="ignore", invalid="ignore"):
            return p * (p - 1) * x ** (p - 2)


# -- registry entries ------------------------------------------------------------------------
def _elu_from_torch(ctx, a):
    if a["scale"] != 1 or a["input_scale"] != 1:
        ctx.fail("scale/input_scale other than 1 (SELU, CELU)", "use nn.ELU")
    return ctx.emit(ctx.layer("ELU", alpha=float(a["alpha"])), a["self"])


def _hardtanh_from_torch(ctx, a):
    lo, hi = float(a["min_val"]), float(a["max_val"])
    if (lo, hi) == (0.0, 6.0):                      # nn.ReLU6 records hardtanh
        return ctx.emit(ctx.layer("ReLU6"), a["self"])
    return ctx.emit(ctx.layer("Hardtanh", min_val=lo, max_val=hi), a["self"])


def _clip_from_onnx(imp, node, a):
    """Clip: bounds as inputs (opset 11 on) or attributes (before). Two bounds make a
    Hardtanh (a ReLU6 for [0, 6], a ReLU for [0, inf)), one a Clamp."""
    def bound(i, attr, default):
        if len(node.input) > i and node.input[i]:
            return float(imp.const(node.input[i]).reshape(()))
        return float(a.get(attr, default))
    lo, hi = bound(1, "min", -np.inf), bound(2, "max", np.inf)
    if (lo, hi) == (0.0, 6.0):
        layer = imp.layer("ReLU6")
    elif (lo, hi) == (0.0, np.inf):
        layer = imp.layer("ReLU")
    elif np.isfinite(lo) and np.isfinite(hi):
        layer = imp.layer("Hardtanh", "min", min_val=lo, max_val=hi)
    elif np.isfinite(lo) or np.isfinite(hi):                # clamp_min, clamp_max
        layer = imp.layer("Clamp", "min", min=lo if np.isfinite(lo) else None,
                          max=hi if np.isfinite(hi) else None)
    else:
        imp.fail(f"a clip to [{lo}, {hi}]", "min", "clip to at least one finite bound")
    exchange.onnx_output(imp, node, imp.emit(layer, node.input[0]))


def _torch_ops(name, *ops, **fixed):
    """The rule for ``ops`` and their in-place forms (``relu_``)."""
    rule = exchange.torch_elementwise(name, **fixed)
    return {op + suffix: rule for op in ops for suffix in ("", "_")}


_NO_ONNX_OP = "from_onnx has no rule for its ONNX operator yet"
_BY_CLIP = "ONNX Clip is the Hardtanh layer's rule, which makes a ReLU6 for [0, 6]"
_IMAGE = (2, 3, 4)
_NO_FIELDS = schema.LayerSchema({})
_ANY = schema.ANY_REAL

for _cls, _fields, _torch, _onnx, _config in (
        (ReLU, {}, _torch_ops("ReLU", "relu"), {"Relu": ()}, {}),
        (Sigmoid, {}, _torch_ops("Sigmoid", "sigmoid"), {"Sigmoid": ()}, {}),
        (Tanh, {}, _torch_ops("Tanh", "tanh"), {"Tanh": ()}, {}),
        (LeakyReLU, {"negative_slope": (_ANY, 0.01)},
         _torch_ops("LeakyReLU", "leaky_relu", negative_slope="negative_slope"),
         {"LeakyRelu": {"negative_slope": ("alpha", 0.01)}}, {"negative_slope": 0.2}),
        (ELU, {"alpha": (_ANY, 1.0)}, {"elu": _elu_from_torch, "elu_": _elu_from_torch},
         None, {"alpha": 0.7}),
        (GELU, {"approximate": (schema.choice("none", "tanh"), "none")},
         {"gelu": exchange.torch_elementwise("GELU", approximate="approximate")},
         {"Gelu": {"approximate": ("approximate", "none")}}, {"approximate": "tanh"}),
        (SiLU, {}, _torch_ops("SiLU", "silu"), None, {}),
        (Mish, {}, {"mish": exchange.torch_elementwise("Mish")}, None, {}),
        (Softplus, {"beta": (_ANY, 1.0), "threshold": (_ANY, 20.0)},
         {"softplus": exchange.torch_elementwise("Softplus", beta="beta",
                                                 threshold="threshold")},
         None, {"beta": 2.0, "threshold": 1.0}),
        (Hardtanh, {"min_val": (_ANY, -1.0), "max_val": (_ANY, 1.0)},
         {"hardtanh": _hardtanh_from_torch, "hardtanh_": _hardtanh_from_torch},
         {"Clip": _clip_from_onnx}, {"min_val": -0.5, "max_val": 1.5}),
        (ReLU6, {}, _torch_ops("ReLU6", "relu6"), _BY_CLIP, {}),
        (Hardswish, {}, _torch_ops("Hardswish", "hardswish"), None, {})):
    _onnx_rules = None if _onnx is None or isinstance(_onnx, str) else {
        op: names if callable(names) else exchange.onnx_elementwise(_cls.__name__, **dict(names))
        for op, names in _onnx.items()}
    register_layer(
        _cls, schema=schema.LayerSchema(_fields) if _fields else _NO_FIELDS, torch=_torch,
        onnx=_onnx_rules, to_torch=exchange.same_torch_module,
        example=Example(_config, _IMAGE),
        absent={"onnx": _onnx if isinstance(_onnx, str) else _NO_ONNX_OP}
        if _onnx is None or isinstance(_onnx, str) else {})


def _erf_to_torch(layer):
    import torch
    return exchange.torch_function_module(torch.erf, "Erf")


register_layer(Erf, schema=_NO_FIELDS, torch=_torch_ops("Erf", "erf"),
               onnx={"Erf": exchange.onnx_elementwise("Erf")}, to_torch=_erf_to_torch,
               example=Example({}, _IMAGE))


def _pow_from_torch(exponent):
    def rule(ctx, a):
        x = exchange.torch_input(a)
        p = exponent if exponent is not None else exchange.torch_scalar(ctx, a["exponent"])
        if p is None or not hasattr(x, "name"):
            ctx.fail("a power with a computed exponent or a constant base",
                     "raise values to constant exponents")
        return ctx.emit(ctx.layer("Pow", exponent=p), x)
    return rule


def _pow_from_onnx(exponent):
    def rule(imp, node, a):
        p = exponent
        if p is None:
            p = exchange.onnx_scalar(imp, node.input[1])
            if p is None or node.input[0] not in imp.values:
                imp.fail("a power with a computed or non-scalar exponent",
                         fix="raise values to constant exponents")
        exchange.onnx_output(imp, node, imp.emit(imp.layer("Pow", exponent=p), node.input[0]))
    return rule


register_layer(Pow, schema=schema.LayerSchema({"exponent": (_ANY, schema.REQUIRED)}),
               torch={"pow": _pow_from_torch(None), "sqrt": _pow_from_torch(0.5),
                      "rsqrt": _pow_from_torch(-0.5), "reciprocal": _pow_from_torch(-1.0),
                      "square": _pow_from_torch(2.0)},
               onnx={"Pow": _pow_from_onnx(None), "Sqrt": _pow_from_onnx(0.5),
                     "Reciprocal": _pow_from_onnx(-1.0)},
               to_torch=lambda layer: exchange.torch_function_module(
                   lambda x: x ** layer.exponent, "Pow"),
               example=Example({"exponent": 3.0}, _IMAGE))
