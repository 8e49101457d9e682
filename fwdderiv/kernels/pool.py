"""Max-pooling kernels: forward with argmax, tangent gather, cotangent scatter.

``argmax[m, c, p]`` is the flat index ``iy * W + ix`` into the (unpadded) input plane of
the maximum of window ``p``. Ties keep the first maximum in row-major window order; a NaN
in the window wins over any number (the last NaN, as PyTorch's CPU kernel does), so NaN
propagates as in PyTorch.
"""
import numpy as np
from numba import njit, prange

from ..config import NUMBA_OPTS, NUMBA_PARALLEL_OPTS


@njit(**NUMBA_OPTS)
def _take(v, i, best, best_i):
    # a larger value or a NaN takes over (selects, not branches: no mispredicted jumps)
    take = (v > best) | (v != v)
    return (v if take else best), (i if take else best_i)


@njit(**NUMBA_PARALLEL_OPTS)
def _maxpool2(x, Ho, Wo, y, argmax):
    # _maxpool_forward for 2 x 2 windows at stride 2 inside the image: the four taps in
    # row-major order, without the general loop's bounds
    M, C, H, W = x.shape
    for mc in prange(M * C):
        m = mc // C
        c = mc % C
        plane = x[m, c].reshape(-1)
        for oy in range(Ho):
            r = 2 * oy * W
            for ox in range(Wo):
                i = r + 2 * ox
                best, best_i = plane[i], i
                best, best_i = _take(plane[i + 1], i + 1, best, best_i)
                best, best_i = _take(plane[i + W], i + W, best, best_i)
                best, best_i = _take(plane[i + W + 1], i + W + 1, best, best_i)
                y[m, c, oy, ox] = best
                argmax[m, c, oy * Wo + ox] = best_i


@njit(**NUMBA_PARALLEL_OPTS)
def _maxpool_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, y, argmax):
    M, C, H, W = x.shape
    # the taps ky0 <= ky < ky1 of window row oy (and kx of column ox) that lie in the
    # image, found once for every plane
    ky0s, ky1s = np.empty(Ho, np.int64), np.empty(Ho, np.int64)
    kx0s, kx1s = np.empty(Wo, np.int64), np.empty(Wo, np.int64)
    for oy in range(Ho):
        y0 = oy * sh - ph
        ky0s[oy], ky1s[oy] = max(0, (dh - 1 - y0) // dh), min(kh, (H - y0 + dh - 1) // dh)
    for ox in range(Wo):
        x0 = ox * sw - pw
        kx0s[ox], kx1s[ox] = max(0, (dw - 1 - x0) // dw), min(kw, (W - x0 + dw - 1) // dw)
    for mc in prange(M * C):
        m = mc // C
        c = mc % C
        plane = x[m, c].reshape(-1)
        for oy in range(Ho):
            y0 = oy * sh - ph
            ky0, ky1 = ky0s[oy], ky1s[oy]
            for ox in range(Wo):
                x0 = ox * sw - pw
                kx0, kx1 = kx0s[ox], kx1s[ox]
                best = -np.inf
                best_i = -1
                if ky0 < ky1 and kx0 < kx1:
                    best_i = (y0 + ky0 * dh) * W + x0 + kx0 * dw
                    best = plane[best_i]
                for ky in range(ky0, ky1):
                    row = (y0 + ky * dh) * W + x0
                    for kx in range(kx0, kx1):
                        i = row + kx * dw
                        best, best_i = _take(plane[i], i, best, best_i)
                y[m, c, oy, ox] = best
                argmax[m, c, oy * Wo + ox] = best_i


@njit(**NUMBA_PARALLEL_OPTS)
def _gather(dx, argmax, out):
    # dx (N or 1, D, C, HW), argmax (N, C, P) -> out (N, D, C, P); a dx of batch 1 is
    # shared by the N examples
    N, D, C, P = out.shape
    nx = dx.shape[0]
    for nd in prange(N * D):
        n = nd // D
        d = nd % D
        for c in range(C):
            for p in range(P):
                out[n, d, c, p] = dx[n % nx, d, c, argmax[n, c, p]]


@njit(**NUMBA_PARALLEL_OPTS)
def _scatter_reduced(gy, argmax, slope, weights, out):
    # gy (T * M, K, C, P) in T blocks of M examples, argmax (T * M, C, P) -> out (M, K, C,
    # HW): each block's entries added at their argmax, weighted by weights (T,) and
    # summed (one block of weight 1 is the plain scatter: w * v is v exactly). slope
    # (T * M, C, HW) is the derivative of an elementwise layer before the pool (fused), or
    # empty.
    N, K, C, P = gy.shape
    M = out.shape[0]
    fused = slope.size > 0
    for mk in prange(M * K):
        m = mk // K
        k = mk % K
        out[m, k] = 0.0
        for s in range(N // M):
            n = s * M + m
            w = weights[s]
            for c in range(C):
                for p in range(P):
                    a = argmax[n, c, p]
                    if fused:
                        out[m, k, c, a] += w * (gy[n, k, c, p] * slope[n, c, a])
                    else:
                        out[m, k, c, a] += w * gy[n, k, c, p]


def maxpool_forward(x, kernel, stride, padding, dilation=(1, 1), out_hw=None):
    """Max over windows of ``x`` (M, C, H, W): returns ``y`` (M, C, Ho, Wo) and argmax.

    ``out_hw`` overrides the output size (PyTorch's ceil_mode adds a last window that
    runs past the padding; its taps outside the image are skipped)."""
    M, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    Ho, Wo = out_hw if out_hw is not None else \
        ((H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
    y = np.empty((M, C, Ho, Wo), dtype=x.dtype)
    argmax = np.empty((M, C, Ho * Wo), dtype=np.int64)
    x = np.ascontiguousarray(x)
    if (kh, kw, sh, sw, ph, pw, dh, dw) == (2, 2, 2, 2, 0, 0, 1, 1) and \
            2 * Ho <= H and 2 * Wo <= W:
        _maxpool2(x, Ho, Wo, y, argmax)     # LeNet's pool: the same picks, no bounds checks
    else:
        _maxpool_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, y, argmax)
    return y, argmax


def gather(dx, argmax):
    """Tangent of max-pool: ``dx`` (N, D, C, H*W) picked at ``argmax`` (N, C, P) -> (N, D,
    C, P); ``dx`` of batch 1 is shared by the N examples of ``argmax``."""
    out = np.empty((argmax.shape[0],) + dx.shape[1:3] + (argmax.shape[2],), dtype=dx.dtype)
    _gather(np.ascontiguousarray(dx), argmax, out)
    return out


def scatter(gy, argmax, hw, slope=None):
    """Cotangent of max-pool: ``gy`` (N, K, C, P) added at ``argmax`` -> (N, K, C, hw).

    ``slope`` (N, C, hw), the derivative of an elementwise layer before the pool, is
    applied on the way (only where cotangents land) instead of in a pass of its own."""
    return scatter_reduced(gy, argmax, hw, np.ones(1), slope)


def scatter_reduced(gy, argmax, hw, weights, slope=None):
    """:func:`scatter` of ``gy`` (T * M, K, C, P), whose rows are T blocks of M examples,
    summed over the blocks with ``weights`` (T,): (M, K, C, hw), without the T blocks'
    scatters."""
    T = len(weights)
    out = np.empty((gy.shape[0] // T,) + gy.shape[1:3] + (hw,), dtype=gy.dtype)
    slope = np.zeros((0, 0, 0), gy.dtype) if slope is None else \
        np.ascontiguousarray(slope, dtype=gy.dtype).reshape(gy.shape[0], gy.shape[2], hw)
    _scatter_reduced(np.ascontiguousarray(gy), argmax, slope,
                     np.asarray(weights, dtype=gy.dtype), out)
    return out
