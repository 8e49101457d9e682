"""BLAS threads while Numba kernels run (see :data:`fwdderiv.config.KERNEL_BLAS_THREADS`).

A network of convolutions and pools alternates many short Numba kernels with small BLAS
products. Multi-threaded OpenBLAS keeps its workers spinning for a while after every
product, on the cores the next Numba kernel needs; with BLAS single-threaded for the
duration of the call, the two never compete. Pure dense networks are left alone: their
time is in large products that do use the threads.

Inside such a call BLAS runs on one thread, so :func:`matmul` splits a large product
itself: the rows (or the stacked matrices) are divided among the cores and each part is
one single-threaded BLAS call on a thread of a small pool. No thread is left spinning
after the product. :func:`ranges`, :func:`run` and :func:`in_parts` split other work
(Winograd's blocks of images, a reverse Jacobian's passes) the same way, and
:func:`alone` keeps a part that already has its own core from splitting again.

The measurements behind these choices and constants are in ``docs/pages/performance.md``
(the "Threads" entry and "The engine's thresholds, and where their numbers come from").
"""
import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import config

_controller = None       # threadpoolctl's BLAS controller, False if unavailable

#: Multiply-adds below which :func:`matmul` does not split a product (a thread hand-off
#: costs about 20 microseconds).
SPLIT_MIN_WORK = 1 << 19

#: An operand not in row order is copied first when its size is at most this share of
#: the product's multiply-adds.
CONTIGUOUS_COPY_SHARE = 16

_state = threading.local()          # .split: parts for products in this thread's scope
_pool, _pool_workers = None, 0


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


def _reset_pool():
    global _pool, _pool_workers
    _pool, _pool_workers = None, 0


if hasattr(os, "register_at_fork"):             # a forked child has no pool threads
    os.register_at_fork(after_in_child=_reset_pool)


def _executor(parts):
    global _pool, _pool_workers
    if _pool is None or _pool_workers < parts - 1:
        _pool = ThreadPoolExecutor(max_workers=parts - 1, thread_name_prefix="fwdderiv")
        _pool_workers = parts - 1
    return _pool


def _contiguous(m, work):
    if m.flags.c_contiguous or m.size * CONTIGUOUS_COPY_SHARE > work:
        return m
    return np.ascontiguousarray(m)


def matmul(a, b):
    """``np.matmul(a, b)``, split across the cores when BLAS is held to one thread, and
    with a small operand made contiguous first.

    Outside a :func:`blas_limited` scope, or for a small product, this is ``np.matmul``.
    Inside one, the leading axis of the result (the stacked matrices, or the rows of a
    2-D product) is cut into one part per core and the parts are multiplied at once.
    The numbers are those of ``np.matmul``: each entry is the same BLAS dot product.
    """
    if a.ndim < 2 or b.ndim < 2:
        return np.matmul(a, b)
    out_shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    work = int(np.prod(out_shape, dtype=np.int64)) * a.shape[-1]
    # a transposed operand (x @ W.T) is slow in numpy's tall products: copy it to row
    # order first when it is small beside the product (CONTIGUOUS_COPY_SHARE)
    a = _contiguous(a, work)
    b = _contiguous(b, work)
    if _parts(out_shape[0], work, 2) < 2:
        return np.matmul(a, b)
    out = np.empty(out_shape, dtype=np.result_type(a, b))
    if len(out_shape) == 2:              # rows of a
        def piece(i, j):
            np.matmul(a[i:j], b, out=out[i:j])
    else:                                # stacked matrices; an operand may be shared
        sa, sb = a.ndim == len(out_shape) and a.shape[0] > 1, \
            b.ndim == len(out_shape) and b.shape[0] > 1

        def piece(i, j):
            np.matmul(a[i:j] if sa else a, b[i:j] if sb else b, out=out[i:j])
    in_parts(out_shape[0], piece, work, 2)
    return out


def parts():
    """How many parts :func:`in_parts` may cut work into here: the cores inside a
    :func:`blas_limited` scope, else 1."""
    return getattr(_state, "split", 1)


def _parts(lead, work, min_rows):
    n = parts()
    return 1 if n < 2 or work < SPLIT_MIN_WORK or lead < min_rows * n else n


def ranges(lead, work, min_rows=1):
    """``[0, lead)`` cut into one range per core, inside a :func:`blas_limited` scope
    where ``work`` (multiply-adds) is worth the hand-off and each range gets ``min_rows``
    or more; else the one range. Distinct ranges have distinct starts."""
    parts = _parts(lead, work, min_rows)
    cuts = [lead * k // parts for k in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def run(parts, piece):
    """``piece(i, j)`` for every range of ``parts`` at once, the first on this thread and
    the others on the pool's. The pieces write disjoint parts of their result."""
    if len(parts) > 1:
        pool = _executor(len(parts))
        futures = [pool.submit(piece, i, j) for i, j in parts[1:]]
    piece(*parts[0])
    if len(parts) > 1:
        for f in futures:
            f.result()


@contextlib.contextmanager
def alone():
    """Run the block with this thread's kernels and products on one core: Numba's
    parallel loops on one thread (a thread-local setting) and :func:`matmul` unsplit.
    For work that :func:`run` already spreads over the cores."""
    import numba
    threads, split = numba.get_num_threads(), getattr(_state, "split", 1)
    numba.set_num_threads(1)
    _state.split = 1
    try:
        yield
    finally:
        numba.set_num_threads(threads)
        _state.split = split


def kernels_run_concurrently():
    """True if Numba's threading layer lets two threads launch parallel kernels at once
    (OpenMP and TBB do; the workqueue layer does not). Numba chooses its layer at the
    first parallel kernel; if none has run yet, a tiny one runs first, so that the
    answer is the same on the first call as on the later ones."""
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:
        from .kernels import choose_threading_layer
        choose_threading_layer()
        layer = numba.threading_layer()
    return layer in ("omp", "tbb")


def in_parts(lead, piece, work, min_rows=1):
    """``piece(i, j)`` over the :func:`ranges` of ``[0, lead)``, at once (:func:`run`)."""
    run(ranges(lead, work, min_rows), piece)


def _blas():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController().select(user_api="blas")
    return _controller


@contextlib.contextmanager
def blas_threads(n):
    """Run the block with ``n`` BLAS threads (no change if ``n`` is None or threadpoolctl
    is not installed); the previous count is restored after."""
    ctl = _blas() if n else None
    if not ctl:
        yield
        return
    with ctl.limit(limits=int(n)):
        yield


@contextlib.contextmanager
def blas_limited(numba_heavy):
    """Run the block with ``config.KERNEL_BLAS_THREADS`` BLAS threads if ``numba_heavy``;
    with one, :func:`matmul` splits large products across the cores itself."""
    if not numba_heavy:
        yield
        return
    before = getattr(_state, "split", 1)
    one = config.KERNEL_BLAS_THREADS == 1 and _blas()
    _state.split = _cores() if one else 1
    try:
        with blas_threads(config.KERNEL_BLAS_THREADS):
            yield
    finally:
        _state.split = before


def held_for(net):
    """:func:`blas_limited` for the network ``net``: BLAS held to one thread while the
    block runs, if ``net`` runs Numba kernels. For loops that call the network again and
    again with NumPy work in between (attributions, gradient attacks): a product between
    two calls would start OpenBLAS's threads, which keep spinning on the cores that the
    next call's kernels need."""
    return blas_limited(getattr(net, "uses_kernels", False))


def holding_blas(func, net_of=None):
    """Decorator: run ``func(first, ...)`` inside :func:`held_for` of its network,
    ``first`` itself or ``net_of(first)`` (a method's ``self.net``)."""
    @functools.wraps(func)
    def wrapper(first, *args, **kwargs):
        with held_for(first if net_of is None else net_of(first)):
            return func(first, *args, **kwargs)
    return wrapper
