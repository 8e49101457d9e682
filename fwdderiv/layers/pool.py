"""Max and average pooling over the last two axes of (N, C, H, W)."""
import numpy as np

from ..core import local
from ..core.layer import Layer, fold, unfold
from ..kernels import pool as K
from ..kernels.conv import col2im, im2col, out_size
from ..kernels.local import maxpool_window
from ._util import chw, pair


class _Pool2d(Layer):
    uses_kernels = True

    def __init__(self, kernel_size, stride=None, padding=0):
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size} (as in PyTorch)")

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding)}

    def __repr__(self):
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        extra = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        extra += f", padding={self.padding}" if self.padding != (0, 0) else ""
        return f"{type(self).__name__}({k}{extra})"

    def output_shape(self, in_shape):
        C, H, W = chw(self, in_shape)
        Ho = out_size(H, self.kernel_size[0], self.stride[0], self.padding[0], 1)
        Wo = out_size(W, self.kernel_size[1], self.stride[1], self.padding[1], 1)
        if Ho < 1 or Wo < 1:
            raise self._input_error(f"(N, C, H, W) with H, W >= kernel {self.kernel_size}",
                                    ("N",) + tuple(in_shape), "use a smaller pooling window")
        return (C, Ho, Wo)

    def window_rule(self, window):
        return local.grow(window, self.kernel_size, self.stride, self.padding)


class MaxPool2d(_Pool2d):
    """Maximum over each window; ``stride`` defaults to ``kernel_size``.

    The derivative of a window is the derivative of its maximum. Kink convention
    (PyTorch's): among tied maxima the first in row-major window order takes the whole
    derivative. A NaN in a window is its maximum, so NaN propagates. The forward pass
    caches the argmax indices.
    """

    takes_slope = True

    def selection(self, cache):
        """``(argmax, (H, W))``: for every output, the flat index ``iy * W + ix`` of its
        maximum in the input plane of shape ``(H, W)``."""
        argmax, (C, H, W) = cache
        return argmax, (H, W)

    def window_jvp(self, cache, T, window, nxt, n, slope=None):
        argmax, (C, H, W) = cache
        _, Ho, Wo = self.output_shape((C, H, W))
        return maxpool_window(T, argmax, (H, W), (Ho, Wo), self, window, nxt.size, slope)

    def kinks(self, x, tol):
        """Windows whose two largest values are within ``tol`` (ties)."""
        M, C, H, W = x.shape
        cols = im2col(x.reshape(M * C, 1, H, W), self.kernel_size, self.stride,
                      self.padding, (1, 1), fill=-np.inf)
        if cols.shape[2] < 2:
            return 0
        top2 = -np.partition(-cols, 1, axis=2)[:, :, :2]
        return int(np.count_nonzero(np.abs(top2[:, :, 0] - top2[:, :, 1]) <= tol))

    def forward(self, x):
        self.output_shape(x.shape[1:])
        y, argmax = K.maxpool_forward(x, self.kernel_size, self.stride, self.padding)
        return y, (argmax, x.shape[1:])

    def jvp(self, cache, dx):
        argmax, (C, H, W) = cache
        N, D = dx.shape[:2]
        _, Ho, Wo = self.output_shape((C, H, W))
        dy = K.gather(dx.reshape(N, D, C, H * W), argmax)
        return dy.reshape(N, D, C, Ho, Wo)

    def vjp(self, cache, gy, slope=None):
        """``slope`` (N, C, H, W): fuse the VJP of an elementwise layer before the pool
        (the graph runner passes it; ``vjp(cache, gy)`` is the plain protocol call)."""
        argmax, (C, H, W) = cache
        N, Kc = gy.shape[:2]
        gx = K.scatter(gy.reshape(N, Kc, C, argmax.shape[2]), argmax, H * W, slope)
        return gx.reshape(N, Kc, C, H, W)

    def jvp_grad(self, cache, x, dx, gdy):
        """Zero: the JVP selects entries of ``dx`` and does not change with ``x`` except at
        ties, where it is not differentiable (PyTorch's double backward also gives 0)."""
        return None, {}


class AvgPool2d(_Pool2d):
    """Mean over each window; zero padding counts in the mean (PyTorch's default
    ``count_include_pad=True``). Linear, so the JVP is the forward map of the tangent."""

    linear = True

    def work_size(self, in_shape):
        C, Ho, Wo = self.output_shape(in_shape)
        return C * Ho * Wo * self.kernel_size[0] * self.kernel_size[1]

    def _apply(self, x):
        out = self.output_shape(x.shape[1:])
        M, C, H, W = x.shape
        cols = im2col(x.reshape(M * C, 1, H, W), self.kernel_size, self.stride,
                      self.padding, (1, 1))
        return cols.mean(axis=2).reshape((M,) + out)

    def forward(self, x):
        return self._apply(x), x.shape[1:]

    def jvp(self, cache, dx):
        return unfold(self._apply(fold(dx)), *dx.shape[:2])

    def vjp(self, cache, gy):
        C, H, W = cache
        g = fold(gy)
        M, P = g.shape[0] * C, g.shape[2] * g.shape[3]
        kh, kw = self.kernel_size
        cols = np.broadcast_to(g.reshape(M, P, 1) / (kh * kw), (M, P, kh * kw))
        gx = col2im(cols, (1, H, W), self.kernel_size, self.stride, self.padding, (1, 1))
        return gx.reshape(gy.shape[:2] + (C, H, W))

    def window_jvp(self, cache, T, window, nxt, n, slope=None):
        """The mean of the shifted windows of each pooling window."""
        N, H, W, C0, Rh, Rw, C = T.shape
        (kh, kw), (s1, s2), (p1, p2) = self.kernel_size, self.stride, self.padding
        _, Ho, Wo = self.output_shape((C, H, W))
        Tp = np.zeros((N, H + 2 * p1, W + 2 * p2, C0, Rh, Rw, C), T.dtype)
        Tp[:, p1:p1 + H, p2:p2 + W] = T
        out = np.zeros((N, Ho, Wo, C0) + nxt.size + (C,), T.dtype)
        Sh, Sw = window.stride
        scale = T.dtype.type(1.0 / (kh * kw))
        for ky in range(kh):
            for kx in range(kw):
                out[:, :, :, :, ky * Sh:ky * Sh + Rh, kx * Sw:kx * Sw + Rw] += scale * Tp[
                    :, ky:ky + (Ho - 1) * s1 + 1:s1, kx:kx + (Wo - 1) * s2 + 1:s2]
        return out
