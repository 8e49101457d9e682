"""Batch normalisation in inference form."""
import numpy as np

from ..core.layer import Layer, cast_param
from ._util import chw, positive_int


class BatchNorm2d(Layer):
    r"""Per-channel affine normalisation with running statistics (inference form).

    .. math::
        y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}\,\gamma + \beta, \qquad
        dy = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}\, dx

    Attributes
    ----------
    weight, bias : ndarray of shape (C,)
        :math:`\gamma`, :math:`\beta` (trainable).
    running_mean, running_var : ndarray of shape (C,)
        :math:`\mu`, :math:`\sigma^2` (saved with the model, not trained).
    eps : float
        The stabilising constant :math:`\epsilon` (PyTorch's default 1e-5).
    """

    linear = True
    pointwise = True
    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var")

    def __init__(self, num_features, eps=1e-5):
        self.num_features = positive_int(num_features, "num_features", "BatchNorm2d")
        self.eps = float(eps)
        self.weight = np.ones(num_features, np.float32)
        self.bias = np.zeros(num_features, np.float32)
        self.running_mean = np.zeros(num_features, np.float32)
        self.running_var = np.ones(num_features, np.float32)

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps}

    def output_shape(self, in_shape):
        return chw(self, in_shape, self.num_features)

    def _scale(self, dtype):
        var = cast_param(self.running_var, dtype)
        return cast_param(self.weight, dtype) / np.sqrt(var + dtype.type(self.eps))

    def forward(self, x):
        self.output_shape(x.shape[1:])
        mean = cast_param(self.running_mean, x.dtype)[:, None, None]
        xhat = (x - mean) / np.sqrt(cast_param(self.running_var, x.dtype) + x.dtype.type(self.eps))[:, None, None]
        y = xhat * cast_param(self.weight, x.dtype)[:, None, None] + cast_param(self.bias, x.dtype)[:, None, None]
        return y, xhat

    def jvp(self, cache, dx):
        return dx * self._scale(dx.dtype)[:, None, None]

    vjp = jvp

    def param_vjp(self, cache, gy):
        return {"weight": (gy * cache).sum(axis=(0, 2, 3)).astype(self.weight.dtype, copy=False),
                "bias": gy.sum(axis=(0, 2, 3)).astype(self.bias.dtype, copy=False)}

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum \langle g, \gamma\,dx/\sqrt{\sigma^2+\epsilon}\rangle`
        (inference form, linear): only :math:`\gamma` has a gradient."""
        inv = 1 / np.sqrt(cast_param(self.running_var, dx.dtype) + dx.dtype.type(self.eps))
        gw = (gdy * dx).sum(axis=(0, 1, 3, 4)) * inv
        return None, {"weight": gw.astype(self.weight.dtype, copy=False),
                      "bias": np.zeros_like(self.bias)}
