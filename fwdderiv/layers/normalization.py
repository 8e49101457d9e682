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
    training : bool
        False (the default): the inference form above. True (set by
        :func:`fwdderiv.training.fit` while it trains, as PyTorch's ``model.train()``):
        batch statistics, see :meth:`forward_train`.
    momentum : float
        Weight of the batch statistics in the running averages (PyTorch's 0.1).
    """

    training = False
    momentum = 0.1

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
        if self.training:
            return self.forward_train(x)
        self.output_shape(x.shape[1:])
        mean = cast_param(self.running_mean, x.dtype)[:, None, None]
        xhat = (x - mean) / np.sqrt(cast_param(self.running_var, x.dtype) + x.dtype.type(self.eps))[:, None, None]
        y = xhat * cast_param(self.weight, x.dtype)[:, None, None] + cast_param(self.bias, x.dtype)[:, None, None]
        return y, xhat

    def jvp(self, cache, dx):
        if isinstance(cache, tuple):
            return self._batch_jvp(cache, dx)
        return dx * self._scale(dx.dtype)[:, None, None]

    def vjp(self, cache, gy):
        if isinstance(cache, tuple):
            return self._batch_jvp(cache, gy)      # the batch map's Jacobian is symmetric
        return gy * self._scale(gy.dtype)[:, None, None]

    def param_vjp(self, cache, gy):
        if isinstance(cache, tuple):
            cache = cache[0]
        return {"weight": (gy * cache).sum(axis=(0, 2, 3)).astype(self.weight.dtype, copy=False),
                "bias": gy.sum(axis=(0, 2, 3)).astype(self.bias.dtype, copy=False)}

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum \langle g, \gamma\,dx/\sqrt{\sigma^2+\epsilon}\rangle`
        (inference form, linear): only :math:`\gamma` has a gradient."""
        if isinstance(cache, tuple):
            raise NotImplementedError(
                f"{self!r}: second-order derivatives use the inference form (running "
                f"statistics); set training=False")
        inv = 1 / np.sqrt(cast_param(self.running_var, dx.dtype) + dx.dtype.type(self.eps))
        gw = (gdy * dx).sum(axis=(0, 1, 3, 4)) * inv
        return None, {"weight": gw.astype(self.weight.dtype, copy=False),
                      "bias": np.zeros_like(self.bias)}

    # -- training mode ----------------------------------------------------------------
    def forward_train(self, x):
        r"""Training form (PyTorch's ``train()``): normalise with the batch's statistics
        and update the running averages in place.

        .. math::
            \mu_B = \mathrm{mean}_{n,h,w}\, x, \quad \sigma_B^2 = \mathrm{var}_{n,h,w}\, x
            \;\text{(biased)}, \quad y = \gamma\,\frac{x - \mu_B}{\sqrt{\sigma_B^2 +
            \epsilon}} + \beta

        ``running_mean <- (1 - momentum) running_mean + momentum mu_B``, and the same for
        ``running_var`` with the unbiased batch variance (``M / (M - 1)`` with ``M = N H
        W``), as PyTorch does. The running statistics are the only state a call changes,
        and only in this form. Every output depends on the whole batch: the JVP and VJP
        (``jvp``/``vjp`` with this cache) are those of the batch map, not per example.

        Returns ``(y, (xhat, inv_std))``.
        """
        self.output_shape(x.shape[1:])
        M = x.shape[0] * x.shape[2] * x.shape[3]
        if M < 2:
            raise ValueError(f"{self!r} in training mode needs more than one value per "
                             f"channel (batch statistics), got input of shape {x.shape}; "
                             f"use a larger batch or the inference form (training=False)")
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        inv = 1 / np.sqrt(var + x.dtype.type(self.eps))
        xhat = (x - mean[:, None, None]) * inv[:, None, None]
        y = xhat * cast_param(self.weight, x.dtype)[:, None, None] \
            + cast_param(self.bias, x.dtype)[:, None, None]
        m = self.momentum
        self.running_mean[...] = (1 - m) * self.running_mean + m * mean
        self.running_var[...] = (1 - m) * self.running_var + m * var * (M / (M - 1))
        return y, (xhat, inv)

    def _batch_jvp(self, cache, dx):
        """The batch map's derivative along ``dx`` (N, D, C, H, W): each direction d moves
        every example at once; statistics over (N, H, W) per d and channel."""
        xhat, inv = cache
        xh = xhat[:, None]
        mean_d = dx.mean(axis=(0, 3, 4), keepdims=True)
        mean_dx = (dx * xh).mean(axis=(0, 3, 4), keepdims=True)
        scale = (cast_param(self.weight, dx.dtype) * inv)[:, None, None]
        return scale * (dx - mean_d - xh * mean_dx)
