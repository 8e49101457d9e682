"""JSMA crafting sharded over a Dask cluster, with finished shards kept on disk.

The (sample, target) rows are cut into contiguous shards of ``shard_size`` rows
(:func:`fwdderiv.commands.reproduce` makes that a multiple of 9, so every source sample
stays in one shard with all its targets). Each shard is crafted by
:func:`fwdderiv.attacks.jsma` on one Dask worker. Crafting a sample does not depend on the
other samples of its batch, so the results are identical to a single-process run.

When ``shard_dir`` is given, the client writes every shard to
``shard_dir/shard-00012.npz`` as soon as it arrives (write to a temporary name, then
rename, so a file is complete or absent). A later call with the same ``shard_dir`` loads
the shards whose fingerprint (a SHA-256 of the shard's inputs, targets, the attack
settings and the network's parameters) matches and submits only the others: an
interrupted run resumes where it stopped. Shard files are NumPy ``.npz`` archives read
with ``allow_pickle=False``.

Needs ``dask[distributed]`` (``pip install 'fwdderiv[distributed]'``). The network is
sent to the workers through Dask's own serialisation.
"""
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger("fwdderiv.attacks.distributed")

__all__ = ["craft_sharded", "DEFAULT_SHARD_SIZE"]

#: Rows per shard when none is given: 32 source samples x 9 targets.
DEFAULT_SHARD_SIZE = 288

_FIELDS = ("x_adv", "success", "n_changed", "iterations", "original", "predictions")


def _require_distributed(who):
    try:
        import distributed
    except ImportError as err:
        raise ImportError(f"{who} needs dask.distributed for workers/scheduler; install it "
                          "with pip install 'fwdderiv[distributed]'.") from err
    return distributed


def _net_digest(net):
    h = hashlib.sha256()
    for p in net.params:
        for name in sorted(p):
            a = np.ascontiguousarray(p[name])
            h.update(name.encode())
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _fingerprint(net_digest, x, targets, settings):
    h = hashlib.sha256(net_digest.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(str(x.dtype).encode() + str(x.shape).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(targets, dtype=np.int64).tobytes())
    return h.hexdigest()


def _craft_shard(craft, net, x, targets, kwargs, threads):
    """Runs on a worker: craft one shard with ``threads`` Numba threads."""
    import numba
    if threads:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    res = craft(net, x, targets, **kwargs)
    return {f: getattr(res, f) for f in _FIELDS}


def _load_shard(path, fingerprint):
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                log.warning("%s was written for other inputs or settings; recomputing it",
                            path)
                return None
            return {f: z[f] for f in _FIELDS}
    except (OSError, KeyError, ValueError) as err:
        log.warning("cannot read %s (%s); recomputing it", path, err)
        return None


def _save_shard(path, fingerprint, parts):
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, fingerprint=np.array(fingerprint), **parts)
    os.replace(tmp, path)


def craft_sharded(net, x, targets, kwargs, *, craft, workers=None, scheduler=None,
                  shard_dir=None, shard_size=None, bar=None, settings=None):
    """Craft ``craft(net, x, targets, **kwargs)`` shard by shard on a Dask cluster.

    Parameters
    ----------
    craft : callable
        The crafting function (:func:`~fwdderiv.attacks.jsma`), a module-level function
        so the workers receive it by reference.
    net, x, targets
        As in :func:`~fwdderiv.attacks.jsma` (``targets`` already an int64 array).
    kwargs : dict
        Keyword arguments of ``jsma`` for every shard (no ``progress``).
    workers : int or None
        Start a local ``dask.distributed`` cluster of this many worker processes, one
        thread each (ignored when ``scheduler`` is given). With neither ``workers`` nor
        ``scheduler`` the shards run in turn in this process (still written and
        resumed through ``shard_dir``).
    scheduler : str or distributed.Client or None
        Address of a running scheduler (``"tcp://host:8786"``), or a ``Client``.
    shard_dir : path or None
        Where finished shards are written and found again on resume.
    shard_size : int or None
        Rows per shard (default :data:`DEFAULT_SHARD_SIZE`).
    bar : progress object or None
        ``update(k, n_success)`` (k rows more are done, n_success successes so far) is
        called for resumed shards first, then for every shard as it finishes on any
        worker.
    settings : dict or None
        JSON-able description of the attack settings, part of each shard's fingerprint.

    Returns
    -------
    dict of ndarray
        The fields of :class:`~fwdderiv.attacks.JSMAResult` that vary per row.
    """
    distributed = None
    if workers is not None or scheduler is not None:
        distributed = _require_distributed("jsma")
    n = x.shape[0]
    size = DEFAULT_SHARD_SIZE if shard_size is None else int(shard_size)
    if size < 1:
        raise ValueError(f"jsma expected a positive shard_size, got {shard_size}.")
    bounds = [(a, min(n, a + size)) for a in range(0, n, size)]
    digest = _net_digest(net)
    prints = [_fingerprint(digest, x[a:b], targets[a:b], settings or {}) for a, b in bounds]
    folder = None if shard_dir is None else Path(shard_dir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    parts = [None] * len(bounds)
    wins = [0]

    def report(i):
        wins[0] += int(parts[i]["success"].sum())
        if bar is not None:
            bar.update(bounds[i][1] - bounds[i][0], wins[0])

    if folder is not None:
        _resume(folder, prints, parts, report)
    todo = [i for i, p in enumerate(parts) if p is None]
    log.info("%d of %d shards resumed from %s; submitting %d", len(bounds) - len(todo),
             len(bounds), folder, len(todo))
    log.debug("submitting shards %s", todo)
    def finish(i, result):
        parts[i] = result
        if folder is not None:
            _save_shard(folder / f"shard-{i:05d}.npz", prints[i], result)
        report(i)

    if workers is None and scheduler is None:
        for i in todo:          # no cluster: the shards in turn, in this process
            finish(i, _craft_shard(craft, net, x[bounds[i][0]:bounds[i][1]],
                                   targets[bounds[i][0]:bounds[i][1]], kwargs, 0))
    elif todo:
        _run_on_cluster(distributed, craft, net, x, targets, kwargs, bounds, todo, workers,
                        scheduler, finish)
    if not parts:
        return None
    return {f: np.concatenate([p[f] for p in parts]) for f in _FIELDS}


def _resume(folder, prints, parts, report):
    """Fill ``parts`` with the shards already in ``folder`` whose fingerprints match, and
    ``report`` each."""
    for i, fp in enumerate(prints):
        path = folder / f"shard-{i:05d}.npz"
        if path.exists():
            parts[i] = _load_shard(path, fp)
            if parts[i] is not None:
                report(i)


def _run_on_cluster(distributed, craft, net, x, targets, kwargs, bounds, todo, workers,
                    scheduler, finish):
    own = None
    if isinstance(scheduler, distributed.Client):
        client = scheduler
    elif scheduler is not None:
        client = own = distributed.Client(scheduler)
    else:
        cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = own = distributed.Client(cluster)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        # Workers of a cluster we started share this machine: split its cores.
        threads = max(1, (os.cpu_count() or 1) // n_workers) if workers is not None \
            and scheduler is None else 0
        # hash=False: a key of its own for each run. A content-hashed key is the same for
        # a rerun of the same network, and the interrupted run's release of it could
        # remove the data under the rerun's tasks ("lost dependencies").
        net_f = client.scatter(net, broadcast=True, hash=False)
        futures = {client.submit(_craft_shard, craft, net_f, x[bounds[i][0]:bounds[i][1]],
                                 targets[bounds[i][0]:bounds[i][1]], kwargs, threads,
                                 pure=False): i for i in todo}
        try:
            for fut in distributed.as_completed(futures):
                finish(futures[fut], fut.result())
        except BaseException:
            client.cancel(list(futures) + [net_f])   # interrupted: stop the shards left
            raise
    finally:
        if own is not None:
            cluster = getattr(own, "cluster", None)
            own.close()
            if cluster is not None:
                cluster.close()
