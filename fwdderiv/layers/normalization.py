"""Normalisation layers: batch normalisation in inference form (running statistics),
layer and group normalisation (each example by its own statistics)."""
import numbers

import numpy as np

from ..core.layer import Layer, cast_param
from ..kernels import rows
from .. import schema
from ..registry import Example, register_layer
from . import exchange
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

    linear = True
    pointwise = True
    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var")

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.num_features = positive_int(num_features, "num_features", type(self).__name__)
        self.eps = float(eps)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0 <= momentum <= 1:
            raise ValueError(f"{type(self).__name__}: momentum must be a number in [0, 1] "
                             f"(PyTorch's default 0.1), got {momentum!r}")
        self.momentum = float(momentum)
        self.weight = np.ones(num_features, np.float32)
        self.bias = np.zeros(num_features, np.float32)
        self.running_mean = np.zeros(num_features, np.float32)
        self.running_var = np.ones(num_features, np.float32)

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def output_shape(self, in_shape):
        return chw(self, in_shape, self.num_features)

    def scale(self, dtype):
        r"""The inference form's factor per channel, :math:`\gamma/\sqrt{\sigma^2+\epsilon}`
        (its derivative), in ``dtype``."""
        dtype = np.dtype(dtype)
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
        return dx * self.scale(dx.dtype)[:, None, None]

    def vjp(self, cache, gy):
        if isinstance(cache, tuple):
            return self._batch_jvp(cache, gy)      # the batch map's Jacobian is symmetric
        return gy * self.scale(gy.dtype)[:, None, None]

    def param_vjp(self, cache, gy):
        if isinstance(cache, tuple):
            cache = cache[0]
        axes = (0,) + tuple(range(2, gy.ndim))
        return {"weight": (gy * cache).sum(axis=axes).astype(self.weight.dtype, copy=False),
                "bias": gy.sum(axis=axes).astype(self.bias.dtype, copy=False)}

    @staticmethod
    def _channels(a, ndim):
        """``a`` of shape (C,) shaped to broadcast against a batch of ``ndim`` axes."""
        return a.reshape(a.shape + (1,) * (ndim - 2))

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
        axes = (0,) + tuple(range(2, x.ndim))
        M = x.size // x.shape[1]
        if M < 2:
            raise ValueError(f"{self!r} in training mode needs more than one value per "
                             f"channel (batch statistics), got input of shape {x.shape}; "
                             f"use a larger batch or the inference form (training=False)")
        c = lambda a: self._channels(a, x.ndim)  # noqa: E731
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        inv = 1 / np.sqrt(var + x.dtype.type(self.eps))
        xhat = (x - c(mean)) * c(inv)
        y = xhat * c(cast_param(self.weight, x.dtype)) + c(cast_param(self.bias, x.dtype))
        m = self.momentum
        self.running_mean[...] = (1 - m) * self.running_mean + m * mean
        self.running_var[...] = (1 - m) * self.running_var + m * var * (M / (M - 1))
        return y, (xhat, inv)

    def _batch_jvp(self, cache, dx):
        """The batch map's derivative along ``dx`` (N, D, C, H, W): each direction d moves
        every example at once; statistics over (N, H, W) per d and channel."""
        xhat, inv = cache
        xh = xhat[:, None]
        axes = (0,) + tuple(range(3, dx.ndim))
        mean_d = dx.mean(axis=axes, keepdims=True)
        mean_dx = (dx * xh).mean(axis=axes, keepdims=True)
        scale = self._channels(cast_param(self.weight, dx.dtype) * inv, dx.ndim - 1)
        return scale * (dx - mean_d - xh * mean_dx)

class BatchNorm1d(BatchNorm2d):
    r"""Per-channel affine normalisation with running statistics (inference form) of
    ``(N, C)`` or ``(N, C, L)`` inputs, as ``torch.nn.BatchNorm1d`` in ``eval()`` mode;
    with ``training`` set, the training form of :class:`BatchNorm2d` (statistics over
    the batch and ``L``).

    ``momentum`` is accepted and kept (it only matters for training statistics);
    ``affine=False`` and ``track_running_stats=False`` are refused (this layer is the
    inference form with its parameters).
    """

    pointwise = False

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__(num_features, eps, momentum)
        if not affine or not track_running_stats:
            raise ValueError("BatchNorm1d: affine=False and track_running_stats=False are not "
                             "supported (inference form with weight, bias and running "
                             "statistics); use the defaults")

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        if len(in_shape) not in (1, 2) or in_shape[0] != self.num_features:
            raise self._input_error(f"(N, {self.num_features}) or (N, {self.num_features}, L)",
                                    ("N",) + in_shape, "BatchNorm1d normalises axis 1 of a 2-D "
                                    "or 3-D batch; use BatchNorm2d for images")
        return in_shape

    def forward(self, x):
        if self.training:
            return self.forward_train(x)
        self.output_shape(x.shape[1:])
        c = lambda p: self._channels(cast_param(p, x.dtype), x.ndim)  # noqa: E731
        xhat = (x - c(self.running_mean)) / np.sqrt(c(self.running_var) + x.dtype.type(self.eps))
        return xhat * c(self.weight) + c(self.bias), xhat

    def jvp(self, cache, dx):
        if isinstance(cache, tuple):
            return self._batch_jvp(cache, dx)
        return dx * self._channels(self.scale(dx.dtype), dx.ndim - 1)

    vjp = jvp                       # both forms' Jacobians are symmetric

    def jvp_grad(self, cache, x, dx, gdy):
        """As BatchNorm2d's (linear in inference form: only the weight has a gradient),
        summed over every axis but the channels of ``dx`` (N, D, C[, L])."""
        if isinstance(cache, tuple):
            return super().jvp_grad(cache, x, dx, gdy)      # its error: the training form
        inv = 1 / np.sqrt(cast_param(self.running_var, dx.dtype) + dx.dtype.type(self.eps))
        gw = (gdy * dx).sum(axis=(0, 1) + tuple(range(3, dx.ndim))) * inv
        return None, {"weight": gw.astype(self.weight.dtype, copy=False),
                      "bias": np.zeros_like(self.bias)}



def _standardise(x, axes, eps):
    """``(x - mean) * r`` and ``r = 1/sqrt(var + eps)`` over ``axes`` (biased variance)."""
    xc = x - x.mean(axis=axes, keepdims=True)
    r = 1 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + x.dtype.type(eps))
    return xc * r, r


def _standardise_jvp(xhat, r, dx, axes):
    r"""Tangent of :func:`_standardise` (also its VJP: the Jacobian
    :math:`r(I - \frac1m 1 1^T - \frac1m \hat x \hat x^T)` is symmetric). ``dx`` carries
    a direction axis after the batch; ``axes`` are negative so they fit both. Over the
    trailing axes (a layer norm, a group norm's groups) in one dtype: one pass per row
    (:func:`fwdderiv.kernels.rows.standardise_jvp`)."""
    k = len(axes)
    if tuple(axes) == tuple(range(-k, 0)) and dx.ndim == xhat.ndim + 1 and \
            dx.dtype == xhat.dtype == r.dtype:
        merged = rows.standardise_jvp(xhat.reshape(xhat.shape[:-k] + (-1,)),
                                      r.reshape(r.shape[:-k] + (1,)),
                                      dx.reshape(dx.shape[:-k] + (-1,)))
        return merged.reshape(dx.shape)
    xh = xhat[:, None]
    return r[:, None] * (dx - dx.mean(axis=axes, keepdims=True)
                         - xh * (xh * dx).mean(axis=axes, keepdims=True))


def _standardise_jvp_grad(xhat, r, dx, g, axes):
    r"""The gradient in ``x`` of :math:`s = \sum_d \langle g_d, d\hat x_d\rangle`, the
    tangents ``dx`` (N, D, ...) and cotangents ``g`` of :func:`_standardise_jvp` fixed.

    With :math:`m` entries per group, :math:`b_d = \langle g_d, \hat x\rangle`,
    :math:`c_d = \langle \hat x, dx_d\rangle / m`, :math:`s_d = \langle g_d,
    d\hat x_d\rangle`, and :math:`dr = -r^2 \langle \hat x, dx\rangle / m`,
    :math:`d\hat x = A\,dx` (:math:`A` the symmetric map of :func:`_standardise_jvp`):

    .. math:: \nabla_x s = -\sum_d \Big(\frac{r}{m} s_d \hat x
              + r\, A\big(c_d\, g_d + \frac{b_d}{m} dx_d\big)\Big)
    """
    m = int(np.prod([xhat.shape[a] for a in axes]))
    xh = xhat[:, None]
    b = (g * xh).sum(axis=axes, keepdims=True)
    c = (dx * xh).mean(axis=axes, keepdims=True)
    s = (g * _standardise_jvp(xhat, r, dx, axes)).sum(axis=axes, keepdims=True)
    v = (c * g + (b / m) * dx).sum(axis=1, keepdims=True)
    return -((r / m) * (s.sum(axis=1)) * xhat
             + r * _standardise_jvp(xhat, r, v, axes)[:, 0])


class LayerNorm(Layer):
    r"""Normalisation of each example over its last axes, ``torch.nn.LayerNorm``.

    .. math::
        \hat x = (x - \mu)\, r,\quad r = (\sigma^2 + \epsilon)^{-1/2},\quad
        y = \gamma \hat x + \beta, \qquad
        d\hat x = r\,(dx - \overline{dx} - \hat x\, \overline{\hat x\, dx})

    with means (and the biased variance) over the ``normalized_shape`` axes. Nonlinear:
    the forward pass caches :math:`\hat x` and :math:`r`.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        try:
            self.normalized_shape = tuple(int(s) for s in normalized_shape)
        except (TypeError, ValueError):
            raise TypeError(f"LayerNorm: normalized_shape must be an int or a sequence of ints, "
                            f"got {normalized_shape!r}") from None
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = np.ones(self.normalized_shape, np.float32) if elementwise_affine else None
        self.bias = np.zeros(self.normalized_shape, np.float32) \
            if elementwise_affine and bias else None
        self.param_names = tuple(n for n in ("weight", "bias") if getattr(self, n) is not None)

    def get_config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.bias is not None}

    def output_shape(self, in_shape):
        k = len(self.normalized_shape)
        if tuple(in_shape)[len(in_shape) - k:] != self.normalized_shape or len(in_shape) < k:
            raise self._input_error(f"(N, ..., {', '.join(map(str, self.normalized_shape))})",
                                    ("N",) + tuple(in_shape),
                                    "the last axes of an example must be normalized_shape")
        return tuple(in_shape)

    def _axes(self):
        return tuple(range(-len(self.normalized_shape), 0))

    def forward(self, x):
        self.output_shape(x.shape[1:])
        xhat, r = _standardise(x, self._axes(), self.eps)
        y = xhat if self.weight is None else xhat * cast_param(self.weight, x.dtype)
        if self.bias is not None:
            y = y + cast_param(self.bias, x.dtype)
        return y, (xhat, r)

    def jvp(self, cache, dx):
        d = _standardise_jvp(*cache, dx, self._axes())
        return d if self.weight is None else d * cast_param(self.weight, dx.dtype)

    def vjp(self, cache, gy):
        if self.weight is not None:
            gy = gy * cast_param(self.weight, gy.dtype)
        return _standardise_jvp(*cache, gy, self._axes())

    def param_vjp(self, cache, gy):
        lead = tuple(range(gy.ndim - len(self.normalized_shape)))
        grads = {}
        if self.weight is not None:
            grads["weight"] = (gy * cache[0]).sum(axis=lead).astype(self.weight.dtype)
        if self.bias is not None:
            grads["bias"] = gy.sum(axis=lead).astype(self.bias.dtype)
        return grads

    def jvp_grad(self, cache, x, dx, gdy):
        r"""Of :math:`\sum \langle g, \gamma\, d\hat x\rangle`: in ``x`` by
        :func:`_standardise_jvp_grad` (the statistics move with ``x``); in
        :math:`\gamma` the sum of :math:`g\, d\hat x`; none in :math:`\beta`."""
        xhat, r = cache
        axes = self._axes()
        g = gdy if self.weight is None else gdy * cast_param(self.weight, gdy.dtype)
        gx = _standardise_jvp_grad(xhat, r, dx, g, axes)
        grads = {}
        if self.weight is not None:
            lead = tuple(range(gdy.ndim - len(self.normalized_shape)))
            d = _standardise_jvp(xhat, r, dx, axes)
            grads["weight"] = (gdy * d).sum(axis=lead).astype(self.weight.dtype)
        if self.bias is not None:
            grads["bias"] = np.zeros_like(self.bias)
        return gx, grads


class GroupNorm(Layer):
    r"""Normalisation of each example over groups of channels, ``torch.nn.GroupNorm``:
    ``(N, C, *S)`` is viewed as ``(N, G, C/G * prod(S))``, each group standardised as in
    :class:`LayerNorm`, then scaled and shifted per channel. Nonlinear; the forward pass
    caches the standardised input and :math:`r` per group."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        self.num_groups = positive_int(num_groups, "num_groups", "GroupNorm")
        self.num_channels = positive_int(num_channels, "num_channels", "GroupNorm")
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.eps = float(eps)
        self.affine = bool(affine)
        self.weight = np.ones(num_channels, np.float32) if affine else None
        self.bias = np.zeros(num_channels, np.float32) if affine else None
        self.param_names = ("weight", "bias") if affine else ()

    def get_config(self):
        return {"num_groups": self.num_groups, "num_channels": self.num_channels,
                "eps": self.eps, "affine": self.affine}

    def output_shape(self, in_shape):
        in_shape = tuple(in_shape)
        if not in_shape or in_shape[0] != self.num_channels:
            raise self._input_error(f"(N, {self.num_channels}, ...)", ("N",) + in_shape,
                                    "axis 1 must hold num_channels channels")
        return in_shape

    def _group_size(self, shape):
        """Entries per group for a batch of shape ``(N, C, *S)``."""
        return int(np.prod(shape[1:], dtype=np.int64)) // self.num_groups

    def _per_channel(self, p, dtype, ndim):
        return cast_param(p, dtype).reshape((-1,) + (1,) * (ndim - 2))

    def forward(self, x):
        self.output_shape(x.shape[1:])
        xhat, r = _standardise(x.reshape(x.shape[0], self.num_groups, self._group_size(x.shape)), (-1,), self.eps)
        y = xhat.reshape(x.shape)
        if self.affine:
            y = y * self._per_channel(self.weight, x.dtype, x.ndim) + \
                self._per_channel(self.bias, x.dtype, x.ndim)
        return y, (xhat, r)

    def jvp(self, cache, dx):
        N, D = dx.shape[:2]
        d = _standardise_jvp(*cache, dx.reshape(N, D, self.num_groups, self._group_size(dx.shape[1:])), (-1,))
        d = d.reshape(dx.shape)
        return d * self._per_channel(self.weight, dx.dtype, dx.ndim - 1) if self.affine else d

    def vjp(self, cache, gy):
        if self.affine:
            gy = gy * self._per_channel(self.weight, gy.dtype, gy.ndim - 1)
        N, K = gy.shape[:2]
        return _standardise_jvp(*cache, gy.reshape(N, K, self.num_groups, self._group_size(gy.shape[1:])),
                                (-1,)).reshape(gy.shape)

    def param_vjp(self, cache, gy):
        if not self.affine:
            return {}
        xhat = cache[0].reshape(gy.shape)
        axes = (0,) + tuple(range(2, gy.ndim))
        return {"weight": (gy * xhat).sum(axis=axes).astype(self.weight.dtype),
                "bias": gy.sum(axis=axes).astype(self.bias.dtype)}

    def jvp_grad(self, cache, x, dx, gdy):
        """As :meth:`LayerNorm.jvp_grad`, per group of channels."""
        xhat, r = cache
        if self.affine:
            g = gdy * self._per_channel(self.weight, gdy.dtype, gdy.ndim - 1)
        else:
            g = gdy
        N, D = dx.shape[:2]
        shape = (N, D, self.num_groups, self._group_size(dx.shape[1:]))
        gx = _standardise_jvp_grad(xhat, r, dx.reshape(shape), g.reshape(shape), (-1,))
        grads = {}
        if self.affine:
            d = _standardise_jvp(xhat, r, dx.reshape(shape), (-1,)).reshape(dx.shape)
            axes = (0, 1) + tuple(range(3, dx.ndim))
            grads = {"weight": (gdy * d).sum(axis=axes).astype(self.weight.dtype),
                     "bias": np.zeros_like(self.bias)}
        return gx.reshape(x.shape), grads


# -- registry entries ------------------------------------------------------------------------
def _bn_arrays(c):
    return {k: (c["num_features"],) for k in ("weight", "bias", "running_mean", "running_var")}


_BN_SCHEMA = schema.LayerSchema({"num_features": (schema.POSITIVE, schema.REQUIRED),
                                 "eps": schema.EPS, "momentum": (schema.real(0, 1), 0.1)},
                                _bn_arrays)


def _affine_arrays(names, key):
    def arrays(c):
        shape = tuple(c[key]) if isinstance(c[key], list) else (c[key],)
        return {n: shape for n in names(c)}
    return arrays


_LN_SCHEMA = schema.LayerSchema(
    {"normalized_shape": (schema.int_list(minimum=0, maximum=2**40), schema.REQUIRED),
     "eps": schema.EPS, "elementwise_affine": (schema.boolean, True),
     "bias": (schema.boolean, True)},
    _affine_arrays(lambda c: [n for n, on in (("weight", c["elementwise_affine"]),
                                             ("bias", c["elementwise_affine"] and c["bias"]))
                              if on], "normalized_shape"))
_GN_SCHEMA = schema.LayerSchema(
    {"num_groups": (schema.POSITIVE, schema.REQUIRED),
     "num_channels": (schema.POSITIVE, schema.REQUIRED), "eps": schema.EPS,
     "affine": (schema.boolean, True)},
    _affine_arrays(lambda c: ["weight", "bias"] if c["affine"] else [], "num_channels"))


def _bn_from_torch(ctx, a):
    x = a["input"]
    if a.get("training"):
        ctx.fail("batch normalization in training mode", "call module.eval() before importing")
    if a["running_mean"] is None:
        ctx.fail("batch normalization without running statistics",
                 "use track_running_stats=True")
    mean, var = ctx.param(a["running_mean"]), ctx.param(a["running_var"])
    name = {3: "BatchNorm2d", 1: "BatchNorm1d", 2: "BatchNorm1d"}.get(len(ctx.shape(x)))
    momentum = a.get("momentum")           # None (a cumulative average): keep the default
    extra = {"momentum": float(momentum)} if isinstance(momentum, (int, float)) else {}
    layer = ctx.layer(name or "BatchNorm3d", num_features=mean.shape[0], eps=float(a["eps"]),
                      **extra)
    layer.running_mean, layer.running_var = mean, var
    layer.weight = ctx.param(a["weight"]) if a["weight"] is not None else mean * 0 + 1
    layer.bias = ctx.param(a["bias"]) if a["bias"] is not None else mean * 0
    return ctx.emit(layer, x)


def _bn_from_onnx(imp, node, a):
    if a.get("training_mode", 0):
        imp.fail("training_mode=1", "training_mode")
    exchange.onnx_unused_outputs(imp, node, "running statistics")
    scale, bias, mean, var = (imp.const(n).copy() for n in node.input[1:5])
    nd = len(imp.shape(node.input[0]))
    layer = imp.layer("BatchNorm2d" if nd == 3 else "BatchNorm1d", num_features=mean.size,
                      eps=float(a.get("epsilon", 1e-5)))
    layer.weight, layer.bias, layer.running_mean, layer.running_var = scale, bias, mean, var
    exchange.onnx_output(imp, node, imp.emit(layer, node.input[0]))


def _affine(ctx, layer, weight, bias):
    """Copy the operator's affine parameters (None: the layer has none) onto ``layer``."""
    if (weight is None) != (layer.weight is None) or (bias is None) != (layer.bias is None):
        ctx.fail("a weight without a bias or the reverse", "use both or neither")
    if weight is not None:
        layer.weight = ctx.param(weight)
    if bias is not None:
        layer.bias = ctx.param(bias)
    return layer


def _ln_from_torch(ctx, a):
    x, shape = a["input"], [int(s) for s in a["normalized_shape"]]
    if list(ctx.shape(x)[len(ctx.shape(x)) - len(shape):]) != shape:
        ctx.fail(f"normalized_shape {shape} on per-example shape {ctx.shape(x)}",
                 "normalise over trailing axes")
    affine = a["weight"] is not None
    layer = ctx.layer("LayerNorm", normalized_shape=shape, eps=float(a["eps"]),
                      elementwise_affine=affine or a["bias"] is not None,
                      bias=a["bias"] is not None)
    return ctx.emit(_affine(ctx, layer, a["weight"], a["bias"]), x)


def _ln_from_onnx(imp, node, a):
    """ONNX ``LayerNormalization`` (opset 17): the axes from ``axis`` to the last."""
    x = node.input[0]
    shape = imp.shape(x)
    axis = int(a.get("axis", -1)) % (len(shape) + 1)
    if axis == 0:
        imp.fail("normalising over the batch axis", "axis", "normalise per-example axes")
    exchange.onnx_unused_outputs(imp, node, "mean or inverse standard deviation")
    normalized = shape[axis - 1:]
    scale = imp.const(node.input[1])
    bias = imp.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    layer = imp.layer("LayerNorm", normalized_shape=list(normalized),
                      eps=float(a.get("epsilon", 1e-5)), bias=bias is not None)
    layer.weight = np.broadcast_to(scale, normalized).astype(scale.dtype)
    if bias is not None:
        layer.bias = np.broadcast_to(bias, normalized).astype(bias.dtype)
    exchange.onnx_output(imp, node, imp.emit(layer, x))


def _gn_from_torch(ctx, a):
    x = a["input"]
    layer = ctx.layer("GroupNorm", num_groups=int(a["num_groups"]),
                      num_channels=ctx.shape(x)[0], eps=float(a["eps"]),
                      affine=a["weight"] is not None)
    return ctx.emit(_affine(ctx, layer, a["weight"], a["bias"]), x)


_BY_BN2D = {"torch": "BatchNorm2d's rule makes a BatchNorm1d for (N, C) and (N, C, L)",
            "onnx": "BatchNorm2d's rule makes a BatchNorm1d for (N, C) and (N, C, L)"}
_NO_ONNX = {"onnx": "from_onnx has no rule for its ONNX operator yet"}

register_layer(BatchNorm2d, schema=_BN_SCHEMA,
               torch={"batch_norm": _bn_from_torch,
                      "_native_batch_norm_legit_no_training":
                          exchange.returns_tuple(_bn_from_torch)},
               onnx={"BatchNormalization": _bn_from_onnx},
               to_torch=exchange.same_torch_module,
               example=Example({"num_features": 3}, (3, 4, 5)))
register_layer(BatchNorm1d, schema=_BN_SCHEMA, to_torch=exchange.same_torch_module,
               example=Example({"num_features": 3}, (3, 4)), absent=_BY_BN2D)
register_layer(LayerNorm, schema=_LN_SCHEMA,
               torch={"layer_norm": _ln_from_torch,
                      "native_layer_norm": exchange.returns_tuple(_ln_from_torch)},
               to_torch=exchange.same_torch_module,
               onnx={"LayerNormalization": _ln_from_onnx},
               example=Example({"normalized_shape": [4, 5]}, (3, 4, 5)))
register_layer(GroupNorm, schema=_GN_SCHEMA, torch={"group_norm": _gn_from_torch},
               to_torch=exchange.same_torch_module,
               example=Example({"num_groups": 2, "num_channels": 4}, (4, 3, 3)),
               absent=_NO_ONNX)
