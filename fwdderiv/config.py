"""Project-wide settings: Numba flags, tolerances per dtype, memory defaults.

Every Numba kernel takes its flags from here (``@njit(**NUMBA_OPTS)``), so compile
behaviour is changed in one place. ``fastmath`` stays off: derivative kernels are compared
exactly against NumPy references, and reassociation would break that.
"""
import os

import numba
import numpy as np

from . import _malloc

# Numba's parallel kernels alternate with BLAS products on the same two cores. Measured on
# LeNet-5 and mnist_convnet Jacobians (docs/pages/performance.md, Threads): OpenMP-layer
# kernels with single-threaded BLAS are fastest (reverse mode up to 2x, forward mode up
# to 1.3x over the workqueue layer with multi-threaded BLAS); OpenMP kernels beside
# multi-threaded BLAS are the slowest (each side's idle workers spin and take the other's
# core: 1.5-3x slower). So the OpenMP layer is preferred (workqueue if it cannot load),
# and BLAS runs single-threaded while a network with Numba kernel layers is evaluated
# (KERNEL_BLAS_THREADS, :mod:`fwdderiv._threads`). Without threadpoolctl BLAS cannot be
# limited, and the workqueue layer, whose workers do not spin, stays first.
# NUMBA_THREADING_LAYER still wins.
try:
    import threadpoolctl  # noqa: F401
    HAVE_THREADPOOLCTL = True
except ImportError:
    HAVE_THREADPOOLCTL = False
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = (
        ["omp", "workqueue", "tbb"] if HAVE_THREADPOOLCTL else ["workqueue", "omp", "tbb"])

#: True if glibc's allocator was told to keep freed array memory (:mod:`fwdderiv._malloc`;
#: set FWDDERIV_TUNE_MALLOC=0 before importing fwdderiv to leave it alone).
MALLOC_TUNED = os.environ.get("FWDDERIV_TUNE_MALLOC", "1") != "0" and _malloc.tune()

#: BLAS threads while a network with Numba kernel layers (convolution, pooling) computes
#: anything (forward, JVP, VJP, Jacobians, training steps, attacks); None leaves BLAS
#: alone. Needs threadpoolctl (installed with scikit-learn, or ``pip install
#: threadpoolctl``); without it nothing is changed.
KERNEL_BLAS_THREADS = 1

#: Flags for serial kernels. ``cache=True`` keeps a fresh process from recompiling.
NUMBA_OPTS = {"cache": True, "fastmath": False, "nogil": True}

#: Flags for kernels whose outer loop is a ``prange`` over independent rows.
NUMBA_PARALLEL_OPTS = {**NUMBA_OPTS, "parallel": True}

#: Default budget, in bytes, for the tangent (or cotangent) work of one ``jacobian`` call.
#: The directions and examples are split into chunks that fit; the result array and the
#: model are not counted.
DEFAULT_MAX_MEMORY = 256 * 2**20

#: Tolerances for comparing derivatives, one row per floating dtype.
#: ``fd`` tolerances compare against finite differences, ``exact`` ones compare two
#: analytic computations of the same quantity (forward vs reverse mode).
TOLERANCES = {
    np.dtype(np.float64): {"fd_rtol": 1e-6, "fd_atol": 1e-8, "rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"fd_rtol": 2e-2, "fd_atol": 2e-3, "rtol": 1e-4, "atol": 1e-5},
}


def tolerance(dtype, kind):
    """Return the tolerance ``kind`` (a key of :data:`TOLERANCES`) for ``dtype``."""
    return TOLERANCES[np.dtype(dtype)][kind]
