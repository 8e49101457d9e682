"""Slow, obvious references for the JSMA: the paper's loops written out one by one."""
import math

import numpy as np


def brute_force_pair(alpha, beta, domain, increasing):
    """Algorithm 3 of Papernot et al. for one sample: every pair p < q, max starts at 0."""
    best, bp, bq = 0.0, -1, -1
    m = alpha.shape[0]
    for p in range(m):
        for q in range(p + 1, m):
            if not (domain[p] and domain[q]):
                continue
            A = alpha[p] + alpha[q]
            B = beta[p] + beta[q]
            ok = (A > 0 and B < 0) if increasing else (A < 0 and B > 0)
            if ok and -(A * B) > best:
                best, bp, bq = -(A * B), p, q
    return bp, bq


def all_pairs_at_once(alpha, beta, domain, increasing):
    """:func:`brute_force_pair` with NumPy arrays instead of the double loop: the same
    pair, ties included (the first maximum in the order p, then q, as the loop's strict
    comparison keeps it). Fast enough for 784 features."""
    idx = np.flatnonzero(domain)                 # the search runs over Gamma only
    a, b = alpha[idx], beta[idx]
    A = a[:, None] + a[None, :]
    B = b[:, None] + b[None, :]
    ok = (A > 0) & (B < 0) if increasing else (A < 0) & (B > 0)
    ok &= np.triu(np.ones(ok.shape, bool), 1)
    score = np.where(ok, -(A * B), 0.0)
    k = int(np.argmax(score)) if score.size else 0
    if not score.size or score.flat[k] <= 0:
        return -1, -1
    return int(idx[k // len(idx)]), int(idx[k % len(idx)])


def naive_jsma(net, x, t, theta=1.0, upsilon=0.145, clip=(0.0, 1.0), logits=False):
    """Algorithm 2 for one sample (shape (1, *S)) with the default "saturated" policy:
    Gamma starts with the features that can move, and the loop stops on the changed-feature
    budget instead of max_iter (not the paper's literal loop: see paper_algorithm_2).

    Returns (x_adv, iterations).
    """
    lo, hi = clip
    m = x[0].size
    budget = math.floor(upsilon * m + 1e-9)
    xa = x.copy()
    flat = xa.reshape(-1)
    x0 = x.reshape(-1)
    domain = flat < hi if theta > 0 else flat > lo
    it = 0
    f = net[:-1] if logits else net
    while True:
        y, J = f.jacobian(xa, return_output=True)
        if y.reshape(-1).argmax() == t:
            break
        if np.count_nonzero(flat != x0) + 2 > budget:
            break
        J = J.reshape(y.size, m)
        alpha = J[t]
        beta = np.zeros_like(alpha)
        for j in range(y.size):
            if j != t:
                beta = beta + J[j]
        p, q = brute_force_pair(alpha, beta, domain, theta > 0)
        if p < 0:
            break
        for i in (p, q):
            flat[i] = min(hi, max(lo, flat[i] + theta))
            domain[i] = flat[i] < hi if theta > 0 else flat[i] > lo
        it += 1
    return xa, it


def paper_algorithm_2(net, x, t, theta=1.0, upsilon=0.145, clip=(0.0, 1.0),
                      pair=brute_force_pair):
    """Algorithm 2 of Papernot et al. as printed, line by line, for one sample (shape
    (1, *S)) and ``|theta| = 1``, with Algorithm 3's pair choice:

        X* <- X;  Gamma = {1 ... |X|};  max_iter = floor(|X| * Upsilon / 2)
        s = argmax_j F(X*)_j
        while s != Y* and iter < max_iter and Gamma != {}:
            p1, p2 = saliency_map(grad F(X*), Gamma, Y*)
            modify p1 and p2 in X* by theta
            remove p1 from Gamma if p1 == 0 or p1 == 1 (the same for p2)
            s = argmax_j F(X*)_j;  iter++

    Every iteration counts, including one whose pick changes nothing (a feature already
    at its bound). ``saliency_map`` finding no admissible pair ends the loop too.

    ``pair`` is Algorithm 3's search (:func:`all_pairs_at_once` is the same search, fast).

    Returns (x_adv, iterations, picks) with ``picks`` the list of (p1, p2).
    """
    lo, hi = clip
    m = x[0].size
    xa = x.copy()
    flat = xa.reshape(-1)
    gamma = set(range(m))
    max_iter = math.floor(m * upsilon / 2 + 1e-9)
    it, picks = 0, []
    y, J = net.jacobian(xa, return_output=True)
    s = y.reshape(-1).argmax()
    while s != t and it < max_iter and gamma:
        J = J.reshape(y.size, m)
        # beta_i = sum over j != t of J[j, i], added in the order j = 0, 1, ...
        beta = np.zeros(m, J.dtype)
        for j in range(y.size):
            if j != t:
                beta = beta + J[j]
        domain = np.zeros(m, bool)
        domain[list(gamma)] = True
        p1, p2 = pair(J[t], beta, domain, theta > 0)
        if p1 < 0:
            break
        picks.append((p1, p2))
        for i in (p1, p2):
            flat[i] = min(hi, max(lo, flat[i] + theta))
            if flat[i] == lo or flat[i] == hi:
                gamma.discard(i)
        y, J = net.jacobian(xa, return_output=True)
        s = y.reshape(-1).argmax()
        it += 1
    return xa, it, picks
