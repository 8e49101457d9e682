"""A map over contiguous shards of the inputs, on a Dask cluster or in this process.

:func:`run_sharded` cuts the items (rows of arrays, or a list of settings) into shards of
``shard_size``, runs ``task(shared, part, start, *args)`` for each shard on a Dask worker
(or in turn in this process), and puts the results together in order. ``shared``, the
network, goes to every worker once per run (``client.scatter(shared, broadcast=True)``);
each task receives only its shard. Finished shards are written to ``shard_dir`` as they
arrive and reused by a later run with the same fingerprint (:mod:`.store`). A shard's
result does not depend on the worker that computed it, on the number of workers or on
the order in which shards finish: it is what the same call gives in one process.
"""
import logging
from typing import NamedTuple

import numpy as np

from ..progress import make_bar, progress_enabled
from ..validation import check_int
from .cluster import call_task, check_cluster_args, connect, local_threads, worker_count
from .store import MISSING, ShardStore, encode, settings_digest, shard_fingerprint

log = logging.getLogger("fwdderiv.distributed")

__all__ = ["DEFAULT_SHARD_SIZE", "Shard", "run_sharded", "shard_bounds"]

#: Items per shard when neither the caller nor the job gives a size.
DEFAULT_SHARD_SIZE = 256

#: Shards submitted ahead of the ones running, per worker: enough to keep every worker
#: busy while results travel back, few enough that the inputs of pending shards stay small.
IN_FLIGHT_PER_WORKER = 2


class Shard(NamedTuple):
    """One shard of a run: its position, its items ``[start, stop)``, and whether its
    result was read back from ``shard_dir`` instead of computed."""

    index: int
    start: int
    stop: int
    resumed: bool = False


def shard_bounds(n, shard_size):
    """``[(start, stop), ...]``: ``range(n)`` cut into contiguous shards of ``shard_size``
    items (the last one shorter)."""
    return [(a, min(n, a + shard_size)) for a in range(0, n, shard_size)]


class _Items:
    """The items of a run, sliced into shards: an ndarray (rows), a tuple of arrays with
    the same number of rows (sliced together), or a list (one item per setting)."""

    def __init__(self, items):
        if isinstance(items, tuple):
            lengths = [len(a) if hasattr(a, "shape") else None for a in items]
            if not items or None in lengths or len(set(lengths)) != 1:
                raise ValueError(
                    f"run_sharded expected items as a tuple of arrays with the same number "
                    f"of rows, got lengths {lengths}; pass arrays of equal length (e.g. "
                    "(x, labels))")
            self.n = lengths[0]
        elif hasattr(items, "shape") and hasattr(items, "__getitem__"):
            if len(items.shape) == 0:
                raise ValueError("run_sharded expected items with a leading axis of rows, "
                                 "got a 0-d array; pass an array of shape (N, ...)")
            self.n = items.shape[0]
        elif isinstance(items, list):
            self.n = len(items)
        else:
            raise TypeError(f"run_sharded expected items as an ndarray of rows, a tuple of "
                            f"arrays with the same number of rows, or a list of settings, "
                            f"got {type(items).__name__}")
        self.items = items

    def part(self, a, b):
        if isinstance(self.items, tuple):
            return tuple(np.asarray(v[a:b]) for v in self.items)
        if isinstance(self.items, list):
            return self.items[a:b]
        return np.asarray(self.items[a:b])


def run_sharded(task, items, *, shared=None, args=(), shard_size=None, workers=None,
                scheduler=None, shard_dir=None, settings=None, progress=None,
                desc="shards", on_shard=None, keep=None, combine=True):
    """Run ``task`` on contiguous shards of ``items`` and put the results together.

    Parameters
    ----------
    task : callable
        ``task(shared, part, start, *args)``, a module-level function (the workers
        import it by name) returning the shard's result: an ndarray (rows first), a
        dict of ndarrays, or None. ``part`` is the shard's slice of ``items``, ``start``
        the index of its first item.
    items : ndarray, tuple of ndarrays, or list
        Rows of an array; arrays with as many rows, sliced together (``(x, labels)``);
        or a list of settings (e.g. lambda values, one task each with ``shard_size=1``).
    shared : object, optional
        What every shard needs, typically the network: sent to each worker once.
    args : tuple
        Further arguments of ``task``, the same for every shard.
    shard_size : int, optional
        Items per shard (default :data:`DEFAULT_SHARD_SIZE`). Floating-point results may
        differ in the last bits between shard sizes (NumPy rounds a batch of 50 unlike a
        batch of 200); they never depend on ``workers``.
    workers : int, optional
        A local ``dask.distributed`` cluster of this many processes, for the run.
    scheduler : str or distributed.Client, optional
        An existing cluster. With neither, the shards run in turn in this process.
    shard_dir : path, optional
        Write each finished shard to ``shard_dir/shard-00012.npz`` at once; reuse the
        ones whose fingerprint matches (resume an interrupted run).
    settings : dict, optional
        JSON-able settings, part of each shard's fingerprint (SHA-256, with ``task``,
        ``shared``, ``args`` and the shard's items).
    progress : None, bool or callable
        One bar over all workers, counting items (None: only on a terminal); a callable
        gets ``(done, total)`` after every shard. ``desc`` labels the bar.
    on_shard : callable, optional
        ``on_shard(shard, kept_result)`` here for each :class:`Shard` once it is
        finished and written, resumed shards first.
    keep : callable, optional
        ``keep(shard, result)`` here as each computed shard arrives, before it is
        written: what is kept and written (default: all of it).
    combine : bool
        True: the kept results concatenated along their first axis (arrays, or dicts
        key by key; a 0-d value counts as one row), None if nothing is kept. False: the
        list of kept results, shard by shard.

    Returns
    -------
    ndarray, dict of ndarray, list or None

    Examples
    --------
    >>> def squares(shared, part, start):
    ...     return part ** 2
    >>> run_sharded(squares, np.arange(5), shard_size=2, progress=False)
    array([ 0,  1,  4,  9, 16])
    """
    rows = _Items(items)
    size = DEFAULT_SHARD_SIZE if shard_size is None else \
        check_int(shard_size, "shard_size", "run_sharded", minimum=1)
    check_cluster_args(workers, scheduler, "run_sharded")
    bounds = shard_bounds(rows.n, size)
    store, prints = _store(shard_dir, task, shared, args, settings, rows, bounds)
    run = _Run(bounds, prints, store, on_shard, keep, _bar(progress, rows.n, desc))
    try:
        todo = run.resume()
        log.info("%d of %d shards resumed from %s; submitting %d", len(bounds) - len(todo),
                 len(bounds), shard_dir, len(todo))
        log.debug("submitting shards %s", todo)
        if todo:                        # no cluster is started when every shard is done
            _compute(task, shared, args, rows, run, todo, workers, scheduler)
    finally:
        run.bar.close()
    return run.results(combine)


def _compute(task, shared, args, rows, run, todo, workers, scheduler):
    """The shards ``todo`` of ``run``: on the cluster of ``workers``/``scheduler``, or in
    turn in this process when there is none."""
    with connect(workers, scheduler, "run_sharded") as client:
        if client is None:
            for i in todo:
                a, b = run.bounds[i]
                run.finish(i, call_task(task, shared, rows.part(a, b), a, args, None))
        else:
            _on_cluster(client, task, shared, args, rows, run, todo,
                        local_threads(workers) if workers is not None else None)


def _store(shard_dir, task, shared, args, settings, rows, bounds):
    """The shard files (None without ``shard_dir``) and each shard's fingerprint."""
    if shard_dir is None:
        return None, [None] * len(bounds)
    store = ShardStore(shard_dir)
    common = settings_digest(task, shared, args, settings or {})
    return store, [shard_fingerprint(common, rows.part(a, b)) for a, b in bounds]


class _Run:
    """The bookkeeping of one run: kept results, shard files, progress."""

    def __init__(self, bounds, prints, store, on_shard, keep, bar):
        self.bounds, self.prints, self.store = bounds, prints, store
        self.on_shard, self.keep, self.bar = on_shard, keep, bar
        self.kept = [MISSING] * len(bounds)

    def resume(self):
        """Load the matching shards of the store; return the indices left to compute."""
        if self.store is not None:
            for i, fp in enumerate(self.prints):
                result = self.store.load(i, fp)
                if result is not MISSING:
                    self._done(i, result, resumed=True)
        return [i for i, r in enumerate(self.kept) if r is MISSING]

    def finish(self, i, result):
        """A computed shard: keep what is kept, write it, report it."""
        kept = result if self.keep is None else self.keep(Shard(i, *self.bounds[i]), result)
        if self.store is not None:
            self.store.save(i, self.prints[i], kept)
        else:
            encode(kept, i)            # the same results with or without shard files
        self._done(i, kept, resumed=False)

    def _done(self, i, result, resumed):
        self.kept[i] = result
        self._count(i)
        if self.on_shard is not None:
            self.on_shard(Shard(i, *self.bounds[i], resumed=resumed), result)

    def _count(self, i):
        a, b = self.bounds[i]
        done = sum(r is not MISSING for r in self.kept)
        self.bar.set_postfix_str(f"{done}/{len(self.kept)} shards", refresh=False)
        self.bar.update(b - a)

    def results(self, combine):
        if not combine:
            return list(self.kept)
        return combine_results(self.kept)


def combine_results(parts):
    """Concatenate per-shard results along their first axis (see :func:`run_sharded`)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if all(isinstance(p, dict) for p in parts):
        keys = list(parts[0])
        if any(list(p) != keys for p in parts):
            raise ValueError(f"run_sharded: the shards returned dicts with different keys "
                             f"({keys} and others); return the same keys for every shard")
        return {k: np.concatenate([np.atleast_1d(p[k]) for p in parts]) for k in keys}
    if any(isinstance(p, dict) for p in parts):
        raise TypeError("run_sharded: some shards returned a dict and others an array; "
                        "return the same kind for every shard")
    return np.concatenate([np.atleast_1d(p) for p in parts])


class _Progress:
    """A callable ``fn(done, total)`` seen as a bar."""

    def __init__(self, fn, total):
        self.fn, self.total, self.done = fn, total, 0

    def update(self, k):
        self.done += k
        self.fn(self.done, self.total)

    def set_postfix_str(self, text, refresh=False):
        pass

    def close(self):
        pass


def _bar(progress, total, desc):
    if callable(progress) and not isinstance(progress, bool):
        return _Progress(progress, total)
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"run_sharded expected progress=None, True, False or a callable "
                        f"fn(done, total), got {type(progress).__name__}")
    return make_bar(total, desc, progress_enabled(progress))


def _on_cluster(client, task, shared, args, rows, run, todo, threads):
    """Submit the shards ``todo`` (a few per worker at a time) and finish each as it
    arrives; on any error or interruption, cancel what is left and re-raise."""
    from distributed import as_completed
    # hash=False: a key of its own for each run. A content-hashed key is the same for a
    # rerun of the same network, and the interrupted run's release of it could remove
    # the data under the rerun's tasks ("lost dependencies").
    shared_f = None if shared is None else client.scatter(shared, broadcast=True,
                                                            hash=False)
    pending, queue = {}, list(todo)
    window = IN_FLIGHT_PER_WORKER * worker_count(client) + 1

    def submit():
        i = queue.pop(0)
        a, b = run.bounds[i]
        fut = client.submit(call_task, task, shared_f, rows.part(a, b), a, args, threads,
                            pure=False)
        pending[fut] = i
        return fut

    done = as_completed([submit() for _ in range(min(window, len(queue)))])
    try:
        for fut in done:
            i = pending.pop(fut)
            result = fut.result()
            fut.release()
            if queue:
                done.add(submit())
            run.finish(i, result)
    except BaseException:
        client.cancel(list(pending) + ([shared_f] if shared_f is not None else []))
        raise
