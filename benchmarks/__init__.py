"""Benchmarks of fwdderiv (not installed with the package). Run them from the repository
root, e.g. ``python -m benchmarks.jacobian --help``; see benchmarks/README.md."""
import os

# The benchmarks measure fwdderiv as a program of its own would run it: with the opt-in
# process-wide tuning (fwdderiv.process; every worker process inherits this). Set
# FWDDERIV_TUNE_PROCESS=0 to measure the untuned library instead.
os.environ.setdefault("FWDDERIV_TUNE_PROCESS", "1")
