"""Fully connected layer: y = x W^T + b."""
import numpy as np

from ..threads import matmul
from ..core.layer import Layer, cast_param, init_uniform
from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ._util import positive_int
from .matmul import linear_of_values


class Linear(Layer):
    r"""Affine map of the last axis, PyTorch layout.

    .. math:: y = x W^\top + b, \qquad \frac{dy}{dx}\,v = v W^\top

    As ``torch.nn.Linear``, it maps the last axis of an example of any shape: features
    ``(N, in_features)``, or tokens ``(N, T, in_features)`` (a transformer's projections).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    seed : int
        Seed of the deterministic initialisation U(-1/sqrt(in), 1/sqrt(in)) (PyTorch's).

    Attributes
    ----------
    weight : ndarray of shape (out_features, in_features)
    bias : ndarray of shape (out_features,) or None
    """

    linear = True

    def __init__(self, in_features, out_features, bias=True, seed=0):
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        rng = np.random.default_rng(seed)
        self.weight = init_uniform(rng, (self.out_features, self.in_features), self.in_features)
        self.bias = init_uniform(rng, (self.out_features,), self.in_features) if bias else None
        self.param_names = ("weight", "bias") if bias else ("weight",)
        self.seed = seed

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        if not in_shape or in_shape[-1] != self.in_features:
            fix = ("put a Flatten() before it"
                   if len(in_shape) > 1 and np.prod(in_shape) == self.in_features else
                   f"the previous layer must produce {self.in_features} features on its "
                   f"last axis")
            raise self._input_error(f"(N, {self.in_features}) or (N, ..., {self.in_features})",
                                    ("N",) + in_shape, fix)
        return in_shape[:-1] + (self.out_features,)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        y = _last_axis(x, cast_param(self.weight, x.dtype).T)
        if self.bias is not None:
            y += cast_param(self.bias, x.dtype)
        return y, x

    def jvp(self, cache, dx):
        # linear layer: the JVP is the forward map without its bias
        return _last_axis(dx, cast_param(self.weight, dx.dtype).T)

    def vjp(self, cache, gy):
        return _last_axis(gy, cast_param(self.weight, gy.dtype))

    def param_vjp(self, cache, gy):
        x = cache
        gy = gy.reshape(-1, self.out_features)          # every token is a row
        grads = {"weight": (gy.T @ x.reshape(-1, self.in_features)).astype(
            self.weight.dtype, copy=False)}
        if self.bias is not None:
            grads["bias"] = gy.sum(axis=0).astype(self.bias.dtype, copy=False)
        return grads

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum \langle g, dx\,W^\top\rangle`: :math:`\partial W = \sum g^\top dx`;
        none in ``x`` or ``b`` (the JVP does not depend on them)."""
        g, d = gdy.reshape(-1, self.out_features), dx.reshape(-1, self.in_features)
        grads = {"weight": (g.T @ d).astype(self.weight.dtype, copy=False)}
        if self.bias is not None:
            grads["bias"] = np.zeros_like(self.bias)
        return None, grads


def _last_axis(v, M):
    """``v @ M`` on the last axis of ``v``, as one 2-D product whatever the leading axes
    (the batch, the directions, the tokens of an example are all rows)."""
    return matmul(v.reshape(-1, v.shape[-1]), M).reshape(v.shape[:-1] + (M.shape[1],))


# -- registry entry --------------------------------------------------------------------------
def _linear_arrays(c):
    shapes = {"weight": (c["out_features"], c["in_features"])}
    if c["bias"]:
        shapes["bias"] = (c["out_features"],)
    return shapes


SCHEMA = schema.LayerSchema({"in_features": (schema.POSITIVE, schema.REQUIRED),
                             "out_features": (schema.POSITIVE, schema.REQUIRED),
                             "bias": (schema.boolean, True)}, _linear_arrays)


def _from_torch(ctx, a):
    x = a["input"]
    if ctx.constant(a["weight"]) is None:           # a weight computed from the input
        return linear_of_values(ctx, a)
    w, b = exchange.torch_weight_bias(ctx, a)
    layer = ctx.layer("Linear", in_features=w.shape[1], out_features=w.shape[0],
                      bias=b is not None)
    layer.weight, layer.bias = w, b
    return ctx.emit(layer, x)


def _emit_onnx(imp, node, x, w, b):
    if imp.shape(x)[-1:] != (w.shape[1],):
        imp.fail(f"a product of per-example shape {imp.shape(x)} with weights {w.shape[::-1]}")
    layer = imp.layer("Linear", in_features=w.shape[1], out_features=w.shape[0],
                      bias=b is not None)
    layer.weight, layer.bias = w, b
    exchange.onnx_output(imp, node, imp.emit(layer, x))


def _from_gemm(imp, node, a):
    x = node.input[0]
    if a.get("transA", 0):
        imp.fail("transA=1", "transA")
    w = imp.const(node.input[1])
    w = (w if a.get("transB", 0) else w.T) * w.dtype.type(a.get("alpha", 1.0))
    c = imp.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if c is not None:
        if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
            imp.fail(f"C of shape {c.shape} (a bias per output is needed)", "C")
        c = np.broadcast_to(c.reshape(-1) * c.dtype.type(a.get("beta", 1.0)),
                            (w.shape[0],)).astype(w.dtype)
    _emit_onnx(imp, node, x, np.ascontiguousarray(w), c)


register_layer(Linear, schema=SCHEMA, torch={"linear": _from_torch},
               onnx={"Gemm": _from_gemm},
               to_torch=exchange.same_torch_module,
               example=Example(dict(in_features=6, out_features=4), (6,)))
