"""im2col / col2im for 2-D convolution and pooling windows.

Column layout: ``cols[m, p, k]`` with ``p = oy * Wo + ox`` the output position and
``k = (c * kh + ky) * kw + kx`` running over the window in the order of a PyTorch weight
``(out, in, kh, kw)`` flattened, so ``y = cols @ W.reshape(out, -1).T``.
"""
import numpy as np
from numba import njit, prange

from ..config import NUMBA_PARALLEL_OPTS


def out_size(size, k, stride, pad, dil):
    """Output length of a sliding window, as in PyTorch's Conv2d/MaxPool2d docs."""
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


@njit(**NUMBA_PARALLEL_OPTS)
def _im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, fill, out):
    # A window row that lies inside the image is a strided copy with no bounds tests;
    # flat unsigned indices let LLVM drop wraparound checks (2x on LeNet-5's convs).
    M, C, H, W = x.shape
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    K = C * kh * kw
    for m in prange(M):
        xf = x[m].reshape(-1)
        of = out[m].reshape(-1)
        for oy in range(Ho):
            for ox in range(Wo):
                k = np.uint64((oy * Wo + ox) * K)
                ix0 = ox * sw - pw
                inside_x = ix0 >= 0 and ix0 + (kw - 1) * dw < W
                for c in range(C):
                    for ky in range(kh):
                        iy = oy * sh - ph + ky * dh
                        if 0 <= iy < H and inside_x:
                            src = np.uint64((c * H + iy) * W + ix0)
                            for kx in range(np.uint64(kw)):
                                of[k + kx] = xf[src + kx * np.uint64(dw)]
                        else:
                            for kx in range(kw):
                                ix = ix0 + kx * dw
                                if 0 <= iy < H and 0 <= ix < W:
                                    of[k + np.uint64(kx)] = xf[np.uint64((c * H + iy) * W + ix)]
                                else:
                                    of[k + np.uint64(kx)] = fill
                        k += np.uint64(kw)


@njit(**NUMBA_PARALLEL_OPTS)
def _col2im(cols, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, out):
    # The adjoint of _im2col, with the same branch-free inner loop for window rows that
    # lie inside the image.
    M = cols.shape[0]
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    K = C * kh * kw
    for m in prange(M):
        out[m] = 0.0
        of = out[m].reshape(-1)
        cf = cols[m].reshape(-1)
        for oy in range(Ho):
            for ox in range(Wo):
                k = np.uint64((oy * Wo + ox) * K)
                ix0 = ox * sw - pw
                inside_x = ix0 >= 0 and ix0 + (kw - 1) * dw < W
                for c in range(C):
                    for ky in range(kh):
                        iy = oy * sh - ph + ky * dh
                        if 0 <= iy < H and inside_x:
                            dst = np.uint64((c * H + iy) * W + ix0)
                            for kx in range(np.uint64(kw)):
                                of[dst + kx * np.uint64(dw)] += cf[k + kx]
                        elif 0 <= iy < H:
                            for kx in range(kw):
                                ix = ix0 + kx * dw
                                if 0 <= ix < W:
                                    of[np.uint64((c * H + iy) * W + ix)] += cf[k + np.uint64(kx)]
                        k += np.uint64(kw)


def im2col(x, kernel, stride, padding, dilation, fill=0.0):
    """Columns of ``x`` (M, C, H, W): an array (M, Ho*Wo, C*kh*kw); outside is ``fill``."""
    M, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    Ho, Wo = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
    out = np.empty((M, Ho * Wo, C * kh * kw), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), kh, kw, sh, sw, ph, pw, dh, dw, fill, out)
    return out


def col2im(cols, in_shape, kernel, stride, padding, dilation):
    """Adjoint of :func:`im2col` (fill 0): scatter-add columns back to (M, C, H, W)."""
    C, H, W = in_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out = np.empty((cols.shape[0], C, H, W), dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, out)
    return out


@njit(**NUMBA_PARALLEL_OPTS)
def _conv_vjp_scatter(gy, Wt, sh, sw, ph, pw, dh, dw, groups, gx):
    # gx[m, ci, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw] += gy[m, co, oy, ox] * W[co, ci, ky, kx]
    # Zero cotangents (behind max-pool and ReLU most are) are skipped. The kernel offsets
    # that fall inside the image are computed once per output position, so the inner
    # loops have no bounds tests; flat unsigned indices let LLVM drop wraparound checks.
    M, Co, Ho, Wo = gy.shape
    _, Ci, H, W = gx.shape
    Cig, kh, kw = Wt.shape[1], Wt.shape[2], Wt.shape[3]
    Cog = Co // groups
    Wf = Wt.reshape(-1)
    for m in prange(M):
        gx[m] = 0.0
        G = gx[m].reshape(-1)
        for oy in range(Ho):
            ky0 = 0
            while ky0 < kh and oy * sh - ph + ky0 * dh < 0:
                ky0 += 1
            ky1 = kh
            while ky1 > ky0 and oy * sh - ph + (ky1 - 1) * dh >= H:
                ky1 -= 1
            for ox in range(Wo):
                kx0 = 0
                while kx0 < kw and ox * sw - pw + kx0 * dw < 0:
                    kx0 += 1
                kx1 = kw
                while kx1 > kx0 and ox * sw - pw + (kx1 - 1) * dw >= W:
                    kx1 -= 1
                for co in range(Co):
                    v = gy[m, co, oy, ox]
                    if v == 0:
                        continue
                    g0 = (co // Cog) * Cig
                    for c in range(Cig):
                        for ky in range(ky0, ky1):
                            iy = oy * sh - ph + ky * dh
                            base = np.uint64(((g0 + c) * H + iy) * W + ox * sw - pw)
                            wb = np.uint64(((co * Cig + c) * kh + ky) * kw)
                            for kx in range(np.uint64(kx0), np.uint64(kx1)):
                                G[base + kx * np.uint64(dw)] += v * Wf[wb + kx]


def conv_vjp_scatter(gy, weight, in_shape, stride, padding, dilation, groups):
    """Cotangent of a convolution's input by scattering each non-zero ``gy`` entry."""
    gx = np.empty((gy.shape[0],) + tuple(in_shape), gy.dtype)
    _conv_vjp_scatter(np.ascontiguousarray(gy), np.ascontiguousarray(weight, dtype=gy.dtype),
                      stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
                      groups, gx)
    return gx
