"""Layers that move values without arithmetic: Flatten, Pad2d, Dropout (inference)."""
import numbers

import numpy as np

from ..core import local
from ..core.layer import Layer
from ._util import chw


class Flatten(Layer):
    """Flatten every axis but the batch axis: ``(N, *S) -> (N, prod(S))``."""

    linear = True

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape, dtype=np.int64)),)

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.output_shape(x.shape[1:])), x.shape[1:]

    def jvp(self, cache, dx):
        return dx.reshape(dx.shape[:2] + self.output_shape(dx.shape[2:]))

    def vjp(self, cache, gy):
        return gy.reshape(gy.shape[:2] + cache)


class Pad2d(Layer):
    """Zero padding of the last two axes of ``(N, C, H, W)``.

    Parameters
    ----------
    padding : int or (left, right, top, bottom)
        The order of PyTorch's ``ZeroPad2d``. LeNet-5 takes 32x32 images; ``Pad2d(2)``
        feeds it 28x28 MNIST digits.
    """

    linear = True

    def __init__(self, padding):
        if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
            padding = (padding,) * 4
        try:
            padding = tuple(int(p) for p in padding)
        except TypeError:
            raise TypeError(f"Pad2d: padding must be an int or (left, right, top, bottom), "
                            f"got {padding!r}") from None
        if len(padding) != 4 or min(padding) < 0:
            raise ValueError(f"Pad2d: padding must be an int or 4 non-negative ints "
                             f"(left, right, top, bottom), got {padding!r}")
        self.padding = padding

    def get_config(self):
        return {"padding": list(self.padding)}

    def output_shape(self, in_shape):
        C, H, W = chw(self, in_shape)
        l, r, t, b = self.padding
        return (C, H + t + b, W + l + r)

    def _pad(self, x):
        l, r, t, b = self.padding
        out = np.zeros(x.shape[:-2] + (x.shape[-2] + t + b, x.shape[-1] + l + r), x.dtype)
        out[..., t:t + x.shape[-2], l:l + x.shape[-1]] = x
        return out

    def forward(self, x):
        self.output_shape(x.shape[1:])
        return self._pad(x), None

    def jvp(self, cache, dx):
        return self._pad(dx)

    def vjp(self, cache, gy):
        l, r, t, b = self.padding
        return np.ascontiguousarray(gy[..., t:gy.shape[-2] - b, l:gy.shape[-1] - r])

    def window_rule(self, window):
        return local.shift(window, self.padding[2], self.padding[0])

    def window_jvp(self, cache, T, window, nxt, n, slope=None):
        """Zero windows around the image (``T`` is channels-last, (N, H, W, ...))."""
        left, right, top, bottom = self.padding
        N, H, W = T.shape[:3]
        out = np.zeros((N, H + top + bottom, W + left + right) + T.shape[3:], T.dtype)
        out[:, top:top + H, left:left + W] = T
        return out


class Dropout(Layer):
    """Dropout at inference: the identity. ``p`` is kept so a model round-trips, and the
    trainer never drops units (fwdderiv differentiates deterministic networks)."""

    linear = True
    pointwise = True

    def __init__(self, p=0.5):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)

    def get_config(self):
        return {"p": self.p}

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def forward(self, x):
        return x, None

    def jvp(self, cache, dx):
        return dx

    def vjp(self, cache, gy):
        return gy
