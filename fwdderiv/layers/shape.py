"""Layers that move values without arithmetic: Flatten, Identity, Pad2d, Dropout and
Dropout2d (inference)."""
import numbers

import numpy as np

from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ..core.layer import Layer
from .padding import ZeroPad2d, zero_pad_to_torch


def _dim(value, name, owner):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    return int(value)


class Flatten(Layer):
    """Flatten axes ``start_dim`` to ``end_dim`` into one, as ``torch.nn.Flatten``.

    Axes count the batch axis as PyTorch does (axis 0 is the batch; negative axes count
    from the end); the defaults ``(1, -1)`` give ``(N, *S) -> (N, prod(S))``. The batch
    axis cannot be flattened (start_dim=0): examples stay separate here.
    """

    linear = True
    reshape = True

    def __init__(self, start_dim=1, end_dim=-1):
        self.start_dim = _dim(start_dim, "start_dim", "Flatten")
        self.end_dim = _dim(end_dim, "end_dim", "Flatten")
        if self.start_dim == 0:
            raise ValueError("Flatten: start_dim=0 would merge the batch axis, which fwdderiv "
                             "keeps separate; use start_dim >= 1 (axis 1 is the first axis "
                             "of an example)")

    def get_config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def __repr__(self):
        return "Flatten()" if (self.start_dim, self.end_dim) == (1, -1) else \
            f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"

    def output_shape(self, in_shape):
        in_shape = tuple(int(s) for s in in_shape)
        ndim = len(in_shape) + 1
        s, e = (d + ndim if d < 0 else d for d in (self.start_dim, self.end_dim))
        if not (1 <= s < ndim and 1 <= e < ndim) or s > e:
            if ndim == 1 and (self.start_dim, self.end_dim) == (1, -1):
                return (1,)
            raise self._input_error(
                f"(N, ...) with axes {self.start_dim}..{self.end_dim} present, start before end",
                ("N",) + in_shape, "choose start_dim/end_dim within the input's axes "
                "(axis 0 is the batch, as in PyTorch)")
        merged = int(np.prod(in_shape[s - 1:e], dtype=np.int64))
        return in_shape[:s - 1] + (merged,) + in_shape[e:]

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.output_shape(x.shape[1:])), x.shape[1:]

    def jvp(self, cache, dx):
        return dx.reshape(dx.shape[:2] + self.output_shape(dx.shape[2:]))

    def vjp(self, cache, gy):
        return gy.reshape(gy.shape[:2] + cache)


class Identity(Layer):
    """The identity, ``y = x``. PyTorch's ``nn.Identity`` takes any arguments and ignores
    them; so does this one."""

    linear = True
    pointwise = True
    reshape = True

    def __init__(self, *args, **kwargs):
        pass

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return x, None

    def jvp(self, cache, dx):
        return dx

    vjp = jvp


class Pad2d(ZeroPad2d):
    """Zero padding of the last two axes of ``(N, C, H, W)``: the name saved models use
    for :class:`ZeroPad2d` (same arguments, same layer).

    Parameters
    ----------
    padding : int or (left, right, top, bottom)
        The order of PyTorch's ``ZeroPad2d``. LeNet-5 takes 32x32 images; ``Pad2d(2)``
        feeds it 28x28 MNIST digits.
    """


class Dropout(Identity):
    """Dropout at inference: the identity. ``p`` is kept so a model round-trips, and the
    trainer never drops units (fwdderiv differentiates deterministic networks). As in
    PyTorch, ``0 <= p <= 1``; ``inplace`` is accepted and changes nothing."""

    def __init__(self, p=0.5, inplace=False):
        name = type(self).__name__
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ValueError(f"{name}: p must be in [0, 1] (a probability), got {p!r}")
        self.p = float(p)

    def get_config(self):
        return {"p": self.p}


class Dropout2d(Dropout):
    """Channel dropout (``torch.nn.Dropout2d``) at inference: the identity."""


# -- registry entries ------------------------------------------------------------------------
def _identity(ctx, a):
    return ctx.value(exchange.torch_input(a))


def _dropout(ctx, a):
    if a.get("train"):
        ctx.fail("dropout in training mode", "call module.eval() before importing")
    return _identity(ctx, a)


def _flatten_from_onnx(imp, node, a):
    nd = len(imp.shape(node.input[0]))
    if int(a.get("axis", 1)) % (nd + 1) != 1:
        imp.fail(f"axis={a.get('axis')} (only 1 keeps the batch axis)", "axis")
    exchange.onnx_output(imp, node, imp.emit(imp.layer("Flatten"), node.input[0]))


_PASSED = {"onnx": "ONNX Identity and Dropout pass values, shapes and constants through "
                   "in the importer itself (fwdderiv.interop.onnx_ops)"}
_P = {"p": (schema.real(0, 1), 0.5)}

register_layer(Flatten, schema=schema.LayerSchema({"start_dim": (schema.dim, 1),
                                                   "end_dim": (schema.dim, -1)}),
               onnx={"Flatten": _flatten_from_onnx}, to_torch=exchange.same_torch_module,
               example=Example({"start_dim": 2}, (2, 3, 4)),
               absent={"torch": "aten.view/reshape/flatten are the Reshape layer's rule, "
                                "which makes a Flatten for (N, F)"})
register_layer(Identity, schema=schema.LayerSchema({}),
               torch={op: _identity for op in ("clone", "contiguous", "alias", "detach",
                                               "lift_fresh_copy")},
               to_torch=exchange.same_torch_module, example=Example({}, (2, 3)),
               absent=_PASSED)
register_layer(Dropout, schema=schema.LayerSchema(_P),
               torch={"dropout": _dropout, "dropout_": _dropout, "feature_dropout": _dropout,
                      "alpha_dropout": _dropout,
                      "native_dropout": exchange.returns_tuple(_dropout)},
               to_torch=exchange.same_torch_module, example=Example({"p": 0.3}, (5,)),
               absent=_PASSED)
register_layer(Dropout2d, schema=schema.LayerSchema(_P), to_torch=exchange.same_torch_module,
               example=Example({"p": 0.3}, (2, 3, 3)),
               absent={"torch": "Dropout's rule: at inference every dropout is the identity",
                       **_PASSED})
register_layer(Pad2d, schema=schema.LayerSchema(
                   {"padding": (schema.ints(4, -schema.MAX_EXTENT), schema.REQUIRED)}),
               to_torch=zero_pad_to_torch,
               example=Example({"padding": [1, 0, 2, 1]}, (2, 4, 5)),
               absent={kind: "the name saved models use for ZeroPad2d; imported models get "
                             "the Pad layer" for kind in ("torch", "onnx")})
