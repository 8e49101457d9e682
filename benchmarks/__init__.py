"""Benchmarks of fwdderiv (not installed with the package). Run them from the repository
root, e.g. ``python -m benchmarks.jacobian --help``; see benchmarks/README.md."""
