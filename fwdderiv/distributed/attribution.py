"""Attributions of a data set, shard by shard (the methods of :mod:`fwdderiv.attribution`)."""
import numpy as np

from ..validation import check_int
from .sharded import run_sharded

__all__ = ["attribute", "ATTRIBUTION_SHARD_SIZE"]

#: Examples per shard by default: a shard of integrated gradients of every MNIST class
#: (50 points) takes a few seconds, long beside a task's scheduling.
ATTRIBUTION_SHARD_SIZE = 32

#: Keyword arguments that may hold one value per example, sliced with the shard.
PER_EXAMPLE = ("target", "baselines")


def attribute(method, inputs, *, workers=None, scheduler=None, shard_size=None,
              shard_dir=None, progress=None, **kwargs):
    """``method.attribute(inputs, **kwargs)`` shard by shard on a Dask cluster (or in
    this process).

    Parameters
    ----------
    method : Attribution
        An attribution object of :mod:`fwdderiv.attribution` (``IntegratedGradients(net)``,
        ``Occlusion(net)``, ``NoiseTunnel(Saliency(net))``, ...); it holds the network and
        is sent to each worker once.
    inputs : ndarray of shape (N, *S)
    workers, scheduler : int, str or distributed.Client, optional
        A local cluster of ``workers`` processes, or an existing one; with neither, the
        shards run in turn in this process.
    shard_size : int, optional
        Examples per shard (default :data:`ATTRIBUTION_SHARD_SIZE`).
    shard_dir : path, optional
        Keep finished shards there and reuse them on a rerun (see
        :func:`~fwdderiv.distributed.run_sharded`).
    progress : None, bool or callable
        One bar over all workers.
    **kwargs
        The method's own arguments. ``target`` given per example (N indices) and
        ``baselines`` of shape (N, *S) go to each shard sliced with its examples; a
        ``seed`` (NoiseTunnel) seeds every shard alike.

    Returns
    -------
    attributions : ndarray of shape (N, *S), or (N, K, *S) for ``target="all"``
    delta : ndarray, with ``return_convergence_delta=True`` (concatenated shard by shard)

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> from fwdderiv.attribution import IntegratedGradients
    >>> net = fd.Sequential([fd.Flatten(), fd.Linear(4, 3, seed=0), fd.Softmax()])
    >>> x = np.random.default_rng(0).random((6, 1, 2, 2))
    >>> A = attribute(IntegratedGradients(net), x, target=1, shard_size=4, progress=False)
    >>> A.shape
    (6, 1, 2, 2)
    """
    if not hasattr(method, "attribute") or not hasattr(method, "forward_func"):
        raise TypeError(f"distributed.attribute expected an attribution object such as "
                        f"IntegratedGradients(net), got {type(method).__name__}")
    x = np.asarray(inputs)
    size = ATTRIBUTION_SHARD_SIZE if shard_size is None else \
        check_int(shard_size, "shard_size", "distributed.attribute", minimum=1)
    sliced = [k for k in PER_EXAMPLE if _per_example(k, kwargs.get(k), x)]
    items = (x,) + tuple(np.asarray(kwargs.pop(k)) for k in sliced)
    settings = {"job": "attribute", "method": type(method).__name__}
    res = run_sharded(_attribute_shard, items, shared=method, args=(tuple(sliced), kwargs),
                      shard_size=size, workers=workers, scheduler=scheduler,
                      shard_dir=shard_dir, settings=settings, progress=progress,
                      desc="attribute")
    if res is None:
        return method.attribute(x, **kwargs)       # no examples: the method's own empty
    if kwargs.get("return_convergence_delta"):
        return res["attributions"], res["delta"]
    return res["attributions"]


def _per_example(key, value, x):
    """Whether ``value`` holds one entry per example of ``x`` (sliced with the shard):
    N targets, or baselines of shape (N, *S)."""
    if value is None or isinstance(value, (str, int, float, np.integer, np.floating)):
        return False
    a = np.asarray(value)
    return a.ndim == (1 if key == "target" else x.ndim) and a.shape[0] == len(x)


def _attribute_shard(method, part, start, sliced, kwargs):
    x, per = part[0], dict(zip(sliced, part[1:]))
    out = method.attribute(x, **per, **kwargs)
    if kwargs.get("return_convergence_delta"):
        return {"attributions": out[0], "delta": out[1]}
    return {"attributions": out}
