"""Accuracy under FGSM and PGD over a data set, shard by shard (``fwdderiv attack``).

Each shard attacks its images in batches of ``batch_size`` and returns, per image, whether
the network still classifies it correctly at each eps; the accuracies are the means over
all images. PGD's random start of the batch beginning at image ``i`` is seeded with
``seed + i`` (``i`` counted over the whole data set), so with shards that are whole
batches every batch sees the same images and the same random start as in one process.
"""
import numpy as np

from ..validation import check_int
from .sharded import run_sharded

__all__ = ["robust_accuracy", "correct_after_attack", "ATTACKS"]

#: Attacks by name: the fast gradient sign method and projected gradient descent (L-inf).
ATTACKS = ("fgsm", "pgd")


def correct_after_attack(net, x, y, attack, eps, nb_iter, step_fraction, clip, seed):
    """Whether ``net`` still classifies each image of ``x`` as ``y`` after an untargeted
    L-inf ``attack`` ("fgsm" or "pgd": ``nb_iter`` steps of ``step_fraction * eps`` from a
    random start seeded with ``seed``) of radius ``eps``, images clipped to ``clip``.

    Returns
    -------
    ndarray of shape (N,), bool
    """
    from ..attacks import fast_gradient_method, projected_gradient_descent
    lo, hi = clip
    if attack == "fgsm":
        adv = fast_gradient_method(net, x, eps, np.inf, y=y, clip_min=lo, clip_max=hi)
    else:
        adv = projected_gradient_descent(net, x, eps, step_fraction * eps, nb_iter, np.inf,
                                         y=y, clip_min=lo, clip_max=hi, seed=seed)
    return net(adv).argmax(axis=1) == y


def robust_accuracy(net, x, y, eps, *, attacks=ATTACKS, nb_iter=10, step_fraction=None,
                    batch_size=128, clip=(0.0, 1.0), seed=0, workers=None, scheduler=None,
                    shard_size=None, shard_dir=None, progress=None):
    """Accuracy of ``net`` on ``(x, y)`` under each attack at each eps, shard by shard on
    a Dask cluster (or in this process).

    Parameters
    ----------
    net : Sequential or Graph, a classifier
    x : ndarray of shape (N, *S), inside ``clip``
    y : ndarray of shape (N,), int
    eps : sequence of float
        L-inf radii.
    attacks : sequence of {"fgsm", "pgd"}
    nb_iter : int
        PGD steps.
    step_fraction : float, optional
        PGD step as a fraction of eps (default ``2.5 / nb_iter``, Madry et al.'s rule).
    batch_size : int
        Images attacked together.
    clip : (float, float)
    seed : int
        Seeds PGD's random starts (``seed + i`` for the batch starting at image ``i``).
    workers, scheduler, shard_dir, progress
        As in :func:`~fwdderiv.distributed.run_sharded`.
    shard_size : int, optional
        Images per shard, a multiple of ``batch_size`` (default ``batch_size``).

    Returns
    -------
    dict
        ``{attack: ndarray of shape (len(eps),)}``, the accuracies; equal to one
        process's, batch for batch.
    """
    batch_size = check_int(batch_size, "batch_size", "robust_accuracy", minimum=1)
    nb_iter = check_int(nb_iter, "nb_iter", "robust_accuracy", minimum=1)
    size = batch_size if shard_size is None else \
        check_int(shard_size, "shard_size", "robust_accuracy", minimum=1)
    if size % batch_size:
        raise ValueError(f"robust_accuracy expected shard_size as a multiple of batch_size "
                         f"({batch_size}), got {size}; e.g. shard_size="
                         f"{max(1, round(size / batch_size)) * batch_size}, so that every "
                         "batch is attacked as in one process")
    bad = [a for a in attacks if a not in ATTACKS]
    if bad or not attacks:
        raise ValueError(f"robust_accuracy expected attacks among {ATTACKS}, got "
                         f"{list(attacks)!r}")
    fraction = 2.5 / nb_iter if step_fraction is None else float(step_fraction)
    eps = [float(e) for e in eps]
    args = (eps, tuple(attacks), nb_iter, fraction, batch_size, tuple(clip), int(seed))
    res = run_sharded(_attack_shard, (x, np.asarray(y)), shared=net, args=args,
                      shard_size=size, workers=workers, scheduler=scheduler,
                      shard_dir=shard_dir, settings={"job": "robust_accuracy"},
                      progress=progress, desc="attack")
    if res is None:
        return {a: np.full(len(eps), np.nan) for a in attacks}
    return {a: res[a].sum(axis=0) / len(x) for a in attacks}


def _attack_shard(net, part, start, eps, attacks, nb_iter, fraction, batch, clip, seed):
    """Per attack, ``(n, len(eps))`` bool: each image of the shard still correct."""
    x, y = part
    out = {a: np.zeros((len(x), len(eps)), bool) for a in attacks}
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        for a in attacks:
            for j, e in enumerate(eps):
                out[a][i:i + batch, j] = correct_after_attack(
                    net, xb, yb, a, e, nb_iter, fraction, clip, seed + start + i)
    return out
