"""Numba kernels. Private ``@njit`` loops over preallocated, C-contiguous arrays; the
Python functions beside them validate and allocate. Flags come from ``fwdderiv.config``."""
