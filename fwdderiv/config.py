"""Project-wide settings: Numba flags, tolerances per dtype, memory defaults.

Every Numba kernel takes its flags from here (``@njit(**NUMBA_OPTS)``), so compile
behaviour is changed in one place. ``fastmath`` stays off: derivative kernels are compared
exactly against NumPy references, and reassociation would break that.
"""
import numpy as np

# Importing fwdderiv changes nothing outside fwdderiv: no Numba setting, no allocator
# setting. BLAS is limited only for the duration of fwdderiv's own calls (below), and the
# process-wide tuning that helps Jacobian-heavy programs is opt-in:
# :func:`fwdderiv.tune_process` (the command line and the benchmarks call it).

#: BLAS threads while a network with Numba kernel layers (convolution, pooling) computes
#: anything (forward, JVP, VJP, Jacobians, training steps, attacks); None leaves BLAS
#: alone. Multi-threaded OpenBLAS workers spin after each product on the cores the next
#: Numba kernel needs (the "Threads" entry of docs/pages/performance.md has the figures).
KERNEL_BLAS_THREADS = 1

#: Flags for serial kernels. ``cache=True`` keeps a fresh process from recompiling.
NUMBA_OPTS = {"cache": True, "fastmath": False, "nogil": True}

#: Flags for kernels whose outer loop is a ``prange`` over independent rows.
NUMBA_PARALLEL_OPTS = {**NUMBA_OPTS, "parallel": True}

#: Default budget, in bytes, for the tangent (or cotangent) work of one ``jacobian`` call.
#: The directions and examples are split into chunks that fit; the result array and the
#: model are not counted. A network whose one direction of one example needs more (a
#: GoogLeNet in reverse mode) gets that much: the default never refuses a call.
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
