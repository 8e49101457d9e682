"""The Jacobian-based saliency map attack (JSMA), Papernot et al. 2016, Algorithms 1-3.

Each iteration computes the forward derivative of the network at the current sample,
forms ``alpha`` (target class) and ``beta`` (all other classes) for every feature, picks
the admissible pair ``(p, q)`` of the search domain that maximises ``-alpha * beta``
(:func:`~fwdderiv.attacks.pairs.best_pairs`), and moves both features by ``theta``
within the clip range. A sample stops when the network predicts its target, when one
more pair could exceed the distortion budget ``floor(upsilon * M)`` changed features,
when it has used ``max_iter`` iterations (with ``domain_policy="paper"``, Algorithm 2's
``floor(M * upsilon / 2)``, which implies the budget), or when no admissible pair is
left.
"""
from dataclasses import dataclass
import math

import numpy as np

from ..distributed.sharded import run_sharded
from ..validation import (check_classifier, check_finite, check_int, check_max_memory,
                          check_real)
from ._progress import make_progress
from .pairs import best_pairs
from .saliency import (_as_targets, _check_output_layer, forward_derivative, softmax_output,
                       target_terms, target_terms_vjp)

__all__ = ["JSMAResult", "jsma", "expand_targets", "jsma_untargeted"]

DOMAIN_POLICIES = ("saturated", "picked", "paper")
MODES = ("forward", "reverse", "vjp")


@dataclass
class JSMAResult:
    """What :func:`jsma` returns, one entry per (sample, target) pair.

    Attributes
    ----------
    x_adv : ndarray of shape (N, *S)
        Crafted samples (equal to the input where nothing was changed).
    success : ndarray of shape (N,), bool
        The final prediction equals the target.
    n_changed : ndarray of shape (N,), int64
        Number of features whose value differs from the input (the paper's L0
        distortion).
    distortion : ndarray of shape (N,), float64
        ``n_changed / n_features``.
    iterations : ndarray of shape (N,), int64
        Pairs modified (crafting iterations).
    targets, original, predictions : ndarray of shape (N,), int64
        Target class, prediction on the input, prediction on ``x_adv``.
    n_features : int
        ``M = prod(S)``.
    budget : int
        Largest number of features a sample may change, ``floor(upsilon * M)``.
    """

    x_adv: np.ndarray
    success: np.ndarray
    n_changed: np.ndarray
    distortion: np.ndarray
    iterations: np.ndarray
    targets: np.ndarray
    original: np.ndarray
    predictions: np.ndarray
    n_features: int
    budget: int


def _validate(x, theta, upsilon, clip, domain_policy, mode):
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        kind = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"jsma expected a float ndarray x of shape (N, *S), got {kind}; "
                        "convert with np.asarray(x, dtype=np.float32).")
    if x.ndim < 2:
        raise ValueError(f"jsma expected x of shape (N, *S) with a batch axis, got "
                         f"{x.shape}; add one with x[None].")
    theta = check_real(theta, "theta", "jsma", nonzero=True,
                       hint="+1 increases features, -1 decreases them")
    upsilon = check_real(upsilon, "upsilon", "jsma", 0, 1,
                         hint="the largest fraction of features to change; the paper "
                              "uses 0.145")
    try:
        lo, hi = clip
    except (TypeError, ValueError):
        raise TypeError(f"jsma expected clip=(low, high), got {clip!r}") from None
    lo = check_real(lo, "clip[0]", "jsma")
    hi = check_real(hi, "clip[1]", "jsma")
    if not lo < hi:
        raise ValueError(f"jsma expected clip=(low, high) with low < high, got {clip}.")
    if mode not in MODES:
        raise ValueError(f"jsma expected mode in {MODES}, got {mode!r}; 'forward' is the "
                         "paper's forward derivative.")
    if domain_policy not in DOMAIN_POLICIES:
        raise ValueError(f"jsma expected domain_policy in {DOMAIN_POLICIES}, got "
                         f"{domain_policy!r}.")
    check_finite(x, "jsma")
    return theta, upsilon, lo, hi

@dataclass(frozen=True)
class _Settings:
    """The checked settings of one :func:`jsma` call that crafting a batch reads."""

    theta: float
    lo: float
    hi: float
    budget: int
    max_iter: int
    policy: str
    logits: bool
    mode: str
    pair_method: str
    max_memory: object
    compute_dtype: object


@dataclass
class _Batch:
    """One batch being crafted, one row per sample.

    ``x_adv`` and the arrays in ``out`` are views into the result; ``xf`` is ``x_adv``
    of shape (n, M), ``x0`` the input of shape (n, M), ``domain`` the search domain
    Gamma and ``changed`` the features that differ from the input (both bool, (n, M));
    ``dt`` is the input's scalar type."""

    net: object
    x_adv: np.ndarray
    t: np.ndarray
    out: dict
    notify: object
    x0: np.ndarray
    xf: np.ndarray
    domain: np.ndarray
    changed: np.ndarray
    dt: type


def jsma(net, x, targets, theta=1.0, upsilon=0.145, clip=(0.0, 1.0),
         domain_policy="saturated", logits=False, mode="forward", pair_method="numba",
         batch_size=256, max_iter=None, max_memory=None, progress=None,
         compute_dtype=np.float64, workers=None, scheduler=None, shard_dir=None,
         shard_size=None):
    """Craft targeted adversarial samples with the JSMA (Papernot et al. 2016).

    Parameters
    ----------
    net : Sequential, a classifier ending in Softmax (the paper's ``F``)
    x : float ndarray of shape (N, *S), inside ``clip``
    targets : int or ndarray of shape (N,), the target class of each sample
    theta : float
        Change of each chosen feature per iteration; ``+1`` saturates upwards (the
        paper's MNIST setting), negative values decrease (alpha < 0, beta > 0).
    upsilon : float
        Maximum distortion: at most ``floor(upsilon * M)`` of M features change (0.145).
    clip : (float, float), the valid feature range (every modified value is clipped)
    domain_policy : {"saturated", "picked", "paper"}
        Gamma: cleverhans's start (the movable features; one leaves at its bound),
        Algorithm 2 as printed, or each picked feature leaves; see "Search domain" in
        docs/pages/reproduce.md.
    logits : bool, differentiate the logits ``Z = net[:-1]`` instead of ``F``
    mode : {"forward", "reverse", "vjp"}
        How ``alpha`` and ``beta`` are obtained: the paper's forward derivative (default),
        the same Jacobian in reverse mode, or only the two rows the attack needs
        (:func:`~fwdderiv.attacks.saliency.target_terms_vjp`); equal up to rounding.
    pair_method : {"numba", "numpy"}, see :func:`~fwdderiv.attacks.pairs.best_pairs`
    batch_size : int
        Samples crafted together (finished ones drop out of the Jacobian computation).
    max_iter : int or None
        Cap on iterations per sample. Default: Algorithm 2's ``floor(M * upsilon / 2)``
        for ``"paper"``, else enough to saturate the whole budget.
    max_memory : int or None, bytes for the Jacobian and the NumPy pair search
    progress : None, bool or callable (a bar; a callable gets done, total, n_success)
    compute_dtype : dtype or None
        Precision of the derivatives (default float64; None: the input's): in float32
        the rounding of a saturated softmax can flip the pair search's sign tests.
        ``x_adv``, predictions and success flags keep the input's dtype.
    workers, scheduler : int, or str / distributed.Client, optional
        Craft sharded on a local ``dask.distributed`` cluster of ``workers`` processes
        (``fwdderiv[distributed]``) or an existing one; results equal one process's.
    shard_dir, shard_size : path, int, optional
        Finished shards are written there and reused on a later identical call (resume);
        rows per shard default to 288. See :func:`fwdderiv.distributed.run_sharded`.

    Returns
    -------
    JSMAResult

    Examples
    --------
    >>> import fwdderiv as fd
    >>> net = fd.models.pretrained("digits_net", "digits")
    >>> ds = fd.datasets.load_dataset("digits")
    >>> res = jsma(net, ds.x_test[:2], targets=[3, 5])
    >>> res.x_adv.shape, res.success.dtype
    ((2, 1, 8, 8), dtype('bool'))
    """
    theta, upsilon, lo, hi = _validate(x, theta, upsilon, clip, domain_policy, mode)
    batch_size, max_iter, max_memory, t = _check_settings(
        net, x, targets, clip, lo, hi, logits, batch_size, max_iter, max_memory, workers)
    m = int(np.prod(x.shape[1:]))
    budget = int(math.floor(upsilon * m + 1e-9))
    if max_iter is None:
        max_iter = _default_max_iter(budget, theta, lo, hi, domain_policy)
    bar = make_progress(progress, x.shape[0], "jsma")
    if workers is not None or scheduler is not None or shard_dir is not None:
        kwargs = dict(theta=theta, upsilon=upsilon, clip=clip, domain_policy=domain_policy,
                      logits=logits, mode=mode, pair_method=pair_method,
                      batch_size=batch_size, max_iter=max_iter, max_memory=max_memory,
                      compute_dtype=compute_dtype)
        out = _craft_distributed(net, x, t, kwargs, bar, workers, scheduler, shard_dir,
                                 shard_size)
    else:
        settings = _Settings(theta, lo, hi, budget, max_iter, domain_policy, logits, mode,
                             pair_method, max_memory, compute_dtype)
        out = _craft_local(net, x, t, settings, batch_size, bar)
    return JSMAResult(distortion=out["n_changed"] / max(m, 1), targets=t, n_features=m,
                      budget=budget, **out)


def _check_settings(net, x, targets, clip, lo, hi, logits, batch_size, max_iter,
                    max_memory, workers):
    """Check the arguments :func:`_validate` leaves; return them normalised.

    Returns ``batch_size, max_iter, max_memory, t`` with ``t`` the targets as an int64
    array of shape (N,)."""
    batch_size = check_int(batch_size, "batch_size", "jsma", minimum=1)
    if max_iter is not None:
        max_iter = check_int(max_iter, "max_iter", "jsma", minimum=0)
    max_memory = check_max_memory(max_memory, "jsma")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"jsma expected workers, the number of local Dask worker "
                         f"processes, as a positive int, got {workers!r}; pass None to "
                         "craft in this process.")
    if logits:
        _check_output_layer(net, logits, "jsma")
    n = x.shape[0]
    n_classes = check_classifier(net, x.shape[1:], "jsma")
    t = _as_targets(targets, n, n_classes, "jsma")
    if n and (x.min() < lo or x.max() > hi):
        raise ValueError(f"jsma expected x inside clip={clip}, got values from {x.min()} "
                         f"to {x.max()}; scale the inputs or widen clip.")
    return batch_size, max_iter, max_memory, t


def _default_max_iter(budget, theta, lo, hi, policy):
    """The iteration cap when the caller gives none.

    ``"paper"``: Algorithm 2's ``max_iter = floor(M * Upsilon / 2)`` (equal to
    ``floor(budget / 2)``), charged for every iteration, including a pick that changes
    nothing because the feature is already at its bound. The other policies stop on the
    distortion budget; their cap only lets every feature of the budget saturate."""
    if policy == "paper":
        return budget // 2
    return budget * int(math.ceil((hi - lo) / abs(theta))) + 1


#: Rows per shard when none is given: 32 source samples x 9 targets.
JSMA_SHARD_SIZE = 288

#: The fields of :class:`JSMAResult` that vary per row, as a shard returns them.
_SHARD_FIELDS = ("x_adv", "success", "n_changed", "iterations", "original", "predictions")


def _craft_distributed(net, x, t, kwargs, bar, workers, scheduler, shard_dir, shard_size):
    """Craft shard by shard (:func:`fwdderiv.distributed.run_sharded`; crafting a sample
    does not depend on the other samples of its batch, so the results equal one
    process's).

    Returns the fields of the :class:`JSMAResult` that depend on the crafting, by name;
    closes ``bar``."""
    settings = {k: (str(np.dtype(v)) if k == "compute_dtype" and v is not None else v)
                for k, v in kwargs.items()}
    settings["clip"] = list(kwargs["clip"])
    wins = [0]

    def count(shard, part):           # the bar counts rows and successes over all workers
        wins[0] += int(part["success"].sum())
        bar.update(shard.stop - shard.start, wins[0])

    try:
        out = run_sharded(_craft_shard, (x, t), shared=net, args=(kwargs,),
                          shard_size=JSMA_SHARD_SIZE if shard_size is None else shard_size,
                          workers=workers, scheduler=scheduler, shard_dir=shard_dir,
                          settings=settings, progress=False, on_shard=count)
    finally:
        bar.close()
    if out is None:
        out = dict(x_adv=x.copy(), success=np.zeros(0, bool),
                   **{f: np.zeros(0, np.int64) for f in
                      ("n_changed", "iterations", "original", "predictions")})
    return out


def _craft_shard(net, part, start, kwargs):
    """One shard's crafting (on a worker): the per-row fields of :func:`jsma`."""
    x, t = part
    res = jsma(net, x, t, **kwargs)
    return {f: getattr(res, f) for f in _SHARD_FIELDS}


def _craft_local(net, x, t, settings, batch_size, bar):
    """Craft in this process, ``batch_size`` samples at a time.

    Returns the fields of the :class:`JSMAResult` that depend on the crafting, by name;
    closes ``bar``."""
    n = x.shape[0]
    x_adv = x.copy()
    out = dict(success=np.zeros(n, bool), n_changed=np.zeros(n, np.int64),
               iterations=np.zeros(n, np.int64), original=np.zeros(n, np.int64),
               predictions=np.zeros(n, np.int64))
    n_success = [0]

    def notify(k, k_success):
        if k:
            n_success[0] += k_success
            bar.update(k, n_success[0])

    try:
        for b0 in range(0, n, batch_size):
            sl = slice(b0, min(n, b0 + batch_size))
            _craft_batch(net, x[sl], x_adv[sl], t[sl], {k: v[sl] for k, v in out.items()},
                         settings, notify)
    finally:
        bar.close()
    return dict(x_adv=x_adv, **out)


def _craft_batch(net, x, x_adv, t, out, s, notify):
    """Advance one batch in place: x_adv and the arrays in ``out`` are views.

    ``notify(k, k_success)`` is called whenever k samples finish, k_success of them on
    target."""
    b = _start_batch(net, x, x_adv, t, out, s, notify)
    active = np.arange(x.shape[0])
    while active.size:
        active = _retire_stopped(b, s, active)
        if active.size:
            active = _craft_step(b, s, active)
    _finish_batch(net, x, x_adv, t, out)


def _start_batch(net, x, x_adv, t, out, s, notify):
    """The per-sample state of a batch: Gamma as the domain policy starts it."""
    n = x.shape[0]
    xf = x_adv.reshape(n, -1)
    if s.policy == "paper":
        domain = np.ones(xf.shape, bool)
    else:
        domain = xf < s.hi if s.theta > 0 else xf > s.lo
    return _Batch(net=net, x_adv=x_adv, t=t, out=out, notify=notify, x0=x.reshape(n, -1),
                  xf=xf, domain=domain, changed=np.zeros(xf.shape, bool),
                  dt=x.dtype.type)


def _retire_stopped(b, s, active):
    """Predict and report the samples that may not take one more pair; return the rest."""
    out = b.out
    allow = (out["n_changed"][active] + 2 <= s.budget) & (out["iterations"][active] < s.max_iter)
    final, stepping = active[~allow], active[allow]
    if final.size:
        pred = b.net(b.x_adv[final]).reshape(final.size, -1).argmax(axis=1)
        out["predictions"][final] = pred
        b.notify(final.size, int(np.count_nonzero(pred == b.t[final])))
    return stepping


def _craft_step(b, s, stepping):
    """One crafting iteration of the rows ``stepping``; return the rows that moved a pair."""
    y, alpha, beta = _derivative_terms(b, s, stepping)
    rows, p, q = _search_pairs(b, s, stepping, y, alpha, beta)
    if rows.size:
        _move_pairs(b, s, rows, p, q)
    return rows


def _derivative_terms(b, s, stepping):
    """The output ``y`` and the terms ``alpha``, ``beta`` at the current samples."""
    xs = b.x_adv[stepping]
    xc = xs if s.compute_dtype is None else xs.astype(s.compute_dtype, copy=False)
    if s.mode == "vjp":
        return target_terms_vjp(b.net, xc, b.t[stepping], s.logits)
    y, J = forward_derivative(b.net, xc, logits=s.logits, mode=s.mode,
                              max_memory=s.max_memory)
    alpha, beta = target_terms(J, b.t[stepping], softmax=softmax_output(b.net, s.logits))
    return y, alpha, beta


def _search_pairs(b, s, stepping, y, alpha, beta):
    """Record the predictions, report the samples that finish, pick the pairs.

    Returns ``rows, p, q``: the rows still off target that have an admissible pair
    ``(p, q)``."""
    pred = y.reshape(stepping.size, -1).argmax(axis=1)
    b.out["predictions"][stepping] = pred
    hit = pred == b.t[stepping]
    rows, alpha, beta = stepping[~hit], alpha[~hit], beta[~hit]
    if not rows.size:
        b.notify(hit.size, hit.size)
        return rows, None, None
    p, q, _ = best_pairs(alpha, beta, b.domain[rows], increasing=s.theta > 0,
                         method=s.pair_method, max_memory=s.max_memory)
    found = p >= 0
    b.notify(int(hit.sum()) + int((~found).sum()), int(hit.sum()))
    return rows[found], p[found], q[found]


def _move_pairs(b, s, rows, p, q):
    """Move features ``p`` and ``q`` of every row by theta within the clip range."""
    dt = b.dt
    for idx in (p, q):
        old = b.xf[rows, idx]
        new = np.clip(old + dt(s.theta), dt(s.lo), dt(s.hi))
        b.xf[rows, idx] = new
        b.changed[rows, idx] = new != b.x0[rows, idx]
        if s.policy == "picked":
            b.domain[rows, idx] = False
        else:
            # Leaves at the bound theta pushes towards, or if the step was lost to
            # rounding (it would be picked forever otherwise).
            still = new < s.hi if s.theta > 0 else new > s.lo
            b.domain[rows, idx] = still & (new != old)
    b.out["iterations"][rows] += 1
    b.out["n_changed"][rows] = b.changed[rows].sum(axis=1)


def _finish_batch(net, x, x_adv, t, out):
    """Predict on the crafted and the input samples; set the success flags."""
    n = x.shape[0]
    if n:
        # Success is judged on the returned samples in their own dtype (the stopping
        # test may have used compute_dtype; they differ only on exact near-ties).
        out["predictions"][:] = net(x_adv).reshape(n, -1).argmax(axis=1)
        out["original"][:] = net(x).reshape(n, -1).argmax(axis=1)
    out["success"][:] = out["predictions"] == t


def expand_targets(x, sources, n_classes):
    """Repeat every sample once per class other than its source, for untargeted use.

    Parameters
    ----------
    x : ndarray of shape (N, *S)
    sources : ndarray of shape (N,)
        Class of each sample (true label or prediction).
    n_classes : int

    Returns
    -------
    x_rep : ndarray of shape (N * (n_classes - 1), *S)
        Sample-major: sample 0 with its targets in increasing order, then sample 1, ...
    source_rep, targets, index : ndarray of shape (N * (n_classes - 1),)
        Source class, target class and row of ``x`` for every row of ``x_rep``.
    """
    sources = _as_targets(sources, x.shape[0], n_classes, "expand_targets")
    all_t = np.arange(n_classes)
    index = np.repeat(np.arange(x.shape[0]), n_classes - 1)
    targets = np.concatenate([all_t[all_t != s] for s in sources]) if len(sources) \
        else np.zeros(0, np.int64)
    return x[index], sources[index], targets.astype(np.int64), index


def jsma_untargeted(net, x, sources, n_classes=None, **kwargs):
    """Untargeted JSMA: try every other class and keep the least distorted success.

    The choice is explicit and deterministic: among the successful targets of a sample,
    the one with the fewest changed features, ties to the smallest class index; a sample
    without any success keeps its input and ``success=False``.

    Parameters
    ----------
    net, x
        As in :func:`jsma`.
    sources : ndarray of shape (N,)
        Class of each sample; it is never used as a target.
    n_classes : int or None
        Number of classes (default: the network's output size).
    **kwargs
        Passed to :func:`jsma`.

    Returns
    -------
    JSMAResult
        One entry per input sample; ``targets`` holds the chosen class, -1 where no
        target was reached (then ``x_adv`` is the input and ``n_changed`` is 0).
    """
    if n_classes is None:
        n_classes = int(np.prod(net(x[:1]).shape[1:]))
    x_rep, _, targets, index = expand_targets(x, sources, n_classes)
    res = jsma(net, x_rep, targets, **kwargs)
    k = n_classes - 1
    cost = np.where(res.success, res.n_changed, np.iinfo(np.int64).max).reshape(-1, k)
    pick = cost.argmin(axis=1) + np.arange(x.shape[0]) * k
    ok = res.success[pick]
    x_adv = np.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), res.x_adv[pick], x)
    fields = dict(success=ok, iterations=np.where(ok, res.iterations[pick], 0),
                  n_changed=np.where(ok, res.n_changed[pick], 0),
                  targets=np.where(ok, res.targets[pick], -1),
                  original=res.original[pick],
                  predictions=np.where(ok, res.predictions[pick], res.original[pick]))
    return JSMAResult(x_adv=x_adv, distortion=fields["n_changed"] / res.n_features,
                      n_features=res.n_features, budget=res.budget, **fields)
