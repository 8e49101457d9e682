"""Numba kernel of the JSMA pair search (reference: ``pairs._best_pairs_numpy``)."""
import numpy as np
from numba import njit, prange

from ..config import NUMBA_PARALLEL_OPTS


@njit(**NUMBA_PARALLEL_OPTS)
def best_pairs_kernel(alpha, beta, domain, increasing, p_out, q_out, score_out):
    """Write the best admissible pair of each row into p_out, q_out, score_out.

    alpha, beta: (N, M) float; domain: (N, M) bool; outputs (N,) preset to -1, -1, 0.
    Same arithmetic as the NumPy search (A = a_p + a_q, B = b_p + b_q in the input
    dtype, score -(A * B)), same strict ">" so ties keep the first (p, q).
    """
    n, m = alpha.shape
    for s in prange(n):
        idx = np.empty(m, dtype=np.int64)
        d = 0
        for i in range(m):
            if domain[s, i]:
                idx[d] = i
                d += 1
        best = 0.0
        bp = -1
        bq = -1
        for ii in range(d):
            p = idx[ii]
            ap = alpha[s, p]
            bp_ = beta[s, p]
            for jj in range(ii + 1, d):
                q = idx[jj]
                A = ap + alpha[s, q]
                B = bp_ + beta[s, q]
                if increasing:
                    if not (A > 0 and B < 0):
                        continue
                elif not (A < 0 and B > 0):
                    continue
                v = -(A * B)
                if v > best:
                    best = v
                    bp = p
                    bq = q
        p_out[s] = bp
        q_out[s] = bq
        score_out[s] = best
