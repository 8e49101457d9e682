"""Fully connected layer: y = x W^T + b."""
import numpy as np

from .._threads import matmul
from ..kernels.pool import gather
from ..core.layer import Layer, cast_param, fold, init_uniform, unfold
from ._util import positive_int


#: :meth:`Linear.jvp_scaled` multiplies only the live columns when the most live of a
#: batch's examples has at most this share of the inputs: above it one product of the
#: whole batch is faster than the stacked per-example products. Measured on forward
#: Jacobians (float32, in-process rounds), against 0.5: LeNet-5 at B=128, 55-60% of the
#: 120 units live, 1.2-1.35x faster (the conv before it then computes only the live
#: columns too); the MLP at B=128 1.45x; mnist_convnet at B=16 within the noise. 0.8,
#: 0.9 and 1.0 were within the noise of each other.
LIVE_SHARE = 0.8


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
    takes_columns = True

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

    def live_columns(self, slope):
        """The inputs worth multiplying for each example, given the ``slope`` (N,
        in_features) of an elementwise layer before this one: ``(N, a)`` indices, the
        live (non-zero slope) ones first, then dead ones to pad every example to the same
        count ``a``; or None where most are live and one product of the whole batch is
        faster (see :data:`LIVE_SHARE`)."""
        live = slope != 0
        a = int(live.sum(axis=1).max()) if slope.shape[0] else 0
        if a > LIVE_SHARE * slope.shape[1]:
            return None
        return np.argsort(~live, axis=1, kind="stable")[:, :max(a, 1)]

    def jvp_scaled(self, cache, dx, slope, cols=None, out_cols=None):
        """The JVP of ``slope * dx`` (``slope`` (N, in_features), the derivative of an
        elementwise layer before this one): each example multiplies only the columns of
        ``dx`` whose slope is non-zero, by the weights scaled with the slope. Behind a
        ReLU most slopes are zero (20% of the MNIST LeNet-5's 120 units are live, 29% of
        its 84), so the product shrinks with them. ``dx`` may have batch 1 (a tangent
        shared by the examples). With ``cols`` from :meth:`live_columns`, ``dx`` (N, D,
        a) holds just those columns of each example. ``out_cols`` (N, b): only these
        outputs of each example, as a tangent (N, D, b)."""
        W = cast_param(self.weight, dx.dtype)
        slope = slope.astype(dx.dtype, copy=False)
        if cols is None:
            cols = self.live_columns(slope)
            if cols is None:
                # most units live: one product of the whole batch beats a stack of
                # smaller ones (the same numbers as the elementwise layer's JVP, then jvp)
                dy = self.jvp(cache, dx * slope[:, None])
                return dy if out_cols is None else \
                    gather(dy[:, :, None, :], out_cols[:, None, :])[:, :, 0, :]
            dx = gather(dx[:, :, None, :], cols[:, None, :])[:, :, 0, :]   # (n, D, a)
        s = np.take_along_axis(slope, cols, axis=1)                       # (n, a)
        Wt = W.T[cols]                                                     # (n, a, O)
        if out_cols is not None:                                           # (n, a, b)
            Wt = np.take_along_axis(Wt, out_cols[:, None, :], axis=2)
        return matmul(dx, Wt * s[:, :, None])

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
