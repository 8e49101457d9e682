"""The paper's evaluation measures (Papernot et al. 2016, Section V).

- success rate and mean distortion, over all samples and over successful ones
  (Section V-A), and their source-by-target matrices;
- the hardness of a source-target pair (Section V-B): from runs at a grid of maximum
  distortions Upsilon_k, the area under the measured average distortion against the
  success rate, by the trapezoidal rule (:func:`hardness`, :func:`hardness_matrix`);
  the older one-run estimate that integrates the budget instead is kept under the name
  :func:`hardness_budget_approximation`;
- the adversarial distance of a sample (Section V-C), the fraction of features whose
  increasing saliency map is zero: ``A(X, t) = 1 - (1/M) sum_i 1[S(X, t)_i > 0]``.
"""
from typing import NamedTuple

import numpy as np

from .saliency import saliency_map

#: The maximum distortions at which Papernot et al. ran the attack to measure hardness
#: (Sec. V-B), as we read the paper: Upsilon = 0.3, 1.3, 2.6, 5.1, 7.7, 10.2 and 12.8% of
#: the features, that is about 2, 10, 20, 40, 60, 80 and 100 of MNIST's 784 pixels.
#: UNCONFIRMED: no stored copy of the paper's text could be searched to check the grid
#: (the project's search tools hold summaries of the paper, not Sec. V-B itself); the
#: report and ``fwdderiv reproduce --help`` say so (:data:`PAPER_HARDNESS_GRID_CONFIRMED`).
PAPER_HARDNESS_UPSILONS = (0.003, 0.013, 0.026, 0.051, 0.077, 0.102, 0.128)
#: Whether :data:`PAPER_HARDNESS_UPSILONS` was checked against the paper's text.
PAPER_HARDNESS_GRID_CONFIRMED = False
#: A pair's hardness is shown only when its success rate reaches this at the largest
#: budget: below it, the unmeasured part of the success range would decide the number.
HARDNESS_MIN_SUCCESS = 0.9

__all__ = ["success_rate", "mean_distortion", "source_target_matrix",
           "source_target_matrices", "success_curve", "hardness", "hardness_matrix",
           "hardness_budget_approximation", "hardness_matrix_budget_approximation",
           "PAPER_HARDNESS_UPSILONS", "PAPER_HARDNESS_GRID_CONFIRMED",
           "HARDNESS_MIN_SUCCESS", "HardnessMatrix", "wilson_interval",
           "adversarial_distance", "adversarial_distance_from_map"]


def success_rate(success):
    """Fraction of successful samples; NaN for an empty array.

    Parameters
    ----------
    success : ndarray of shape (N,), bool
    """
    success = np.asarray(success, dtype=bool)
    return float(success.mean()) if success.size else float("nan")


def wilson_interval(successes, n, z=1.96):
    """Wilson score interval of a success rate (95% with the default ``z``).

    For ``k`` successes in ``n`` trials, ``p = k / n``, the bounds are
    ``(p + z^2/(2n) -/+ z * sqrt(p (1 - p) / n + z^2 / (4 n^2))) / (1 + z^2 / n)``; unlike
    ``p -/+ z * sqrt(p (1 - p) / n)`` it stays inside [0, 1] and is not empty at
    ``k = 0`` or ``k = n``, which matters for the ~10 crafts of a source-target cell.

    Parameters
    ----------
    successes, n : int or ndarray of ints (broadcast together), ``0 <= successes <= n``
    z : float, the standard normal quantile (1.96: 95%)

    Returns
    -------
    (low, high) : floats, or float64 ndarrays of the broadcast shape; NaN where ``n == 0``.
    """
    k = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > m):
        raise ValueError(f"wilson_interval expected 0 <= successes <= n, got successes="
                         f"{successes!r} and n={n!r}; pass counts, not rates.")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / m
        scale = 1 + z * z / m
        centre = (p + z * z / (2 * m)) / scale
        half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / scale
        low = np.where(m > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        high = np.where(m > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def mean_distortion(distortion, success=None):
    """Mean distortion, over all samples or (given ``success``) over successful ones.

    Parameters
    ----------
    distortion : ndarray of shape (N,)
        Fraction of features changed per sample.
    success : ndarray of shape (N,), bool, optional
        Restrict the mean to these samples.

    Returns
    -------
    float
        NaN when no sample is selected.
    """
    d = np.asarray(distortion, dtype=np.float64)
    if success is not None:
        d = d[np.asarray(success, dtype=bool)]
    return float(d.mean()) if d.size else float("nan")


def _pairs(sources, targets, n_classes):
    s = np.asarray(sources, dtype=np.int64)
    t = np.asarray(targets, dtype=np.int64)
    if s.shape != t.shape or s.ndim != 1:
        raise ValueError(f"source_target_matrix expected sources and targets of one shape "
                         f"(N,), got {s.shape} and {t.shape}.")
    if s.size and (min(s.min(), t.min()) < 0 or max(s.max(), t.max()) >= n_classes):
        raise ValueError(f"source_target_matrix expected classes in [0, {n_classes}); "
                         "pass the right n_classes.")
    return s, t


def source_target_matrix(sources, targets, values, n_classes, where=None):
    """Mean of ``values`` per (source, target) pair.

    Parameters
    ----------
    sources, targets : ndarray of shape (N,)
    values : ndarray of shape (N,)
        E.g. ``success`` (gives success rates) or ``distortion``.
    n_classes : int
    where : ndarray of shape (N,), bool, optional
        Only these samples count (e.g. ``success`` for distortion over successes).

    Returns
    -------
    ndarray of shape (n_classes, n_classes)
        Row: source class, column: target class; NaN where no sample counts.
    """
    s, t = _pairs(sources, targets, n_classes)
    v = np.asarray(values, dtype=np.float64)
    keep = np.ones(s.shape, bool) if where is None else np.asarray(where, dtype=bool)
    total = np.zeros((n_classes, n_classes))
    count = np.zeros((n_classes, n_classes))
    np.add.at(total, (s[keep], t[keep]), v[keep])
    np.add.at(count, (s[keep], t[keep]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def source_target_matrices(sources, targets, success, distortion, n_classes):
    """All source-by-target matrices of a crafting run.

    Returns
    -------
    dict of ndarray of shape (n_classes, n_classes)
        ``count``, ``success_rate``, ``distortion_all``, ``distortion_successful``.
    """
    s, t = _pairs(sources, targets, n_classes)
    count = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(count, (s, t), 1)
    return {
        "count": count,
        "success_rate": source_target_matrix(s, t, success, n_classes),
        "distortion_all": source_target_matrix(s, t, distortion, n_classes),
        "distortion_successful": source_target_matrix(s, t, distortion, n_classes,
                                                      where=success),
    }


def success_curve(success, distortion, upsilons):
    """Success rate ``tau(Upsilon_k)`` had the budget been ``Upsilon_k``.

    The crafting trajectory does not depend on the budget (the budget only stops it),
    so a sample succeeds under budget ``Upsilon_k`` exactly when it succeeded in the
    full run with distortion at most ``Upsilon_k``; one run gives the whole curve.

    Parameters
    ----------
    success, distortion : ndarray of shape (N,)
    upsilons : ndarray of shape (K,)
        Increasing budgets (fractions of features).

    Returns
    -------
    ndarray of shape (K,)
    """
    success = np.asarray(success, dtype=bool)
    d = np.asarray(distortion, dtype=np.float64)
    u = np.asarray(upsilons, dtype=np.float64)
    if not success.size:
        return np.full(u.shape, np.nan)
    return ((success[None, :] & (d[None, :] <= u[:, None] + 1e-12)).mean(axis=1))


def hardness(success_rates, distortions, closed=True):
    r"""Hardness of one source-target pair, after Papernot et al. 2016 (Sec. V-B).

    The attack is run once per maximum distortion ``Upsilon_k`` of a grid (the paper's as
    we read it: :data:`PAPER_HARDNESS_UPSILONS`); each run gives the pair's success rate
    ``tau_k`` and the *measured* mean distortion ``eps_k`` of its successful samples. The
    hardness is the area under the distortion against the success rate,

    .. math::

        H(s, t) = \int_0^1 \varepsilon(s, t, \tau)\, d\tau \approx
        \sum_k (\tau_{k+1} - \tau_k) \frac{\varepsilon_{k+1} + \varepsilon_k}{2},

    the trapezoidal rule over the runs in order of increasing ``Upsilon`` (runs without a
    successful sample have no ``eps_k`` and are left out). With ``closed=True`` (the
    default) the curve is closed over the whole success range: ``eps`` is held at its
    first measured value from ``tau = 0`` up to the first run's rate, and at its last
    value from the last run's rate up to ``tau = 1``. ``H`` is then the mean distortion
    of successful samples averaged over success levels 0..1, in fractions of the features;
    larger is harder. Without closing (``closed=False``, the sum over the measured runs
    only) a pair that jumps from 0% to 100% between two budgets scores 0 and a pair
    that stays at 40% scores less than one that reaches 100%, so the measured range is
    what the number ranks. :func:`hardness_matrix` masks pairs whose success never
    reaches :data:`HARDNESS_MIN_SUCCESS`, whose closed value would be mostly
    extrapolated.

    Parameters
    ----------
    success_rates : ndarray of shape (R,)
        ``tau_k`` of the runs, in order of increasing ``Upsilon_k``.
    distortions : ndarray of shape (R,)
        ``eps_k``: mean distortion (fraction of features) of the successful samples of
        each run; NaN where a run had none.
    closed : bool, default True
        Close the curve at ``tau = 0`` and ``tau = 1`` as described above.

    Returns
    -------
    float
        NaN when no run had a successful sample (and, unclosed, when fewer than two had).

    Examples
    --------
    >>> round(hardness([0.2, 0.6, 0.9], [0.01, 0.03, 0.05]), 6)     # closed
    0.027
    >>> round(hardness([0.2, 0.6, 0.9], [0.01, 0.03, 0.05], closed=False), 6)
    0.02
    """
    tau = np.asarray(success_rates, dtype=np.float64)
    eps = np.asarray(distortions, dtype=np.float64)
    if tau.ndim != 1 or tau.shape != eps.shape:
        raise ValueError(f"hardness expected success_rates and distortions of one shape "
                         f"(R,), one entry per run, got {tau.shape} and {eps.shape}.")
    keep = np.isfinite(eps) & np.isfinite(tau)
    tau, eps = tau[keep], eps[keep]
    if closed and tau.size:
        tau = np.concatenate([[0.0], tau, [1.0]])
        eps = np.concatenate([eps[:1], eps, eps[-1:]])
    if tau.size < 2:
        return float("nan")
    return float(np.sum(np.diff(tau) * (eps[1:] + eps[:-1]) / 2))


class HardnessMatrix(NamedTuple):
    """:func:`hardness_matrix`'s result. Every array is indexed ``[source, target]``
    (the per-run ones ``[run, source, target]``)."""

    #: ndarray (K, K): closed hardness of the pairs whose success reached ``min_success``;
    #: NaN for the others (masked) and for pairs without rows.
    matrix: np.ndarray
    #: ndarray (R, K, K): success rate ``tau`` of each run.
    success_rate: np.ndarray
    #: ndarray (R, K, K): mean distortion of the successful rows of each run.
    distortion: np.ndarray
    #: ndarray (K, K): the lowest and highest success rate over the runs (the reached
    #: range), as ``reached_low`` / ``reached_high``.
    reached_low: np.ndarray
    reached_high: np.ndarray
    #: ndarray (K, K) of bool: pairs with rows whose success never reached ``min_success``.
    masked: np.ndarray
    #: ndarray (K, K): the closed hardness before masking (NaN where no run succeeded).
    unmasked: np.ndarray


def hardness_matrix(sources, targets, success, distortion, n_classes,
                    min_success=HARDNESS_MIN_SUCCESS):
    """:func:`hardness` of every (source, target) pair from runs at a grid of budgets.

    Parameters
    ----------
    sources, targets : ndarray of shape (N,)
        The same (sample, target) rows in every run.
    success, distortion : ndarray of shape (R, N)
        Outcome of each row in each of the R runs, in order of increasing Upsilon.
    n_classes : int
    min_success : float, default :data:`HARDNESS_MIN_SUCCESS`
        Pairs whose success rate stays below this at every budget are masked: their
        hardness would be mostly the extrapolated part, and a pair that fails at every
        budget has none. They stay visible through ``reached_high``.

    Returns
    -------
    HardnessMatrix
    """
    s, t = _pairs(sources, targets, n_classes)
    success = np.asarray(success, dtype=bool)
    distortion = np.asarray(distortion, dtype=np.float64)
    if success.ndim != 2 or success.shape != distortion.shape or success.shape[1] != s.size:
        raise ValueError(f"hardness_matrix expected success and distortion of shape "
                         f"(R runs, {s.size} rows), got {success.shape} and "
                         f"{distortion.shape}.")
    if not 0 < min_success <= 1:
        raise ValueError(f"hardness_matrix: min_success must be in (0, 1], got "
                         f"{min_success!r}; the default is {HARDNESS_MIN_SUCCESS}")
    tau = np.stack([source_target_matrix(s, t, ok, n_classes) for ok in success])
    eps = np.stack([source_target_matrix(s, t, d, n_classes, where=ok)
                    for ok, d in zip(success, distortion)])
    H = np.full((n_classes, n_classes), np.nan)
    for a, b in zip(*np.nonzero(np.isfinite(tau).any(axis=0))):
        H[a, b] = hardness(tau[:, a, b], eps[:, a, b])
    has_rows = np.isfinite(tau).all(axis=0)
    filled = np.where(has_rows, tau, 0.0)
    low = np.where(has_rows, filled.min(axis=0), np.nan)
    high = np.where(has_rows, filled.max(axis=0), np.nan)
    masked = has_rows & (high < min_success - 1e-12)
    return HardnessMatrix(np.where(masked, np.nan, H), tau, eps, low, high, masked, H)


def hardness_budget_approximation(success, distortion, upsilons):
    """A one-run stand-in for the hardness: integrates the *budget*, not the distortion.

    .. math::

        H(s, t) = \\int_0^1 \\Upsilon(s, t, \\tau)\\, d\\tau \\approx
        \\sum_k (\\tau_{k+1} - \\tau_k) \\frac{\\Upsilon_{k+1} + \\Upsilon_k}{2}

    the area under the curve of the maximum distortion ``Upsilon`` needed against the
    success rate ``tau`` it buys, by the trapezoidal rule over the budgets ``upsilons``.
    Samples that do not succeed within the largest budget are charged that budget (the
    curve is closed with the point ``(tau=1, Upsilon_max)``), so a pair that resists the
    attack is the hardest, not the easiest. Integrating by parts, ``H`` equals
    ``Upsilon_max`` minus the area under the success-rate-versus-distortion curve.
    ``H`` lies in ``[0, Upsilon_max]``; larger is harder.

    This is *not* the paper's measure (:func:`hardness`): it reads the success rate
    under smaller budgets off one run (:func:`success_curve`, exact for ``|theta|`` at
    least the clip range) and integrates those budgets, closing the curve at
    ``tau = 1`` by charging failures ``Upsilon_max``. It is cheap, but its numbers are
    not comparable with the paper's hardness figure.

    Parameters
    ----------
    success, distortion : ndarray of shape (N,)
        Samples of one (source, target) pair.
    upsilons : ndarray of shape (K,)
        Increasing budgets, fractions of features (e.g. ``np.linspace(0, 0.145, 11)``).

    Returns
    -------
    float
    """
    u = np.asarray(upsilons, dtype=np.float64)
    if u.ndim != 1 or u.size < 2 or np.any(np.diff(u) <= 0):
        raise ValueError(f"hardness_budget_approximation expected at least two increasing "
                         f"budgets, got {u}; pass e.g. np.linspace(0, 0.145, 11).")
    tau = np.append(success_curve(success, distortion, u), 1.0)
    u = np.append(u, u[-1])
    return float(np.sum(np.diff(tau) * (u[1:] + u[:-1]) / 2))


def hardness_matrix_budget_approximation(sources, targets, success, distortion, n_classes,
                                         upsilons):
    """:func:`hardness_budget_approximation` for every (source, target) pair from one run;
    NaN where there is no sample.

    Returns
    -------
    ndarray of shape (n_classes, n_classes)
    """
    s, t = _pairs(sources, targets, n_classes)
    success = np.asarray(success, dtype=bool)
    distortion = np.asarray(distortion, dtype=np.float64)
    H = np.full((n_classes, n_classes), np.nan)
    for a in range(n_classes):
        for b in range(n_classes):
            sel = (s == a) & (t == b)
            if sel.any():
                H[a, b] = hardness_budget_approximation(success[sel], distortion[sel],
                                                        upsilons)
    return H


def adversarial_distance_from_map(S):
    """``A(X, t) = 1 - (1/M) sum_i 1[S(X, t)_i > 0]`` per sample (Sec. V-C).

    Parameters
    ----------
    S : ndarray of shape (N, *S)
        Saliency map (increasing, eq. 8).

    Returns
    -------
    ndarray of shape (N,)
        Near 1: few features help reach ``t`` (hard); near 0: many do.
    """
    S = np.asarray(S)
    return 1.0 - (S.reshape(S.shape[0], -1) > 0).mean(axis=1)


def adversarial_distance(net, x, targets, logits=False, mode="forward", max_memory=None):
    """Adversarial distance of samples to target classes, from the forward derivative.

    Parameters
    ----------
    net : Sequential
    x : ndarray of shape (N, *S)
    targets : ndarray of shape (N,) or int
    logits, mode, max_memory
        As in :func:`~fwdderiv.attacks.saliency.saliency_map`.

    Returns
    -------
    ndarray of shape (N,)
    """
    S = saliency_map(net, x, targets, increasing=True, logits=logits, mode=mode,
                     max_memory=max_memory)
    return adversarial_distance_from_map(S)
