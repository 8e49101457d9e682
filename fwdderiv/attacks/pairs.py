"""The pixel-pair search of the JSMA crafting algorithm (Papernot et al. 2016, Alg. 3).

For a pair ``(p, q)`` of features still in the search domain,

.. math::

    A = \\alpha_p + \\alpha_q, \\qquad B = \\beta_p + \\beta_q

and the chosen pair maximises ``-A * B`` subject to ``A > 0, B < 0`` (increasing
features, ``theta > 0``) or ``A < 0, B > 0`` (decreasing features, ``theta < 0``). As in
the paper, the running maximum starts at 0 and only a strictly larger score replaces it,
so ties go to the first pair in lexicographic ``(p, q)`` order, ``p < q``.

Before the search, ``alpha`` and ``beta`` of every sample are scaled by powers of two so
that their largest magnitudes lie in ``[0.5, 1)`` (:func:`_normalise`). Scaling by a
power of two is exact, and it multiplies every score of a sample by the same factor, so
the chosen pair is the one of the unscaled values; but ``-A * B`` no longer underflows
when the target probability, and with it ``alpha``, is tiny (``F_t`` near 1e-300 gives
scores near 1e-600, which are 0 in float64).

Two implementations give identical answers: a Numba loop over the domain (memory
``O(M)``, the default) and a vectorised NumPy search over blocks of rows whose size is
set by a byte budget, so no ``M x M`` score matrix is ever held beyond that budget.
"""
import numpy as np

__all__ = ["best_pairs", "DEFAULT_PAIR_MEMORY"]

#: Byte budget of the NumPy pair search when none is given (256 MiB).
DEFAULT_PAIR_MEMORY = 256 * 2**20


def _check(alpha, beta, domain):
    alpha = np.asarray(alpha)
    beta = np.asarray(beta)
    domain = np.asarray(domain)
    if alpha.ndim != 2 or alpha.shape != beta.shape or domain.shape != alpha.shape:
        raise ValueError(f"best_pairs expected alpha, beta and domain of one shape (N, M), "
                         f"got {alpha.shape}, {beta.shape}, {domain.shape}; flatten the "
                         "feature axes with .reshape(N, -1).")
    if alpha.dtype.kind != "f" or beta.dtype != alpha.dtype:
        raise TypeError(f"best_pairs expected alpha and beta of one float dtype, got "
                        f"{alpha.dtype} and {beta.dtype}; cast both with .astype(np.float32).")
    if domain.dtype != bool:
        raise TypeError(f"best_pairs expected a boolean domain mask, got {domain.dtype}; "
                        "pass domain.astype(bool).")
    return (np.ascontiguousarray(alpha), np.ascontiguousarray(beta),
            np.ascontiguousarray(domain))


def _normalise(v):
    """``v`` (N, M) scaled per row by ``2**e`` so that ``max|v|`` lies in [0.5, 1), and
    ``e`` (N,); rows of zeros (or non-finite maxima) are left as they are (e = 0)."""
    peak = np.abs(v).max(axis=1) if v.shape[1] else np.zeros(v.shape[0], v.dtype)
    ok = np.isfinite(peak) & (peak > 0)
    e = np.where(ok, -np.frexp(np.where(ok, peak, 1))[1], 0).astype(np.int64)
    if not e.any():
        return v, e
    return np.ldexp(v, e[:, None].astype(np.int32)).astype(v.dtype, copy=False), e


def _rows_per_block(n, m, itemsize, max_memory):
    # Per block row: A, B, -A*B (floats) and a few boolean masks over (n, m).
    per_row = max(1, n * m * (3 * itemsize + 3))
    return int(max(1, min(m, max_memory // per_row)))


def _best_pairs_numpy(alpha, beta, domain, increasing, max_memory):
    n, m = alpha.shape
    best = np.zeros(n, dtype=np.float64)
    bp = np.full(n, -1, dtype=np.int64)
    bq = np.full(n, -1, dtype=np.int64)
    rows = _rows_per_block(n, m, alpha.itemsize, max_memory)
    cols = np.arange(m)
    zero = alpha.dtype.type(0)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        # Only columns q >= r0 can satisfy q > p for a row p in [r0, r1).
        A = alpha[:, r0:r1, None] + alpha[:, None, r0:]
        B = beta[:, r0:r1, None] + beta[:, None, r0:]
        ok = (A > 0) & (B < 0) if increasing else (A < 0) & (B > 0)
        ok &= domain[:, r0:r1, None]
        ok &= domain[:, None, r0:]
        ok &= cols[None, r0:] > np.arange(r0, r1)[:, None]
        score = np.multiply(A, B, out=A)
        np.negative(score, out=score)
        score[~ok] = zero
        flat = score.reshape(n, -1)
        k = flat.argmax(axis=1)
        val = flat[np.arange(n), k]
        better = val > best
        width = m - r0
        best[better] = val[better]
        bp[better] = r0 + k[better] // width
        bq[better] = r0 + k[better] % width
    return bp, bq, best


def best_pairs(alpha, beta, domain, increasing=True, method="numba", max_memory=None):
    """Best admissible feature pair per sample.

    Parameters
    ----------
    alpha : ndarray of shape (N, M)
        ``dF_t/dx_i`` (see :func:`~fwdderiv.attacks.saliency.target_terms`).
    beta : ndarray of shape (N, M)
        ``sum_{j != t} dF_j/dx_i``.
    domain : ndarray of shape (N, M), bool
        Search domain: features still allowed to change.
    increasing : bool
        Sign conditions of ``theta > 0`` (True) or ``theta < 0`` (False).
    method : {"numba", "numpy"}
        ``"numba"`` loops over domain pairs with O(M) memory; ``"numpy"`` scores blocks
        of rows at once within ``max_memory`` bytes. Both return the same pairs.
    max_memory : int or None
        Byte budget of the NumPy search (default :data:`DEFAULT_PAIR_MEMORY`). A block
        is at least one row, ``N * M * (3 * itemsize + 3)`` bytes.

    Returns
    -------
    p, q : ndarray of shape (N,), int64
        Chosen pair with ``p < q``, or ``-1`` where no admissible pair exists.
    score : ndarray of shape (N,), float64
        ``-A * B`` of the chosen pair, 0 where none exists (it may underflow to 0 for
        tiny ``alpha`` or ``beta``; the pair is still chosen on exact rescaled values).

    Examples
    --------
    >>> alpha = np.array([[0.5, -0.1, 0.3]], dtype=np.float32)
    >>> beta = -alpha
    >>> p, q, s = best_pairs(alpha, beta, np.ones((1, 3), bool))
    >>> int(p[0]), int(q[0])
    (0, 2)
    """
    alpha, beta, domain = _check(alpha, beta, domain)
    alpha, ea = _normalise(alpha)
    beta, eb = _normalise(beta)
    p, q, score = _search(alpha, beta, domain, increasing, method, max_memory)
    return p, q, np.ldexp(score, -(ea + eb).astype(np.int32))


def _search(alpha, beta, domain, increasing, method, max_memory):
    if method == "numba":
        from ._kernels import best_pairs_kernel
        n = alpha.shape[0]
        p = np.full(n, -1, dtype=np.int64)
        q = np.full(n, -1, dtype=np.int64)
        score = np.zeros(n, dtype=np.float64)
        best_pairs_kernel(alpha, beta, domain, bool(increasing), p, q, score)
        return p, q, score
    if method == "numpy":
        budget = DEFAULT_PAIR_MEMORY if max_memory is None else int(max_memory)
        if budget <= 0:
            raise ValueError(f"best_pairs expected a positive max_memory in bytes, got "
                             f"{max_memory}; pass None for the default of "
                             f"{DEFAULT_PAIR_MEMORY} bytes.")
        return _best_pairs_numpy(alpha, beta, domain, bool(increasing), budget)
    raise ValueError(f"best_pairs expected method 'numba' or 'numpy', got {method!r}.")
