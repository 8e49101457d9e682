"""im2col / col2im for 2-D convolution and pooling windows.

Column layout: ``cols[m, p, k]`` with ``p = oy * Wo + ox`` the output position and
``k = (c * kh + ky) * kw + kx`` running over the window in the order of a PyTorch weight
``(out, in, kh, kw)`` flattened, so ``y = cols @ W.reshape(out, -1).T``. The kernels
store it transposed, ``(M, K, P)`` (:func:`im2col_t`, one row per kernel tap, so
``y[m] = W @ cols_t[m]`` is channels-first); :func:`im2col` and :func:`col2im` are views
onto that layout.
"""
import numba
import numpy as np
from numba import njit, prange

from ..config import NUMBA_OPTS, NUMBA_PARALLEL_OPTS


def out_size(size, k, stride, pad, dil):
    """Output length of a sliding window, as in PyTorch's Conv2d/MaxPool2d docs."""
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


@njit(**NUMBA_PARALLEL_OPTS)
def _im2col_t(x, kh, kw, sh, sw, ph, pw, dh, dw, fill, out):
    # out[m, k, p] = cols[m, p, k] (``fill`` outside the image): one row per kernel tap, the
    # tap's shifted view of the image, so y[m] = W @ out[m] comes out channels-first.
    M, C, H, W = x.shape
    _, K, P = out.shape
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for mk in prange(M * K):
        m = mk // K
        k = mk % K
        c = k // (kh * kw)
        ky = (k // kw) % kh
        kx = k % kw
        row = out[m, k]
        plane = x[m, c]
        for oy in range(Ho):
            iy = oy * sh - ph + ky * dh
            dst = row[oy * Wo:(oy + 1) * Wo]
            if iy < 0 or iy >= H:
                dst[:] = fill
                continue
            src = plane[iy]
            for ox in range(Wo):
                ix = ox * sw - pw + kx * dw
                dst[ox] = src[ix] if 0 <= ix < W else fill


def im2col_t(x, kernel, stride, padding, dilation, fill=0.0):
    """Columns of ``x`` (M, C, H, W), transposed: an array (M, C*kh*kw, Ho*Wo); outside
    the image is ``fill``."""
    M, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    Ho, Wo = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
    out = np.empty((M, C * kh * kw, Ho * Wo), dtype=x.dtype)
    _im2col_t(np.ascontiguousarray(x), kh, kw, sh, sw, ph, pw, dh, dw, fill, out)
    return out


@njit(**NUMBA_PARALLEL_OPTS)
def _depthwise(x, w, sh, sw, ph, pw, dh, dw, j0, j1, out):
    # out[m, c] = x[m, c] correlated with w[c, 0], zero outside the image: each output row
    # gathers its kernel taps in order (ky, kx), the columns j0[kx] <= ox < j1[kx] being
    # those whose input column lies inside the image.
    M, C, H, W = x.shape
    kh, kw = w.shape[2], w.shape[3]
    Ho, Wo = out.shape[2], out.shape[3]
    for mc in prange(M * C):
        m = mc // C
        c = mc % C
        plane = x[m, c]
        for oy in range(Ho):
            row = out[m, c, oy]
            row[:] = 0
            for ky in range(kh):
                iy = oy * sh - ph + ky * dh
                if iy < 0 or iy >= H:
                    continue
                src = plane[iy]
                for kx in range(kw):
                    v = w[c, 0, ky, kx]
                    shift = kx * dw - pw
                    if sw == 1:                     # contiguous: vectorised
                        for ox in range(j0[kx], j1[kx]):
                            row[ox] += v * src[ox + shift]
                    else:
                        for ox in range(j0[kx], j1[kx]):
                            row[ox] += v * src[ox * sw + shift]


def depthwise_conv(x, weight, stride, padding, dilation):
    """The convolution of ``x`` (M, C, H, W) with one filter per channel, ``weight`` of
    shape (C, 1, kh, kw), zero padding: (M, C, Ho, Wo), without the im2col columns (a
    depthwise convolution's product has 9 terms per output, too few for a matrix
    product to pay for the columns)."""
    M, C, H, W = x.shape
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    Ho, Wo = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
    shifts = np.arange(kw) * dw - pw
    j0 = np.clip(-(shifts // sw), 0, Wo).astype(np.int64)          # ceil(-shift / sw)
    j1 = np.clip((W - 1 - shifts) // sw + 1, 0, Wo).astype(np.int64)
    j1 = np.maximum(j0, j1)
    out = np.empty((M, C, Ho, Wo), dtype=x.dtype)
    _depthwise(np.ascontiguousarray(x), np.ascontiguousarray(weight, dtype=x.dtype),
               sh, sw, ph, pw, dh, dw, j0, j1, out)
    return out


@njit(**NUMBA_PARALLEL_OPTS)
def _col2im_t(cols, kh, kw, sh, sw, ph, pw, dh, dw, out):
    # The adjoint of _im2col_t: out[m, c, iy, ix] += cols[m, k, oy*Wo + ox] for every tap k
    # = (c, ky, kx) and output position whose window reads (iy, ix).
    M, C, H, W = out.shape
    K = cols.shape[1]
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for m in prange(M):
        out[m] = 0.0
        for k in range(K):
            c = k // (kh * kw)
            ky = (k // kw) % kh
            kx = k % kw
            row = cols[m, k]
            plane = out[m, c]
            ox0, ox1 = _kernel_span(kx, dw, pw, sw, Wo, W)
            for oy in range(Ho):
                iy = oy * sh - ph + ky * dh
                if iy < 0 or iy >= H:
                    continue
                dst = plane[iy]
                src = row[oy * Wo:(oy + 1) * Wo]
                for ox in range(ox0, ox1):
                    dst[ox * sw - pw + kx * dw] += src[ox]


def col2im_t(cols, in_shape, kernel, stride, padding, dilation):
    """Adjoint of :func:`im2col_t`: columns (M, C*kh*kw, Ho*Wo) added back to (M, C, H, W)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out = np.empty((cols.shape[0],) + tuple(in_shape), dtype=cols.dtype)
    _col2im_t(np.ascontiguousarray(cols), kh, kw, sh, sw, ph, pw, dh, dw, out)
    return out


def im2col(x, kernel, stride, padding, dilation, fill=0.0):
    """Columns of ``x`` (M, C, H, W): (M, Ho*Wo, C*kh*kw), outside is ``fill``; a view of
    :func:`im2col_t`'s array."""
    return im2col_t(x, kernel, stride, padding, dilation, fill).transpose(0, 2, 1)


def col2im(cols, in_shape, kernel, stride, padding, dilation):
    """Adjoint of :func:`im2col` (fill 0): scatter-add columns (M, Ho*Wo, C*kh*kw) back to
    (M, C, H, W)."""
    return col2im_t(cols.transpose(0, 2, 1), in_shape, kernel, stride, padding, dilation)


@njit(**NUMBA_OPTS)
def _kernel_span(o, s, p, d, k, size):
    # The kernel offsets [k0, k1) whose input index o*s - p + k*d lies in [0, size).
    k0 = 0
    while k0 < k and o * s - p + k0 * d < 0:
        k0 += 1
    k1 = k
    while k1 > k0 and o * s - p + (k1 - 1) * d >= size:
        k1 -= 1
    return k0, k1


@njit(**NUMBA_OPTS)
def _add_window(G, Wf, v, co, oy, ox, nhwc, Ci, Cig, Cog, H, W, kh, kw, sh, sw, ph, pw, dh,
                dw):
    # G[ci, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw] += v * W[co, ci, ky, kx] over the window
    # inside the image. NCHW (G flat over (Ci, H, W), Wf over (Co, Cig, kh, kw)): runs of
    # kw along a row. Channels-last (G over (H, W, Ci), Wf over (Co, kh, kw, Cig)): runs of
    # Cig contiguous channels, which vectorise when there are many. Flat unsigned indices
    # let LLVM drop wraparound checks.
    ky0, ky1 = _kernel_span(oy, sh, ph, dh, kh, H)
    kx0, kx1 = _kernel_span(ox, sw, pw, dw, kw, W)
    g0 = (co // Cog) * Cig
    if nhwc and dw == 1 and Cig == Ci:
        # one run of (kx1 - kx0) * Ci entries per kernel row, contiguous in G and in Wf:
        # long enough to vectorise even with few channels (30 for LeNet-5's 6 -> 16 conv)
        run = np.uint64((kx1 - kx0) * Ci)
        for ky in range(ky0, ky1):
            iy = oy * sh - ph + ky * dh
            dst = np.uint64((iy * W + ox * sw - pw + kx0) * Ci)
            src = np.uint64(((co * kh + ky) * kw + kx0) * Cig)
            for c in range(run):
                G[dst + c] += v * Wf[src + c]
    elif nhwc:
        for ky in range(ky0, ky1):
            iy = oy * sh - ph + ky * dh
            for kx in range(kx0, kx1):
                dst = np.uint64((iy * W + ox * sw - pw + kx * dw) * Ci + g0)
                src = np.uint64(((co * kh + ky) * kw + kx) * Cig)
                for c in range(np.uint64(Cig)):
                    G[dst + c] += v * Wf[src + c]
    else:
        for c in range(Cig):
            for ky in range(ky0, ky1):
                iy = oy * sh - ph + ky * dh
                base = np.uint64(((g0 + c) * H + iy) * W + ox * sw - pw)
                wb = np.uint64(((co * Cig + c) * kh + ky) * kw)
                for kx in range(np.uint64(kx0), np.uint64(kx1)):
                    G[base + kx * np.uint64(dw)] += v * Wf[wb + kx]


@njit(**NUMBA_OPTS)
def _to_nchw(buf, out, Ci, HW):
    # out[c, q] = buf[q, c]
    for q in range(HW):
        for c in range(Ci):
            out[c * HW + q] = buf[q * Ci + c]


@njit(**NUMBA_OPTS)
def _scatter_rows_last(gy, argmax, slope, Wf, Wc, n, K, k0, k1, kh, kw, sh, sw, ph, pw, dh,
                       dw, gx, G, v):
    # _conv_vjp_scatter through a max-pool for a conv of few input channels and one group
    # (the first convs of a grayscale network), rows k0 <= k < k1 of example n at once:
    # they share every window and weight, so the accumulator G holds the rows last,
    # (Ci*H*W, R), and each tap adds one weight times the R row values, a short
    # contiguous loop, instead of R separate windows. Every entry receives the same
    # products in the same order as in the row-by-row loop.
    _, Co, P = gy.shape
    Ci, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    R = k1 - k0
    scaled = slope.size > 0
    G[:Ci * H * W * R] = 0.0
    for co in range(Co):
        for p in range(P):
            a = argmax[n, co, p]
            s = slope[n, co, a] if scaled else 1.0
            if s == 0:
                continue
            live = False
            for r in range(R):
                g = gy[n * K + k0 + r, co, p]
                v[r] = g * s if scaled else g
                live = live or v[r] != 0
            if not live:
                continue
            oy, ox = a // Wc, a % Wc
            ky0, ky1 = _kernel_span(oy, sh, ph, dh, kh, H)
            kx0, kx1 = _kernel_span(ox, sw, pw, dw, kw, W)
            for ky in range(ky0, ky1):
                iy = oy * sh - ph + ky * dh
                for kx in range(kx0, kx1):
                    for ci in range(Ci):
                        w = Wf[((co * Ci + ci) * kh + ky) * kw + kx]
                        base = np.uint64((((ci * H + iy) * W + ox * sw - pw + kx * dw)) * R)
                        for r in range(np.uint64(R)):
                            G[base + r] += w * v[r]
    for r in range(R):
        out = gx[n * K + k0 + r].reshape(-1)
        for q in range(Ci * H * W):
            out[q] = G[q * R + r]


@njit(**NUMBA_PARALLEL_OPTS)
def _conv_vjp_scatter(gy, argmax, slope, Wt, nhwc, Wc, sh, sw, ph, pw, dh, dw, groups,
                      parts, lanes_min, gx, scratch, vscratch):
    # gx[m] = the transposed convolution of gy[m], scattering each non-zero entry (behind
    # max-pool and ReLU most are zero) into its window.
    # Plain: gy (M, Co, Ho*Wo), argmax empty. Through a max-pool that follows the conv:
    # gy (M, Co, P) is the pool's output cotangent, argmax (N, Co, P) its indices into the
    # conv's output plane of width Wc (M = N*K: K cotangent rows per example), and slope
    # (N, Co, Ho*Wo), if not empty, the derivative of an elementwise layer between them:
    # the conv's output cotangent is never built. The K rows of an example share argmax
    # and slope, so a task takes an example's rows (``parts`` tasks per example) and
    # skips an entry with a zero slope once for all of them (behind a ReLU most slopes
    # are zero; a zero slope stops even an infinite cotangent, as PyTorch's ReLU backward
    # does). Each row still adds its windows in the same (co, p) order, so the numbers do
    # not depend on ``parts``. A task of at least ``lanes_min`` rows (set by the caller
    # for a pooled conv of few input channels and one group) takes _scatter_rows_last.
    # Channels-last accumulates in per-thread ``scratch`` (threads, rows, Ci*H*W)
    # allocated by the caller, not in the parallel loop (see _conv_window in
    # kernels.local: worker-thread allocations page-fault on every call).
    M, Co, P = gy.shape
    _, Ci, H, W = gx.shape
    Cig, kh, kw = Wt.shape[1], Wt.shape[2], Wt.shape[3]
    if nhwc:
        Cig, kh, kw = Wt.shape[3], Wt.shape[1], Wt.shape[2]
    Cog = Co // groups
    Wf = Wt.reshape(-1)
    pooled = argmax.size > 0
    scaled = slope.size > 0
    N = argmax.shape[0] if pooled else M
    K = M // N if N > 0 else 0
    per = (K + parts - 1) // parts
    for task in prange(N * parts):
        n, part = task // parts, task % parts
        k0, k1 = part * per, min(K, (part + 1) * per)
        if k0 >= k1:
            continue
        tid = numba.get_thread_id()
        if lanes_min <= k1 - k0:
            _scatter_rows_last(gy, argmax, slope, Wf, Wc, n, K, k0, k1, kh, kw, sh, sw, ph,
                               pw, dh, dw, gx, scratch[tid].reshape(-1), vscratch[tid])
            continue
        for k in range(k0, k1):
            if nhwc:
                scratch[tid, k - k0] = 0.0
            else:
                gx[n * K + k] = 0.0
        for co in range(Co):
            for p in range(P):
                a = p
                s = 1.0
                if pooled:
                    a = argmax[n, co, p]
                    if scaled:
                        s = slope[n, co, a]
                        if s == 0:
                            continue
                for k in range(k0, k1):
                    m = n * K + k
                    v = gy[m, co, p]
                    if v == 0:
                        continue
                    if scaled:
                        v *= s
                        if v == 0:
                            continue
                    G = scratch[tid, k - k0] if nhwc else gx[m].reshape(-1)
                    _add_window(G, Wf, v, co, a // Wc, a % Wc, nhwc, Ci, Cig, Cog, H, W,
                                kh, kw, sh, sw, ph, pw, dh, dw)
        if nhwc:
            for k in range(k0, k1):
                _to_nchw(scratch[tid, k - k0], gx[n * K + k].reshape(-1), Ci, H * W)


#: Rows of one example from which the pooled scatter of a conv with few input channels
#: accumulates them together, rows last (integrated gradients of every class: 10 per
#: example).
ROWS_LAST_MIN = 4
#: Input channels up to which the pooled scatter takes the rows last.
ROWS_LAST_CHANNELS = 8


def conv_vjp_scatter(gy, weight, in_shape, stride, padding, dilation, groups, nhwc=False,
                     pool=None, slope=None):
    """Cotangent of a convolution's input by scattering each non-zero ``gy`` entry.

    ``gy`` (M, Co, Ho, Wo) is the cotangent of the conv's output; or, with ``pool`` =
    ``(argmax, Wo)`` of a max-pool right after the conv, ``gy`` (M, Co, Hp, Wp) is the
    cotangent of the pool's output (``argmax`` (N, Co, Hp*Wp), M = N*K) and ``slope``
    (N, Co, Ho*Wo), if given, the derivative of an elementwise layer between them.
    ``nhwc`` accumulates channels-last (fast for many input channels), same numbers.
    """
    gx = np.empty((gy.shape[0],) + tuple(in_shape), gy.dtype)
    M, Co = gy.shape[:2]
    empty = np.zeros((0, 0, 0), np.int64)
    argmax, Wc = empty, gy.shape[3]
    if pool is not None:
        argmax, Wc = pool
    slope = np.zeros((0, 0, 0), gy.dtype) if slope is None else \
        np.ascontiguousarray(slope, dtype=gy.dtype).reshape(slope.shape[0], Co, -1)
    # enough tasks for every thread: an example's K rows are split when examples are few
    threads = numba.config.NUMBA_NUM_THREADS
    N = argmax.shape[0] if pool is not None else M
    K = M // max(N, 1)
    parts = max(1, min(K, -(-2 * threads // max(N, 1))))
    rows = -(-K // parts)
    # few input channels, pooled, and enough rows per task: rows last (_scatter_rows_last)
    lanes = pool is not None and in_shape[0] <= ROWS_LAST_CHANNELS and groups == 1 and \
        rows >= ROWS_LAST_MIN
    nhwc = nhwc and not lanes
    W = np.asarray(weight, dtype=gy.dtype)
    W = np.ascontiguousarray(W.transpose(0, 2, 3, 1) if nhwc else W)
    lanes_min = ROWS_LAST_MIN if lanes else np.iinfo(np.int64).max
    scratch = np.empty((threads if nhwc or lanes else 0, rows, gx[0].size), gy.dtype)
    vscratch = np.empty((threads if lanes else 0, rows), gy.dtype)
    _conv_vjp_scatter(np.ascontiguousarray(gy).reshape(M, Co, -1), argmax, slope, W, nhwc,
                      Wc, stride[0], stride[1], padding[0], padding[1], dilation[0],
                      dilation[1], groups, parts, lanes_min, gx, scratch, vscratch)
    return gx


#: When the VJP scatters each non-zero cotangent into its window instead of a dense GEMM
#: plus col2im (behind max-pool and ReLU most cotangents are zero); see
#: :func:`scatter_layout`. Fewer than SCATTER_NHWC_CHANNELS input channels per group:
#: runs of kw along image rows, taken while at most SCATTER_DENSITY of the cotangents are
#: non-zero and each entry's work (channels * kh * kw) is at most SCATTER_MAX_WORK. More
#: channels: channels-last runs that vectorise, taken up to SCATTER_NHWC_DENSITY. The
#: scatter's cost grows with the non-zeros and the GEMM's does not; each limit is at or
#: below the density where the two cost the same on the zoo's convolutions, see
#: docs/pages/performance.md#the-engines-thresholds-and-where-their-numbers-come-from.
#: Both paths give the same numbers.
SCATTER_DENSITY = 0.2
SCATTER_MAX_WORK = 150
SCATTER_NHWC_CHANNELS = 4
SCATTER_NHWC_DENSITY = 0.4


def nonzeros(g):
    """The number of non-zero entries of ``g``, estimated from every 8th entry of a large
    array: an estimate is enough to choose a path, and counting every entry of every
    cotangent is a visible share of a reverse Jacobian."""
    flat = g.reshape(-1)
    return np.count_nonzero(flat) if flat.size <= 1 << 16 else 8 * np.count_nonzero(flat[::8])


#: The unfused convolution's VJP (:func:`conv_vjp_layout`): from this many groups the
#: scatter is taken at any density (the dense path is one small product per group);
#: below THIN_CHANNELS input channels per group and with at most THIN_MAX_TAPS kernel
#: taps, the channels-last scatter only up to THIN_DENSITY (its inner loop is short, so
#: each non-zero costs several times a GEMM's share of it; a 5x5 kernel's longer runs keep
#: SCATTER_NHWC_DENSITY). Measured per call on the zoo's reverse Jacobians, see
#: docs/pages/performance.md#the-engines-thresholds-and-where-their-numbers-come-from.
SCATTER_ANY_DENSITY_GROUPS = 16
THIN_CHANNELS = 32
THIN_MAX_TAPS = 9
THIN_DENSITY = 0.1


def conv_vjp_layout(weight_shape, groups, stride, nnz, size):
    """:func:`scatter_layout` for a convolution's own VJP (not fused with a pool): a 1x1
    stride-1 convolution's dense VJP is one GEMM with nothing to add up, never beaten by
    the scatter; many groups scatter at any density; thin 3x3 convolutions use
    THIN_DENSITY."""
    Cig, kh, kw = weight_shape[1:]
    if kh * kw == 1 and tuple(stride) == (1, 1) and groups == 1:
        return None
    if groups >= SCATTER_ANY_DENSITY_GROUPS and Cig * kh * kw <= SCATTER_MAX_WORK:
        return "nchw"
    if SCATTER_NHWC_CHANNELS <= Cig < THIN_CHANNELS and kh * kw <= THIN_MAX_TAPS:
        return "nhwc" if nnz <= THIN_DENSITY * size else None
    return scatter_layout(weight_shape, nnz, size)


def scatter_layout(weight_shape, nnz, size):
    """``"nchw"``/``"nhwc"`` if scattering ``nnz`` non-zero cotangents out of ``size``
    through a convolution with weights of ``weight_shape`` beats the dense GEMM + col2im,
    else None (see SCATTER_DENSITY)."""
    Cig, kh, kw = weight_shape[1:]
    if Cig >= SCATTER_NHWC_CHANNELS:
        return "nhwc" if nnz <= SCATTER_NHWC_DENSITY * size else None
    if Cig * kh * kw <= SCATTER_MAX_WORK and nnz <= SCATTER_DENSITY * size:
        return "nchw"
    return None
