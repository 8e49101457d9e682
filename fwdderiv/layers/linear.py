"""Fully connected layer: y = x W^T + b."""
import numpy as np

from ..threads import matmul
from ..core.layer import Layer, cast_param, fold, init_uniform, unfold
from .. import schema
from ..registry import Example, register_layer
from . import exchange
from ._util import positive_int


class Linear(Layer):
    r"""Affine map of the last axis, PyTorch layout.

    .. math:: y = x W^\top + b, \qquad \frac{dy}{dx}\,v = v W^\top

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
        if len(in_shape) != 1 or in_shape[0] != self.in_features:
            fix = ("put a Flatten() before it" if len(in_shape) > 1 else
                   f"the previous layer must produce {self.in_features} features")
            raise self._input_error(f"(N, {self.in_features})", ("N",) + in_shape, fix)
        return (self.out_features,)

    def forward(self, x):
        self.output_shape(x.shape[1:])
        y = matmul(x, cast_param(self.weight, x.dtype).T)
        if self.bias is not None:
            y += cast_param(self.bias, x.dtype)
        return y, x

    def jvp(self, cache, dx):
        # linear layer: the JVP is the forward map without its bias
        return unfold(matmul(fold(dx), cast_param(self.weight, dx.dtype).T), *dx.shape[:2])

    def vjp(self, cache, gy):
        return unfold(matmul(fold(gy), cast_param(self.weight, gy.dtype)), *gy.shape[:2])

    def param_vjp(self, cache, gy):
        x = cache
        grads = {"weight": (gy.T @ x).astype(self.weight.dtype, copy=False)}
        if self.bias is not None:
            grads["bias"] = gy.sum(axis=0).astype(self.bias.dtype, copy=False)
        return grads

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum \langle g, dx\,W^\top\rangle`: :math:`\partial W = \sum g^\top dx`;
        none in ``x`` or ``b`` (the JVP does not depend on them)."""
        grads = {"weight": (fold(gdy).T @ fold(dx)).astype(self.weight.dtype, copy=False)}
        if self.bias is not None:
            grads["bias"] = np.zeros_like(self.bias)
        return None, grads


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
    if len(ctx.shape(x)) != 1:
        ctx.fail(f"a linear map of per-example shape {ctx.shape(x)}",
                 "flatten to (N, features) before nn.Linear")
    w, b = exchange.torch_weight_bias(ctx, a)
    layer = ctx.layer("Linear", in_features=w.shape[1], out_features=w.shape[0],
                      bias=b is not None)
    layer.weight, layer.bias = w, b
    return ctx.emit(layer, x)


def _emit_onnx(imp, node, x, w, b):
    if imp.shape(x) != (w.shape[1],):
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


def _from_matmul(imp, node, a):
    if node.input[0] not in imp.values:
        imp.fail("a constant on the left of MatMul")
    if imp.const(node.input[1]).ndim != 2 or len(imp.shape(node.input[0])) != 1:
        imp.fail("a batched or broadcast MatMul", fix="only (N, K) @ (K, M) with constant weights")
    _emit_onnx(imp, node, node.input[0],
               np.ascontiguousarray(imp.const(node.input[1]).T), None)


register_layer(Linear, schema=SCHEMA, torch={"linear": _from_torch},
               onnx={"Gemm": _from_gemm, "MatMul": _from_matmul},
               to_torch=exchange.same_torch_module,
               example=Example(dict(in_features=6, out_features=4), (6,)))
