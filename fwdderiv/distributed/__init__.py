"""Data-parallel jobs past one machine: sharded execution on a Dask cluster.

:func:`run_sharded` is the engine: it cuts the examples (or a list of settings) into
contiguous shards, runs a task on each on a local ``dask.distributed`` cluster
(``workers=N``) or an existing one (``scheduler=ADDRESS``), or in turn in this process
(neither), sends the network to every worker once per run, writes every finished shard at
once and resumes an interrupted run from them, cancels cleanly on an interruption, draws
one progress bar over all workers, and puts the results together in order. A shard's
numbers are those of the same call on the shard's examples in one process.

The jobs on it: :func:`jacobian` (into memory, a ``.npy`` or a chunked Zarr array written
by the workers), :func:`compare` (``fwdderiv check``), :func:`attribute` (the methods of
:mod:`fwdderiv.attribution`), :func:`robust_accuracy` (FGSM/PGD) and, in
:func:`fwdderiv.attacks.jsma`, JSMA crafting. The cluster needs ``dask[distributed]``
(``pip install 'fwdderiv[distributed]'``), Zarr output ``zarr`` (``fwdderiv[zarr]``).
See the "Running at scale" page of the documentation.
"""
from .attacks import ATTACKS, correct_after_attack, robust_accuracy
from .attribution import ATTRIBUTION_SHARD_SIZE, attribute
from .check import compare, merge_reports
from .cluster import CONNECT_TIMEOUT, connect
from .jacobians import JACOBIAN_SHARD_BYTES, jacobian, jacobian_shard_size
from .sharded import DEFAULT_SHARD_SIZE, Shard, run_sharded, shard_bounds
from .store import digest

__all__ = ["run_sharded", "Shard", "shard_bounds", "DEFAULT_SHARD_SIZE", "connect",
           "CONNECT_TIMEOUT", "digest", "jacobian", "jacobian_shard_size",
           "JACOBIAN_SHARD_BYTES", "compare", "merge_reports", "attribute",
           "ATTRIBUTION_SHARD_SIZE", "robust_accuracy", "correct_after_attack", "ATTACKS"]
