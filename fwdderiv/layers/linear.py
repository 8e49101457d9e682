"""Fully connected layer: y = x W^T + b."""
import numpy as np

from ..threads import matmul
from ..core.layer import Layer, cast_param, fold, init_uniform, unfold
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
