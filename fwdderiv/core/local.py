"""Windowed tangents: the forward derivative of the convolutional prefix of a network,
computed only where it can be non-zero.

With the identity seed, the tangent of input pixel ``p`` after a conv or pooling layer is
non-zero only inside that layer's receptive field around ``p``. Instead of carrying
``D = C0*H0*W0`` dense directions per activation, a windowed tangent carries, for every
activation entry, the derivatives with respect to the ``C0*Rh*Rw`` input pixels of its
receptive field (see :mod:`fwdderiv.kernels.local` for the layout). For LeNet-5 that is
36 instead of 1,024 values per entry after the first conv and pool, and 196 after the
second conv; the work shrinks by the same factors.

The rules, per layer (``(R, S, P)`` = window size, stride and offset of the receptive
field along one axis; output ``y`` sees input pixels ``[y*S - P, y*S - P + R)``):

- Conv2d (kernel k, stride s, padding p, dilation d): for each kernel offset ``(ky, kx)``
  the weighted input windows are added into the output window at ``(ky*d*Sh, kx*d*Sw)``
  (a zero-skipping Numba kernel); ``R' = R + (k-1)*d*S``, ``S' = s*S``, ``P' = P + p*S``.
- MaxPool2d: each output copies its argmax input's window, shifted (same R', S', P' rule).
- AvgPool2d: the mean of the shifted windows.
- Pad2d: zero windows around, ``P' = P + pad*S``.
- ReLU, Sigmoid, Tanh, BatchNorm2d, Dropout: scale each window by the local slope.

The runner uses windows while they are smaller than the dense tangent and converts to the
dense layout ``(N, D, C, H, W)`` before the first layer that is not one of these (Flatten,
Linear...), whose windows would cover the whole input, or whose windows would not fit the
memory budget.
"""
from typing import NamedTuple

import numpy as np

from ..kernels.local import conv_window, maxpool_window, scale_window, to_dense  # noqa: F401
from ..layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, MaxPool2d, Pad2d, ReLU,
                      Sigmoid, Tanh)

_ELEMENTWISE = (ReLU, Sigmoid, Tanh)


class Window(NamedTuple):
    size: tuple     # (Rh, Rw)
    stride: tuple   # (Sh, Sw)
    offset: tuple   # (Ph, Pw)


def _grow(window, kernel, stride, padding, dilation=(1, 1)):
    return Window(
        tuple(r + (k - 1) * d * S for r, k, d, S in zip(window.size, kernel, dilation, window.stride)),
        tuple(s * S for s, S in zip(stride, window.stride)),
        tuple(P + p * S for P, p, S in zip(window.offset, padding, window.stride)))


def next_window(layer, window):
    """The receptive-field window after ``layer``, or None if it has no windowed rule.

    Only the built-in layer types have rules (matched exactly, so a subclass that changes
    the derivative is never given a rule that does not fit it)."""
    kind = type(layer)
    if kind is Conv2d:
        return _grow(window, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    if kind in (MaxPool2d, AvgPool2d):
        return _grow(window, layer.kernel_size, layer.stride, layer.padding)
    if kind is Pad2d:
        left, _, top, _ = layer.padding
        return Window(window.size, window.stride,
                      (window.offset[0] + top * window.stride[0],
                       window.offset[1] + left * window.stride[1]))
    if kind in (*_ELEMENTWISE, BatchNorm2d, Dropout):
        return window
    return None


def plan(layers, shapes):
    """How many leading layers run on windows, and the window after each of them.

    Stops before a layer without a windowed rule, or whose windows would hold as many
    values per entry as the dense tangent (``C0*Rh*Rw >= D``).
    """
    s_in = shapes[0]
    if len(s_in) != 3:
        return 0, []
    C0, H0, W0 = s_in
    window = Window((1, 1), (1, 1), (0, 0))
    windows = []
    for layer in layers:
        nxt = next_window(layer, window)
        if nxt is None or nxt.size[0] * nxt.size[1] >= H0 * W0:
            break
        windows.append(nxt)
        window = nxt
    return len(windows), windows


def elements_per_example(shapes, windows):
    """Peak elements per example while the windowed layers run (for the memory planner):
    input and output windows of a layer, plus a conv's per-offset copy and product."""
    C0 = shapes[0][0]
    sizes = [int(np.prod(shapes[0]))] + [
        int(np.prod(s)) * C0 * w.size[0] * w.size[1] for s, w in zip(shapes[1:], windows)]
    return max((a + 2 * b for a, b in zip(sizes, sizes[1:])), default=0)


def seed(in_shape, dtype, d0=0, d1=None):
    """The identity as a windowed tangent shared by all examples, ``(1, H, W, C0, 1, 1, C0)``,
    restricted to the input directions (flat pixel indices) ``d0 <= d < d1``: the other
    pixels are seeded with zero, and the zero-skipping conv kernel then spends nothing on
    them."""
    C0, H, W = in_shape
    T = np.zeros((1, H, W, C0, 1, 1, C0), dtype)
    d = np.arange(d0, C0 * H * W if d1 is None else d1)
    c, rest = np.divmod(d, H * W)
    y, x = np.divmod(rest, W)
    T[0, y, x, c, 0, 0, c] = 1
    return T


def _avgpool(T, layer, window, nxt):
    N, H, W, C0, Rh, Rw, C = T.shape
    (kh, kw), (s1, s2), (p1, p2) = layer.kernel_size, layer.stride, layer.padding
    _, Ho, Wo = layer.output_shape((C, H, W))
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


def _pad(T, layer):
    left, right, top, bottom = layer.padding
    N, H, W = T.shape[:3]
    out = np.zeros((N, H + top + bottom, W + left + right) + T.shape[3:], T.dtype)
    out[:, top:top + H, left:left + W] = T
    return out


def fuses_into_next(layer, nxt_layer):
    """An elementwise layer directly before a max-pool is applied inside the pool's kernel,
    to the argmax entries only: its full-size output is never built."""
    return type(layer) in _ELEMENTWISE and type(nxt_layer) is MaxPool2d


def jvp(layer, cache, T, window, nxt, n, slope=None):
    """Push the windowed tangent ``T`` through ``layer``; ``n`` is the batch size.
    ``slope`` is the cache of a fused elementwise layer before a max-pool."""
    kind = type(layer)
    if kind is Conv2d:
        _, Ho, Wo = layer.output_shape((T.shape[6],) + T.shape[1:3])
        return conv_window(T, layer, (Ho, Wo), window, nxt.size)
    if kind is MaxPool2d:
        argmax, (C, H, W) = cache
        _, Ho, Wo = layer.output_shape((C, H, W))
        return maxpool_window(T, argmax, (H, W), (Ho, Wo), layer, window, nxt.size, slope)
    if kind is AvgPool2d:
        return _avgpool(T, layer, window, nxt)
    if kind is Pad2d:
        return _pad(T, layer)
    if kind in _ELEMENTWISE:
        return scale_window(T, cache, n)
    if kind is BatchNorm2d:
        return T * layer._scale(T.dtype)      # per channel, the last axis
    if kind is Dropout:
        return T
    raise TypeError(f"no windowed rule for {layer!r}")
