"""The Dask cluster a sharded run uses: a local one it starts, or an existing one.

``workers=N`` starts ``distributed.LocalCluster(n_workers=N, threads_per_worker=1,
processes=True)`` for the run and closes it after; ``scheduler=ADDRESS`` connects to a
running scheduler (``dask scheduler`` and ``dask worker ADDRESS`` on the machines), and a
``distributed.Client`` is used as it is. Needs ``dask[distributed]``
(``pip install 'fwdderiv[distributed]'``).
"""
import contextlib
import numbers
import os

#: Seconds to wait for an existing scheduler before giving up.
CONNECT_TIMEOUT = 10


def require_distributed(who):
    """The ``distributed`` module, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError(f"{who} needs dask.distributed for workers= or scheduler=; "
                          "install it with pip install 'fwdderiv[distributed]'") from err
    return distributed


def check_cluster_args(workers, scheduler, who):
    """Refuse a ``workers`` that is not a positive int, and both arguments at once."""
    if workers is not None and (not isinstance(workers, numbers.Integral)
                                or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"{who} expected workers, the number of local Dask worker "
                         f"processes, as a positive int, got {workers!r}; pass None to run "
                         "in this process")
    if workers is not None and scheduler is not None:
        raise ValueError(f"{who} expected workers (a local cluster) or scheduler (an "
                         f"existing one), got both (workers={workers!r}, scheduler="
                         f"{scheduler!r}); drop one")
    if scheduler is not None and not isinstance(scheduler, (str, os.PathLike)) and \
            type(scheduler).__name__ != "Client":
        raise TypeError(f"{who} expected scheduler as an address such as "
                        f"'tcp://host:8786' or a distributed.Client, got "
                        f"{type(scheduler).__name__}")


@contextlib.contextmanager
def connect(workers=None, scheduler=None, who="run_sharded", timeout=None):
    """A ``distributed.Client`` for the block, or None when both arguments are None (run
    in this process).

    Parameters
    ----------
    workers : int, optional
        Start a local cluster of this many worker processes, one thread each; it is
        closed when the block ends.
    scheduler : str or distributed.Client, optional
        The address of a running scheduler (``"tcp://10.0.0.5:8786"``), or a Client,
        which is used and left open.
    who : str
        The caller, named in errors.
    timeout : float, optional
        Seconds to wait for the scheduler (default :data:`CONNECT_TIMEOUT`).

    Yields
    ------
    distributed.Client or None

    Examples
    --------
    >>> with connect() as client:
    ...     print(client)
    None
    """
    check_cluster_args(workers, scheduler, who)
    if workers is None and scheduler is None:
        yield None
        return
    distributed = require_distributed(who)
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    cluster = None
    if scheduler is not None:
        client = _client_at(distributed, str(scheduler), who,
                            CONNECT_TIMEOUT if timeout is None else timeout)
    else:
        # ":0": the scheduler's web server on a free port (8787 may be taken by another
        # cluster on this machine, which makes Dask warn)
        cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                           processes=True, dashboard_address=":0")
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _client_at(distributed, address, who, timeout):
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as err:
        raise ConnectionError(
            f"{who} could not reach a Dask scheduler at {address!r} within {timeout:g} s "
            f"({' '.join(str(err).split()) or type(err).__name__}); start one with "
            "'dask scheduler' and its workers with 'dask worker ADDRESS', check the "
            "address, or pass workers=N for a local cluster") from None


def worker_count(client):
    """Workers connected to ``client``'s scheduler now (at least 1)."""
    return max(1, len(client.scheduler_info().get("workers", {})))


def local_threads(workers):
    """Threads each worker of a local cluster of ``workers`` processes may use: this
    machine's cores split between them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // int(workers))


@contextlib.contextmanager
def threads_limited(threads):
    """Run the block with ``threads`` Numba and BLAS threads (no change when None)."""
    if not threads:
        yield
        return
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(limits=int(threads), user_api="blas"):
                yield
    finally:
        numba.set_num_threads(before)


def call_task(task, shared, part, start, args, threads):
    """Run ``task(shared, part, start, *args)`` with ``threads`` Numba/BLAS threads: what
    each worker (or this process, without a cluster) runs for one shard."""
    with threads_limited(threads):
        return task(shared, part, start, *args)
