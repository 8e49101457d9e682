"""3x3 stride-1 convolutions of many images by Winograd's minimal filtering F(2x2, 3x3).

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), Section
4: a 2x2 output tile of a 3x3 correlation is ``A^T [(G g G^T) * (B^T d B)] A`` for the
4x4 input tile ``d`` around it, so one tile of one (input, output) channel pair costs
16 multiplies instead of 36. Summed over the input channels, the 16 entries of the
transformed tiles are 16 matrix products ``U[k] (Co, Ci) @ V[k] (Ci, tiles)``, and the
products carry the work.

The tangents of forward mode (thousands of directions pushed through one layer) and the
cotangents of reverse mode are such batches. They are worked through in blocks of a few
images whose transformed tiles stay in cache, one run of blocks per core
(:func:`fwdderiv.threads.in_parts`), where im2col's columns, nine times the input, would
go through main memory. ``fwdderiv.layers.conv.WINOGRAD_MIN_POSITIONS`` decides when a
convolution takes this path; the timings are in ``docs/pages/performance.md``.

The results differ from im2col's by rounding only: the transforms add and halve (their
entries are 0, +-1 and +-1/2); the tests compare the two on random shapes and paddings.
"""
import numpy as np
from numba import njit

from .. import threads
from ..config import NUMBA_OPTS

#: Bytes of transformed tiles per block: small enough that a block's input and product
#: tiles stay in a core's cache between the transform, the product and the inverse
#: transform. Where 1 MiB comes from:
#: docs/pages/performance.md#the-engines-thresholds-and-where-their-numbers-come-from.
BLOCK_BYTES = 1 << 20

# F(2x2, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A, with
# G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]],
# B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
# A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]


@njit(**NUMBA_OPTS)
def _g(g0, g1, g2, h):
    # G applied to one column (or row) of three: g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2
    return g0, (g0 + g1 + g2) * h, (g0 - g1 + g2) * h, g2


@njit(**NUMBA_OPTS)
def _bt(d0, d1, d2, d3):
    # B^T applied to one column (or row) of four
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(**NUMBA_OPTS)
def _at(q0, q1, q2, q3):
    # A^T applied to one column (or row) of four
    return q0 + q1 + q2, q1 - q2 - q3


@njit(**NUMBA_OPTS)
def _weights(w, adjoint, U):
    # U[4*a + b, o, i] = (G g G^T)[a, b] with g = w[o, i]; for the adjoint (the
    # convolution's transpose) g = w[i, o] turned by 180 degrees. G on the columns, then
    # on the rows.
    A, B = U.shape[1], U.shape[2]
    h = w.dtype.type(0.5)
    t = np.empty((4, 3), w.dtype)
    for o in range(A):
        for i in range(B):
            for c in range(3):
                if adjoint:
                    g0, g1, g2 = w[i, o, 2, 2 - c], w[i, o, 1, 2 - c], w[i, o, 0, 2 - c]
                else:
                    g0, g1, g2 = w[o, i, 0, c], w[o, i, 1, c], w[o, i, 2, c]
                t[0, c], t[1, c], t[2, c], t[3, c] = _g(g0, g1, g2, h)
            for a in range(4):
                U[4 * a, o, i], U[4 * a + 1, o, i], U[4 * a + 2, o, i], U[4 * a + 3, o, i] = \
                    _g(t[a, 0], t[a, 1], t[a, 2], h)


def transform_weights(weight, dtype, adjoint=False):
    """``U[4*a + b, o, i] = (G w[o, i] G^T)[a, b]``: shape (16, Co, Ci); with
    ``adjoint``, of the transposed convolution's kernel (``w[i, o]`` turned by 180
    degrees), shape (16, Ci, Co)."""
    w = np.ascontiguousarray(weight, dtype=dtype)
    Co, Ci = w.shape[:2]
    U = np.empty((16, Ci, Co) if adjoint else (16, Co, Ci), dtype)
    _weights(w, adjoint, U)
    return U


@njit(**NUMBA_OPTS)
def _tiles_in(x, ph, pw, th, tw, V):
    # V[4*a + b, c, m*T + ty*tw + tx] = (B^T d B)[a, b] for the 4x4 tile d of x[m, c] at
    # rows 2*ty - ph.., columns 2*tx - pw.. (zero outside). Each image plane is first
    # copied into a zero-bordered buffer, so the tile loop has no bounds tests.
    M, C, H, W = x.shape
    T = th * tw
    Hp, Wp = 2 * th + 2, 2 * tw + 2
    P = np.zeros((Hp, Wp), x.dtype)
    y1, x1 = min(H, Hp - ph), min(W, Wp - pw)
    for m in range(M):
        for c in range(C):
            for iy in range(y1):
                for ix in range(x1):
                    P[iy + ph, ix + pw] = x[m, c, iy, ix]
            for ty in range(th):
                r0, r1, r2, r3 = P[2 * ty], P[2 * ty + 1], P[2 * ty + 2], P[2 * ty + 3]
                o = m * T + ty * tw
                v = V[:, c, o:o + tw]
                for tx in range(tw):
                    j = 2 * tx
                    # B^T d: the rows' combinations, for the tile's four columns
                    a0, b0, c0, d0 = _bt(r0[j], r1[j], r2[j], r3[j])
                    a1, b1, c1, d1 = _bt(r0[j + 1], r1[j + 1], r2[j + 1], r3[j + 1])
                    a2, b2, c2, d2 = _bt(r0[j + 2], r1[j + 2], r2[j + 2], r3[j + 2])
                    a3, b3, c3, d3 = _bt(r0[j + 3], r1[j + 3], r2[j + 3], r3[j + 3])
                    # (B^T d) B: the same combinations of the columns
                    v[0, tx], v[1, tx], v[2, tx], v[3, tx] = _bt(a0, a1, a2, a3)
                    v[4, tx], v[5, tx], v[6, tx], v[7, tx] = _bt(b0, b1, b2, b3)
                    v[8, tx], v[9, tx], v[10, tx], v[11, tx] = _bt(c0, c1, c2, c3)
                    v[12, tx], v[13, tx], v[14, tx], v[15, tx] = _bt(d0, d1, d2, d3)


@njit(**NUMBA_OPTS)
def _tiles_out(Q, th, tw, y):
    # y[m, c] = the 2x2 tiles A^T q A of q[a, b] = Q[4*a + b, c, m*T + tile], cut to
    # (Ho, Wo) (a last half tile when a side is odd)
    M, Co, Ho, Wo = y.shape
    T = th * tw
    Z = np.empty((2 * th, 2 * tw), y.dtype)
    for m in range(M):
        for c in range(Co):
            for ty in range(th):
                o = m * T + ty * tw
                q = Q[:, c, o:o + tw]
                z0, z1 = Z[2 * ty], Z[2 * ty + 1]
                for tx in range(tw):
                    # q A: the columns' combinations, per row of the tile
                    e0, e1 = _at(q[0, tx], q[1, tx], q[2, tx], q[3, tx])
                    f0, f1 = _at(q[4, tx], q[5, tx], q[6, tx], q[7, tx])
                    g0, g1 = _at(q[8, tx], q[9, tx], q[10, tx], q[11, tx])
                    h0, h1 = _at(q[12, tx], q[13, tx], q[14, tx], q[15, tx])
                    # A^T (q A): the rows'
                    z0[2 * tx], z1[2 * tx] = _at(e0, f0, g0, h0)
                    z0[2 * tx + 1], z1[2 * tx + 1] = _at(e1, f1, g1, h1)
            y[m, c] = Z[:Ho, :Wo]


def _planes(rows, cols, dtype):
    """An array (16, rows, cols) whose 16 planes start at 16 different cache lines of a
    4 KB page (a plane is an odd number of cache lines long): the transforms write and
    read the 16 planes together, and planes a multiple of 4 KB apart would alias in the
    cache and evict each other."""
    dtype = np.dtype(dtype)
    lines = -(-rows * cols * dtype.itemsize // 64)
    lines += 1 - lines % 2
    plane = lines * 64 // dtype.itemsize
    return np.ndarray((16, rows, cols), dtype, np.empty(16 * plane, dtype),
                      strides=(plane * dtype.itemsize, cols * dtype.itemsize, dtype.itemsize))


def conv3x3(x, weight, padding, adjoint=False):
    """The correlation of ``x`` (M, Ci, H, W) with ``weight`` (Co, Ci, 3, 3), stride 1,
    zero padding ``(ph, pw)``, no bias: an array (M, Co, H + 2*ph - 2, W + 2*pw - 2) in
    ``x``'s dtype, equal to im2col's product up to rounding. With ``adjoint``, ``weight``
    is (Ci, Co, 3, 3) and the kernel is its transpose: each ``weight[:, c]`` turned by
    180 degrees (the VJP of a stride-1 convolution, as a convolution)."""
    M, Ci, H, W = x.shape
    Co = weight.shape[1] if adjoint else weight.shape[0]
    ph, pw = padding
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    th, tw = (Ho + 1) // 2, (Wo + 1) // 2
    T = th * tw
    x = np.ascontiguousarray(x)
    U = transform_weights(weight, x.dtype, adjoint)
    y = np.empty((M, Co, Ho, Wo), dtype=x.dtype)
    block = BLOCK_BYTES // (16 * max(Ci, Co) * T * x.dtype.itemsize)
    block = int(max(1, min(block, -(-M // threads.parts()))))   # every core gets a block

    parts = threads.ranges(M, M * T * 16 * Ci * Co)
    # each part's tiles, allocated here in the calling thread, as the window kernels'
    # scratch is: a pool thread's own allocations come from its malloc arena, which
    # returns freed pages at once, so large blocks would be faulted in again every call
    spaces = {i: (_planes(Ci, block * T, x.dtype), _planes(Co, block * T, x.dtype))
              for i, _ in parts}

    def part(m0, m1):
        V, Q = spaces[m0]
        for b0 in range(m0, m1, block):
            b1 = min(m1, b0 + block)
            n = (b1 - b0) * T
            _tiles_in(x[b0:b1], ph, pw, th, tw, V[:, :, :n])
            np.matmul(U, V[:, :, :n], out=Q[:, :, :n])
            _tiles_out(Q[:, :, :n], th, tw, y[b0:b1])

    threads.run(parts, part)
    return y
