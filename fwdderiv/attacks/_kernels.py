"""Numba kernel of the JSMA pair search (reference: ``pairs._best_pairs_numpy``)."""
import numpy as np
from numba import njit, prange

from ..config import NUMBA_PARALLEL_OPTS


@njit(**NUMBA_PARALLEL_OPTS)
def best_pairs_kernel(alpha, beta, domain, increasing, p_out, q_out, score_out):
    """Write the best admissible pair of each row into p_out, q_out, score_out.

    alpha, beta: (N, M) float; domain: (N, M) bool; outputs (N,) preset to -1, -1, 0.
    Same arithmetic as the NumPy search (A = a_p + a_q, B = b_p + b_q in the input
    dtype, score -(A * B)), and the same answer: the largest score, ties to the first
    (p, q) in lexicographic order.

    Exact pruning: with amax = max alpha and bmin = min beta over the domain, every pair
    of row p scores at most (a_p + amax) * -(b_p + bmin) (rounding is monotonic, so the
    bound also holds in floating point). Rows are visited by decreasing bound and the
    search stops at the first row whose bound is below the best score found. For a
    softmax output (beta = -alpha) only a handful of rows are visited, so the next row is
    found by a linear scan rather than by sorting all bounds (the order among equal
    bounds does not matter: every row whose bound reaches the best score is visited).
    Samples are searched in parallel.
    """
    n, m = alpha.shape
    for s in prange(n):
        idx = np.empty(m, dtype=np.int64)
        d = 0
        for i in range(m):
            if domain[s, i]:
                idx[d] = i
                d += 1
        if d < 2:
            continue
        # For decreasing features, A < 0 < B: the same search on (-alpha, -beta) gives
        # identical products (negation is exact) and identical sign conditions.
        sign = alpha.dtype.type(1) if increasing else alpha.dtype.type(-1)
        amax = sign * alpha[s, idx[0]]
        bmin = sign * beta[s, idx[0]]
        for ii in range(1, d):
            amax = max(amax, sign * alpha[s, idx[ii]])
            bmin = min(bmin, sign * beta[s, idx[ii]])
        bound = np.empty(d, dtype=np.float64)
        for ii in range(d):
            fa = sign * alpha[s, idx[ii]] + amax
            fb = -(sign * beta[s, idx[ii]] + bmin)
            bound[ii] = fa * fb if (fa > 0 and fb > 0) else 0.0
        best = 0.0
        bp = -1
        bq = -1
        while True:
            ii = 0
            for jj in range(1, d):
                if bound[jj] > bound[ii]:
                    ii = jj
            if bound[ii] <= 0.0 or bound[ii] < best:
                break
            bound[ii] = -1.0                # visited
            p = idx[ii]
            ap = sign * alpha[s, p]
            bp_ = sign * beta[s, p]
            for jj in range(d):
                if jj == ii:
                    continue
                q = idx[jj]
                A = ap + sign * alpha[s, q]
                B = bp_ + sign * beta[s, q]
                if not (A > 0 and B < 0):
                    continue
                v = -(A * B)
                lo = min(p, q)
                hi = max(p, q)
                if v > best or (v == best and (lo < bp or (lo == bp and hi < bq))):
                    best = v
                    bp = lo
                    bq = hi
        p_out[s] = bp
        q_out[s] = bq
        score_out[s] = best
