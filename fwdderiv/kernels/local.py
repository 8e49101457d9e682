"""Kernels of the windowed tangent (see ``fwdderiv.core.local``).

A windowed tangent ``T`` has shape ``(N, H, W, C0, Rh, Rw, C)``, channels last: for
channel ``c`` at position ``(y, x)`` of example ``n``, the derivative with respect to
input pixel ``(c0, y*Sh - Ph + i, x*Sw - Pw + j)`` is ``T[n, y, x, c0, i, j, c]``; every
other input pixel has derivative zero there. ``N`` may be 1 for a window shared by every
example (the first layers' tangents do not depend on the input). Channels go last so the
conv kernel's innermost loop runs over output channels, which vectorises.
"""
import numba
import numpy as np
from numba import njit, prange

from ..config import NUMBA_OPTS, NUMBA_PARALLEL_OPTS
from .conv import _kernel_span


@njit(**NUMBA_OPTS)
def _list_nonzeros(Tf, base, C0, Rh, Rw, Ci, Rh2, Rw2, Co, Cig, Cog, val, off, wof):
    # the non-zeros of one input position's window (C0, Rh, Rw, Ci) starting at Tf[base]:
    # each value, where it lands in an output block, and its weight row; returns how many
    e = 0
    c = 0
    for c0 in range(C0):
        for i in range(Rh):
            for j in range(Rw):
                o = ((c0 * Rh2 + i) * Rw2 + j) * Co
                for ci in range(Ci):
                    t = Tf[base + e]
                    e += 1
                    if t != 0:
                        g = ci // Cig
                        val[c] = t
                        off[c] = o + g * Cog
                        wof[c] = (ci - g * Cig) * Co + g * Cog
                        c += 1
    return c


@njit(**NUMBA_OPTS)
def _conv_block(Of, obase, out_block, y, x, H, W, sh, sw, ph, pw, dh, dw, Sh, Sw, kh, kw,
                Cig, Co, Cog, Rw2, Wf, val, off, wof, cnt, p0):
    # one output position's window block Of[obase:obase + out_block], from the listed
    # non-zeros of the input positions it reads (lists of position p at index p - p0)
    Of[obase:obase + out_block] = 0.0      # zeroed here, in cache, in parallel
    for ky in range(kh):
        iy = y * sh - ph + ky * dh
        if iy < 0 or iy >= H:
            continue
        for kx in range(kw):
            ix = x * sw - pw + kx * dw
            if ix < 0 or ix >= W:
                continue
            p = iy * W + ix - p0
            shift = obase + ((ky * dh * Sh) * Rw2 + kx * dw * Sw) * Co
            wbase = (ky * kw + kx) * Cig * Co
            for k in range(cnt[p]):
                t = val[p, k]
                # unsigned indices: no wraparound test, so LLVM vectorises
                o = np.uint64(shift + off[p, k])
                w = np.uint64(wbase + wof[p, k])
                for co in range(np.uint64(Cog)):
                    Of[o + co] += t * Wf[w + co]


@njit(**NUMBA_OPTS)
def _geometry(T, Wt, out, groups):
    # the sizes of a window convolution: input windows T (N, H, W, C0, Rh, Rw, Ci),
    # weights Wt (kh, kw, Cig, Co), output windows out (N, Ho, Wo, C0, Rh2, Rw2, Co); then
    # output channels per group and the elements of one input and one output block
    N, H, W, C0, Rh, Rw, Ci = T.shape
    Ho, Wo, Rh2, Rw2, Co = out.shape[1], out.shape[2], out.shape[4], out.shape[5], out.shape[6]
    return (N, H, W, C0, Rh, Rw, Ci, Ho, Wo, Rh2, Rw2, Co, Wt.shape[0], Wt.shape[1],
            Wt.shape[2], Co // groups, C0 * Rh * Rw * Ci, C0 * Rh2 * Rw2 * Co)


@njit(**NUMBA_PARALLEL_OPTS)
def _conv_window(T, Wt, sh, sw, ph, pw, dh, dw, Sh, Sw, groups, out, scratch_val,
                 scratch_idx, scratch_cnt):
    # out[n, y, x, c0, ky*dh*Sh + i, kx*dw*Sw + j, co] +=
    #     W[co, ci, ky, kx] * T[n, y*sh - ph + ky*dh, x*sw - pw + kx*dw, c0, i, j, ci]
    # The non-zeros of every input position are listed once per example (zeros: dead
    # ReLUs, unused window corners, cost nothing), then each output block, which stays in
    # cache, gathers them for every kernel offset. Flat indexing keeps the innermost loop
    # (output channels) vectorisable. The lists live in per-thread scratch allocated by the
    # caller: allocated inside the parallel loop they would live in the worker threads'
    # malloc arenas, which return freed pages to the kernel, and every call would
    # page-fault them back (docs/pages/performance.md, "The engine's thresholds").
    (N, H, W, C0, Rh, Rw, Ci, Ho, Wo, Rh2, Rw2, Co, kh, kw, Cig, Cog, in_block,
     out_block) = _geometry(T, Wt, out, groups)
    Tf, Of, Wf = T.reshape(-1), out.reshape(-1), Wt.reshape(-1)
    for n in prange(N):
        tid = numba.get_thread_id()
        val, off, wof = scratch_val[tid], scratch_idx[tid, 0], scratch_idx[tid, 1]
        cnt = scratch_cnt[tid]
        for p in range(H * W):
            cnt[p] = _list_nonzeros(Tf, (n * H * W + p) * in_block, C0, Rh, Rw, Ci, Rh2,
                                    Rw2, Co, Cig, Cog, val[p], off[p], wof[p])
        for y in range(Ho):
            for x in range(Wo):
                _conv_block(Of, ((n * Ho + y) * Wo + x) * out_block, out_block, y, x, H, W,
                            sh, sw, ph, pw, dh, dw, Sh, Sw, kh, kw, Cig, Co, Cog, Rw2, Wf,
                            val, off, wof, cnt, 0)


@njit(**NUMBA_PARALLEL_OPTS)
def _conv_window_few(T, Wt, sh, sw, ph, pw, dh, dw, Sh, Sw, groups, out, val, idx, cnt):
    # _conv_window for fewer examples than threads (a window shared by all, or B = 1):
    # the positions share out the work instead, first listing each input position's
    # non-zeros (val, idx, cnt: one list per example and position), then the rows of
    # output blocks
    (N, H, W, C0, Rh, Rw, Ci, Ho, Wo, Rh2, Rw2, Co, kh, kw, Cig, Cog, in_block,
     out_block) = _geometry(T, Wt, out, groups)
    Tf, Of, Wf = T.reshape(-1), out.reshape(-1), Wt.reshape(-1)
    HW = H * W
    for task in prange(N * HW):
        cnt[task] = _list_nonzeros(Tf, task * in_block, C0, Rh, Rw, Ci, Rh2, Rw2, Co, Cig,
                                   Cog, val[task], idx[0, task], idx[1, task])
    for task in prange(N * Ho):
        n, y = task // Ho, task % Ho
        for x in range(Wo):
            _conv_block(Of, ((n * Ho + y) * Wo + x) * out_block, out_block, y, x, H, W, sh,
                        sw, ph, pw, dh, dw, Sh, Sw, kh, kw, Cig, Co, Cog, Rw2, Wf, val,
                        idx[0], idx[1], cnt, -n * HW)


@njit(**NUMBA_PARALLEL_OPTS)
def _scale_window(T, slope, out):
    # out[n, y, x, c0, i, j, c] = T[m, y, x, c0, i, j, c] * slope[n, y, x, c]
    nT, H, W, C0, Rh, Rw, C = T.shape
    for n in prange(out.shape[0]):
        m = n % nT
        for y in range(H):
            for x in range(W):
                s = slope[n, y, x]
                for c0 in range(C0):
                    for i in range(Rh):
                        for j in range(Rw):
                            src = T[m, y, x, c0, i, j]
                            dst = out[n, y, x, c0, i, j]
                            for c in range(C):
                                dst[c] = src[c] * s[c]


@njit(**NUMBA_PARALLEL_OPTS)
def _maxpool_window(T, argmax, slope, W, sh, sw, ph, pw, Sh, Sw, out):
    # slope (N, C, H, W) of an elementwise layer just before the pool (fused: its output
    # never materialises), or an empty array for none.
    N, Ho, Wo, C0, _, _, C = out.shape
    nT, Rh, Rw = T.shape[0], T.shape[4], T.shape[5]
    fused = slope.size > 0
    for n in prange(N):
        m = n % nT  # nT == 1: a window shared by every example
        out[n] = 0.0
        for c in range(C):
            for py in range(Ho):
                for px in range(Wo):
                    idx = argmax[n, c, py * Wo + px]
                    iy = idx // W
                    ix = idx % W
                    s = slope[n, c, iy, ix] if fused else 1.0
                    oy = (iy - (py * sh - ph)) * Sh
                    ox = (ix - (px * sw - pw)) * Sw
                    for c0 in range(C0):
                        for i in range(Rh):
                            for j in range(Rw):
                                out[n, py, px, c0, oy + i, ox + j, c] = s * T[m, iy, ix, c0, i, j, c]


@njit(**NUMBA_OPTS)
def _add_run(acc, at, off, val, k0, k1, w):
    # acc[at + off[k]] += w * val[k] for k0 <= k < k1 (a scalar loop; unsigned indices
    # skip the negative-index test)
    for k in range(np.uint64(k0), np.uint64(k1)):
        acc[at + np.uint64(off[k])] += w * val[k]


@njit(**NUMBA_OPTS)
def _nonzero_runs(Tf, base0, P, C0, Rh, Rw, Ci, Rh2, Rw2, val, off, start):
    # the non-zero entries of every input position p < P of one windowed tangent (flat,
    # from base0), grouped by input channel: values in val, their place (c0, i, j) in a
    # conv output's window (Rh2, Rw2) in off, and where each (p, channel) run starts
    in_block = C0 * Rh * Rw * Ci
    c = 0
    for p in range(P):
        base = base0 + p * in_block
        for ci in range(Ci):
            start[p * (Ci + 1) + ci] = c
            for c0 in range(C0):
                for i in range(Rh):
                    for j in range(Rw):
                        t = Tf[base + ((c0 * Rh + i) * Rw + j) * Ci + ci]
                        if t != 0:
                            val[c] = t
                            off[c] = (c0 * Rh2 + i) * Rw2 + j
                            c += 1
        start[p * (Ci + 1) + Ci] = c


@njit(**NUMBA_OPTS)
def _place_scaled(Of, acc, obase, co, Co, oy, ox, C0, Rh2, Rw2, Rh3, Rw3, s):
    # the summed conv window acc (C0, Rh2, Rw2), times the slope s, into channel co of the
    # pooled window (C0, Rh3, Rw3, Co) at obase, shifted by (oy, ox)
    for c0 in range(C0):
        for i in range(Rh2):
            e = obase + ((c0 * Rh3 + oy + i) * Rw3 + ox) * Co + co
            a = (c0 * Rh2 + i) * Rw2
            for j in range(Rw2):
                Of[e + j * Co] = acc[a + j] * s


@njit(**NUMBA_PARALLEL_OPTS)
def _conv_pool_window(T, Wf, sh, sw, ph, pw, dh, dw, Sh, Sw, groups, argmax, slope, Wc,
                      Sph, Spw, dPh, dPw, out, scratch_val, scratch_off, scratch_start,
                      scratch_acc):
    # The windowed tangent of max-pool(f(conv(.))) computed for the selected conv outputs
    # only: pooling output (py, px) of channel c takes the conv output at its argmax
    # (iy, ix), so only that output's window is summed, and not at all where f's slope
    # is zero. Each window is summed in a small contiguous buffer (C0, Rh2, Rw2) that
    # stays in cache, then scaled by the slope into the pooled window, shifted to where
    # (iy, ix) sits inside it: by iy * Sh * sh - py * Sph + dPh rows (Sph = the pooled
    # window's stride, dPh = its offset minus the conv window's). The terms are added in
    # the order of conv_window (kernel offset, then input channel) and the slope is
    # applied last, as maxpool_window does, so the numbers are the same. Each channel has
    # its own argmax, so the sums are scalar loops: this pays where the pool keeps a small
    # share of the conv's outputs. Wf = W[co, cl, ky, kx].
    nT, H, W, C0, Rh, Rw, Ci = T.shape
    N, Hp, Wp, _, Rh3, Rw3, Co = out.shape
    kh, kw = Wf.shape[2], Wf.shape[3]
    Cig = Ci // groups
    Cog = Co // groups
    fused = slope.size > 0
    Tf = T.reshape(-1)
    Of = out.reshape(-1)
    in_block = C0 * Rh * Rw * Ci
    out_block = C0 * Rh3 * Rw3 * Co
    Rh2 = Rh + (kh - 1) * dh * Sh          # the conv output's window
    Rw2 = Rw + (kw - 1) * dw * Sw
    Shc, Swc = sh * Sh, sw * Sw
    for n in prange(N):
        tid = numba.get_thread_id()
        val = scratch_val[tid]
        off = scratch_off[tid]
        start = scratch_start[tid]
        acc = scratch_acc[tid]
        m = n % nT
        _nonzero_runs(Tf, m * H * W * in_block, H * W, C0, Rh, Rw, Ci, Rh2, Rw2, val, off,
                      start)
        Of[n * Hp * Wp * out_block:(n + 1) * Hp * Wp * out_block] = 0.0
        for py in range(Hp):
            for px in range(Wp):
                obase = ((n * Hp + py) * Wp + px) * out_block
                for co in range(Co):
                    idx = argmax[n, co, py * Wp + px]
                    iy = idx // Wc
                    ix = idx % Wc
                    s = slope[n, co, iy, ix] if fused else 1.0
                    if s == 0:
                        continue
                    g = co // Cog
                    acc[:] = 0.0
                    ky0, ky1 = _kernel_span(iy, sh, ph, dh, kh, H)
                    kx0, kx1 = _kernel_span(ix, sw, pw, dw, kw, W)
                    for ky in range(ky0, ky1):
                        y = iy * sh - ph + ky * dh
                        for kx in range(kx0, kx1):
                            x = ix * sw - pw + kx * dw
                            q = (y * W + x) * (Ci + 1) + g * Cig
                            at = np.uint64(ky * dh * Sh * Rw2 + kx * dw * Sw)
                            for cl in range(Cig):
                                _add_run(acc, at, off, val, start[q + cl], start[q + cl + 1],
                                         Wf[co, cl, ky, kx])
                    _place_scaled(Of, acc, obase, co, Co, iy * Shc - py * Sph + dPh,
                                  ix * Swc - px * Spw + dPw, C0, Rh2, Rw2, Rh3, Rw3, s)


@njit(**NUMBA_OPTS)
def _direction(y, x, c0, i, j, Sh, Sw, Ph, Pw, H0, W0):
    # the flat input pixel (the direction) of window entry (c0, i, j) at position (y, x),
    # or a negative number where the window reaches outside the image
    Y = y * Sh - Ph + i
    X = x * Sw - Pw + j
    if Y < 0 or Y >= H0 or X < 0 or X >= W0:
        return -(1 << 62)
    return (c0 * H0 + Y) * W0 + X


@njit(**NUMBA_PARALLEL_OPTS)
def _to_dense(T, Sh, Sw, Ph, Pw, H0, W0, d0, out):
    # out (N, d1 - d0, C, H, W), zero-filled by the caller; directions [d0, d1) only
    nT, H, W, C0, Rh, Rw, C = T.shape
    D = out.shape[1]
    for n in prange(out.shape[0]):
        m = n % nT
        for y in range(H):
            for x in range(W):
                for c0 in range(C0):
                    for i in range(Rh):
                        for j in range(Rw):
                            d = _direction(y, x, c0, i, j, Sh, Sw, Ph, Pw, H0, W0) - d0
                            if d < 0 or d >= D:
                                continue
                            for c in range(C):
                                out[n, d, c, y, x] = T[m, y, x, c0, i, j, c]


@njit(**NUMBA_PARALLEL_OPTS)
def _window_linear(T, Wl, Sh, Sw, Ph, Pw, H0, W0, d0, slices, out):
    # out[n, d, o] = sum over (y, x, c) of Wl[k, y, x, c, o] * T[m, y, x, c0, i, j, c] where
    # d is the flat input pixel of window entry (c0, i, j) at (y, x), minus d0: a linear
    # map over the whole windowed value, straight from the windows to dense directions.
    # Wl has one matrix for every example (k = n) or one for all (k = 0). Each non-zero
    # window entry adds one contiguous row of O weights. Work is cut by example and, for
    # few examples, into ``slices`` ranges of d, so both threads run at B = 1.
    nT, H, W, C0, Rh, Rw, C = T.shape
    N, D, O = out.shape
    nW = Wl.shape[0]
    Tf = T.reshape(-1)
    Wf = Wl.reshape(-1)
    Of = out.reshape(-1)
    for task in prange(N * slices):
        n, part = task // slices, task % slices
        lo, hi = D * part // slices, D * (part + 1) // slices
        m = n % nT
        wn = (n % nW) * H * W * C
        out[n, lo:hi] = 0.0
        for y in range(H):
            for x in range(W):
                for c0 in range(C0):
                    for i in range(Rh):
                        for j in range(Rw):
                            d = _direction(y, x, c0, i, j, Sh, Sw, Ph, Pw, H0, W0) - d0
                            if d < lo or d >= hi:
                                continue
                            tb = ((((m * H + y) * W + x) * C0 + c0) * Rh + i) * Rw + j
                            ob = np.uint64((n * D + d) * O)
                            for c in range(C):
                                t = Tf[tb * C + c]
                                if t != 0:
                                    wb = np.uint64((wn + (y * W + x) * C + c) * O)
                                    for o in range(np.uint64(O)):
                                        Of[ob + o] += t * Wf[wb + o]


def window_linear(T, weight, window, in_shape, n, d0, d1, cols=None):
    """Dense tangent ``(n, d1 - d0, O)`` of ``y[o] = sum weight[o, c, y, x] h[c, y, x]`` (a
    linear map of the whole value, as a convolution whose kernel covers its input) from
    the windowed tangent ``T`` of ``h``, for the input directions ``d0 <= d < d1``: the
    windows are never expanded to dense directions, and only their non-zero entries are
    multiplied (on LeNet-5's 16 x 5 x 5 -> 120 layer: 256 of each direction's 400 entries
    lie in its window). ``cols`` (n, a): only these outputs of each example, in this
    order (``O = a``)."""
    C0, H0, W0 = in_shape
    (Sh, Sw), (Ph, Pw) = window.stride, window.offset
    Wl = np.asarray(weight).transpose(2, 3, 1, 0)[None]          # (1, H, W, C, O)
    if cols is not None:                                         # (n, H, W, C, a)
        Wl = np.moveaxis(np.take(Wl[0], cols, axis=3), 3, 0)
    Wl = np.ascontiguousarray(Wl, dtype=T.dtype)
    out = np.empty((n, d1 - d0, Wl.shape[4]), T.dtype)       # zeroed by the kernel
    threads = numba.config.NUMBA_NUM_THREADS
    slices = max(1, min(threads // max(n, 1), d1 - d0))
    _window_linear(np.ascontiguousarray(T), Wl, Sh, Sw, Ph, Pw, H0, W0, d0, slices, out)
    return out


def conv_window(T, layer, out_hw, window, new_size):
    """Windowed tangent through a convolution (no bias: the JVP of an affine map)."""
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    N, C0 = T.shape[0], T.shape[3]
    # np.empty: the kernel zeroes each block before adding to it, while the block is in
    # cache, which saves a separate pass of np.zeros over the whole output
    out = np.empty((N,) + tuple(out_hw) + (C0,) + tuple(new_size) + (layer.out_channels,),
                   T.dtype)
    Wt = np.ascontiguousarray(layer.weight.transpose(2, 3, 1, 0), dtype=T.dtype)
    threads = numba.config.NUMBA_NUM_THREADS
    HW, block = T.shape[1] * T.shape[2], int(np.prod(T.shape[3:]))
    args = (np.ascontiguousarray(T), Wt, sh, sw, ph, pw, dh, dw, window.stride[0],
            window.stride[1], layer.groups, out)
    if N < threads:             # one list per example and position: fewer than threads
        _conv_window_few(*args, np.empty((N * HW, block), T.dtype),
                         np.empty((2, N * HW, block), np.int64), np.empty(N * HW, np.int64))
    else:                       # one scratch slab per thread id (< NUMBA_NUM_THREADS)
        _conv_window(*args, np.empty((threads, HW, block), T.dtype),
                     np.empty((threads, 2, HW, block), np.int64),
                     np.empty((threads, HW), np.int64))
    return out


def conv_pool_window(T, conv, argmax, conv_hw, out_hw, window, conv_window_, pooled,
                     slope=None):
    """Windowed tangent through a convolution (no bias), an optional elementwise layer
    of slope ``slope`` (N, C, H, W) and a selecting layer (max-pool) of argmax ``argmax``
    (N, C, Hp*Wp) over the conv's output plane ``conv_hw``: the same numbers as
    :func:`conv_window` then :func:`maxpool_window`, computing only the conv outputs
    that are selected. ``window``, ``conv_window_``, ``pooled``: the windows of the
    conv's input, its output and the pooled output."""
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    N = argmax.shape[0]
    Co = conv.out_channels
    out = np.empty((N,) + tuple(out_hw) + (T.shape[3],) + tuple(pooled.size) + (Co,),
                   T.dtype)                    # zeroed by the kernel, example by example
    slope = np.zeros((0, 0, 0, 0), T.dtype) if slope is None else \
        np.ascontiguousarray(slope, dtype=T.dtype)
    dP = [pooled.offset[a] - conv_window_.offset[a] for a in (0, 1)]
    threads = numba.config.NUMBA_NUM_THREADS
    HW, block = T.shape[1] * T.shape[2], int(np.prod(T.shape[3:]))
    _conv_pool_window(np.ascontiguousarray(T), np.ascontiguousarray(conv.weight, dtype=T.dtype),
                      sh, sw, ph, pw, dh, dw, window.stride[0], window.stride[1], conv.groups,
                      argmax, slope, conv_hw[1], pooled.stride[0], pooled.stride[1],
                      dP[0], dP[1], out,
                      np.empty((threads, HW * block), T.dtype),
                      np.empty((threads, HW * block), np.int64),
                      np.empty((threads, HW * (T.shape[6] + 1)), np.int64),
                      np.empty((threads, T.shape[3] * conv_window_.size[0] * conv_window_.size[1]),
                               T.dtype))
    return out


def scale_window(T, slope, n):
    """Multiply each window by the slope of its entry, ``slope`` of shape (n, C, H, W),
    into a new array (``T`` may be read by other nodes of a graph)."""
    s = np.ascontiguousarray(slope.transpose(0, 2, 3, 1), dtype=T.dtype)
    T = np.ascontiguousarray(T)
    out = np.empty((n,) + T.shape[1:], T.dtype)
    _scale_window(T, s, out)
    return out


def maxpool_window(T, argmax, in_hw, out_hw, layer, window, new_size, slope=None):
    """Windowed tangent through a max-pool: each output takes its argmax input's window,
    shifted to where that input sits inside the (larger) output window. ``slope`` (N, C,
    H, W) fuses an elementwise layer before the pool: only the argmax entries are scaled."""
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    N = argmax.shape[0]
    out = np.empty((N,) + tuple(out_hw) + (T.shape[3],) + tuple(new_size) + (T.shape[6],),
                   T.dtype)                    # zeroed by the kernel, example by example
    slope = np.zeros((0, 0, 0, 0), T.dtype) if slope is None else \
        np.ascontiguousarray(slope, dtype=T.dtype)
    _maxpool_window(np.ascontiguousarray(T), argmax, slope, in_hw[1], sh, sw, ph, pw,
                    window.stride[0], window.stride[1], out)
    return out


def to_dense(T, window, in_shape, n, d0, d1):
    """Windowed tangent -> the standard dense tangent ``(n, d1 - d0, C, H, W)`` of the
    input directions (flat pixel indices) ``d0 <= d < d1``."""
    C0, H0, W0 = in_shape
    _, H, W, _, _, _, C = T.shape
    (Sh, Sw), (Ph, Pw) = window.stride, window.offset
    out = np.zeros((n, d1 - d0, C, H, W), T.dtype)
    _to_dense(np.ascontiguousarray(T), Sh, Sw, Ph, Pw, H0, W0, d0, out)
    return out
