"""Keep freed array memory in the process instead of returning it to the kernel.

Every Jacobian allocates and frees arrays of a few MiB (tangents, cotangents, columns).
glibc serves blocks above its mmap threshold with fresh ``mmap`` pages and gives freed
heap tops back once they pass its trim threshold; both thresholds adapt only up to the
largest block freed so far, so the next call faults the same pages in again, each one
zeroed by the kernel. With the thresholds below, no page faults after the first call
(the counts and timings: docs/pages/performance.md, "Process-wide tuning is opt-in").

:func:`tune` sets glibc's mmap threshold to 32 MiB and its trim threshold to 256 MiB, so
blocks below 32 MiB are reused from the heap and up to 256 MiB of freed memory stays
mapped. It is process-wide (other libraries in the process get the same behaviour), so
it is opt-in: :func:`fwdderiv.tune_process`. Elsewhere than glibc it does nothing.
"""
import ctypes
import sys

MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3    # glibc's mallopt parameter numbers


def tune():
    """Apply the thresholds; True if glibc accepted them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)                 # the process's own symbols, libc's among them
        version = libc.gnu_get_libc_version      # glibc only: musl's mallopt is a no-op
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    del version
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
