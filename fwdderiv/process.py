"""Opt-in, process-wide tuning for programs that compute many Jacobians.

``import fwdderiv`` changes nothing outside fwdderiv's own calls. Two process-wide
settings measurably help programs whose time is mostly fwdderiv's, and a program may opt
in to them, once, at start-up (the ``fwdderiv`` command line and the benchmarks do):

- **glibc's allocator** (:mod:`fwdderiv._malloc`): keep freed array memory in the
  process, so that repeated Jacobians stop faulting fresh pages in (page faults and
  timings: docs/pages/performance.md, "Process-wide tuning is opt-in").
- **Numba's threading layer**: prefer the OpenMP layer (BLAS is single-threaded while
  fwdderiv's kernels run, so OpenMP's spinning workers compete with nothing), then
  workqueue. Numba picks its layer once, at the first parallel kernel of the process.

Both affect every library in the process (PyTorch and JAX included), which is why they
are not applied on import. Setting the environment variable ``FWDDERIV_TUNE_PROCESS=1``
before importing fwdderiv applies them on import instead.
"""
import os

import numba

from . import _malloc

_applied = {}


def tune_process(allocator=True, threading_layer=True):
    """Apply the process-wide tuning; return what was applied.

    Parameters
    ----------
    allocator : bool
        Raise glibc's mmap and trim thresholds (no effect off glibc).
    threading_layer : bool
        Prefer Numba's OpenMP threading layer (no effect once a parallel kernel has run,
        or when ``NUMBA_THREADING_LAYER`` is set).

    Returns
    -------
    dict
        ``{"allocator": bool, "threading_layer": bool}``: True where the setting took.

    Examples
    --------
    >>> import fwdderiv as fd
    >>> sorted(fd.tune_process())
    ['allocator', 'threading_layer']
    """
    if allocator and not _applied.get("allocator"):
        _applied["allocator"] = _malloc.tune()
    if threading_layer and not _applied.get("threading_layer"):
        ok = "NUMBA_THREADING_LAYER" not in os.environ
        if ok:
            numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
        _applied["threading_layer"] = ok
    return {"allocator": bool(_applied.get("allocator")),
            "threading_layer": bool(_applied.get("threading_layer"))}


def tuned():
    """What :func:`tune_process` has applied so far in this process."""
    return {"allocator": bool(_applied.get("allocator")),
            "threading_layer": bool(_applied.get("threading_layer"))}


if os.environ.get("FWDDERIV_TUNE_PROCESS", "0") not in ("", "0"):
    tune_process()
