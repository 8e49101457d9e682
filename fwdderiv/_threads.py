"""BLAS threads while Numba kernels run (see :data:`fwdderiv.config.KERNEL_BLAS_THREADS`).

A network of convolutions and pools alternates many short Numba kernels with small BLAS
products. Multi-threaded OpenBLAS keeps its workers spinning for a while after every
product, on the cores the next Numba kernel needs; with BLAS single-threaded for the
duration of the call, the two never compete. Pure dense networks are left alone: their
time is in large products that do use the threads.
"""
import contextlib

from . import config

_controller = None       # threadpoolctl's BLAS controller, False if unavailable


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


def blas_limited(numba_heavy):
    """Run the block with ``config.KERNEL_BLAS_THREADS`` BLAS threads if ``numba_heavy``."""
    return blas_threads(config.KERNEL_BLAS_THREADS if numba_heavy else None)
