"""The input Jacobians of a data set, shard by shard, into memory, a ``.npy`` or a Zarr array.

With a ``.zarr`` output the client creates a chunked array whose chunks are the shards
(``chunks=(shard_size, *S_out, *S_in)``) and every worker writes its own shard's rows
into it, one whole chunk per shard (a chunk written in parts would be read back and
compressed again for every part): no process holds more than a shard's Jacobian, so
the result need not fit in any machine's memory, and ``shard_size`` bounds what each
worker holds. The Zarr
path must be reachable under the same name by every worker (a shared file system when
the workers are on other machines). With a ``.npy`` output the workers return their
rows and the client writes them into a memory-mapped file as they arrive (one machine's
disk). Without an output the result is returned as an array.

The output is built in a work folder beside it, ``J.zarr.incomplete/`` (the array and one
small file per finished shard); when every shard is there the array is moved to its
name and the folder removed, so an output that exists is complete. Running the same call
again after an interruption reuses the work folder and computes only the missing shards.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..validation import check_int, check_max_memory
from .cluster import check_cluster_args
from .sharded import run_sharded

__all__ = ["jacobian", "JACOBIAN_SHARD_BYTES", "OUTPUT_SUFFIXES", "WORK_SUFFIX",
           "jacobian_shard_size"]

#: Bytes of Jacobian per shard (and per Zarr chunk) when no ``shard_size`` is given:
#: large enough that a shard's fixed costs (sending the inputs, a task's scheduling, a
#: file) are small beside its work, small enough for many shards per worker.
JACOBIAN_SHARD_BYTES = 16 * 2**20

#: The file types of ``output``.
OUTPUT_SUFFIXES = (".npy", ".zarr")

#: Suffix of the work folder beside an output being written.
WORK_SUFFIX = ".incomplete"

MODES = ("forward", "reverse")


def jacobian_shard_size(net, in_shape, dtype):
    """Examples per shard by default: about :data:`JACOBIAN_SHARD_BYTES` of Jacobian."""
    entries = int(np.prod(net.output_shape(tuple(in_shape)))) * int(np.prod(in_shape))
    return max(1, JACOBIAN_SHARD_BYTES // max(1, entries * np.dtype(dtype).itemsize))


def jacobian(net, x, *, mode="forward", workers=None, scheduler=None, output=None,
             shard_size=None, max_memory=None, return_output=False, progress=None):
    """``net.jacobian(x)`` computed shard by shard on a Dask cluster (or in this process).

    Parameters
    ----------
    net : Sequential or Graph
    x : ndarray of shape (N, *S_in), float32 or float64
    mode : {"forward", "reverse"}
        As in ``net.jacobian``.
    workers : int, optional
        A local cluster of this many worker processes, started for the call.
    scheduler : str or distributed.Client, optional
        An existing cluster. With neither, the shards run in turn in this process.
    output : path ending in ``.zarr`` or ``.npy``, optional
        Where the Jacobian goes (see the module's description); None returns it.
    shard_size : int, optional
        Examples per shard (default: about 16 MiB of Jacobian,
        :func:`jacobian_shard_size`).
    max_memory : int, optional
        Bytes for the work of each shard's ``net.jacobian`` (as there).
    return_output : bool
        Also return ``F(x)``, shape (N, *S_out).
    progress : None, bool or callable
        One bar over all workers (see :func:`~fwdderiv.distributed.run_sharded`).

    Returns
    -------
    F : ndarray of shape (N, *S_out), only with ``return_output`` (first, as in
        ``net.jacobian``)
    J : ndarray, numpy.memmap (read-only, for ``.npy``) or zarr.Array (for ``.zarr``)
        Shape (N, *S_out, *S_in). Each shard's rows are those of ``net.jacobian`` on
        the shard's examples in one process.

    Examples
    --------
    >>> import numpy as np, fwdderiv as fd
    >>> net = fd.Sequential([fd.Flatten(), fd.Linear(4, 3, seed=0), fd.Tanh()])
    >>> x = np.random.default_rng(0).random((10, 4))
    >>> J = jacobian(net, x, shard_size=4, progress=False)
    >>> J.shape, bool(np.allclose(J, net.jacobian(x)))
    ((10, 3, 4), True)
    """
    kind = _check(x, mode, output, shard_size, max_memory)
    check_cluster_args(workers, scheduler, "distributed.jacobian")   # before any file
    s_in = tuple(x.shape[1:])
    shape = (len(x),) + tuple(net.output_shape(s_in)) + s_in
    size = shard_size or jacobian_shard_size(net, s_in, x.dtype)
    settings = {"job": "jacobian", "mode": mode, "max_memory": max_memory, "output": kind}
    common = dict(shared=net, shard_size=size, workers=workers, scheduler=scheduler,
                  settings=settings, progress=progress, desc="jacobian")
    if kind is None:
        res = run_sharded(_jacobian_shard, x, args=(mode, max_memory, None), **common)
        F, J = (res["F"], res["J"]) if res else (np.zeros(shape[:len(shape) - len(s_in)],
                                                          x.dtype), np.zeros(shape, x.dtype))
        return (F, J) if return_output else J
    with _work_array(Path(output), kind, shape, x.dtype, size) as (work, array_path):
        if kind == ".zarr":
            res = run_sharded(_jacobian_shard, x, shard_dir=work,
                              args=(mode, max_memory, str(array_path.resolve())), **common)
        else:
            res = run_sharded(_jacobian_shard, x, shard_dir=work,
                              args=(mode, max_memory, None), keep=_npy_writer(array_path),
                              **common)
    J = _open_result(Path(output), kind)
    if not return_output:
        return J
    return (res["F"] if res else np.zeros(shape[:len(shape) - len(s_in)], x.dtype)), J


def _check(x, mode, output, shard_size, max_memory):
    """Refuse bad arguments before any work; return the output's suffix (or None)."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.ndim < 2:
        raise TypeError(f"distributed.jacobian expected x as a float ndarray of shape "
                        f"(N, *S), got {getattr(x, 'dtype', type(x).__name__)} of shape "
                        f"{getattr(x, 'shape', None)}; e.g. np.asarray(x, np.float64)")
    if mode not in MODES:
        raise ValueError(f"distributed.jacobian expected mode in {MODES}, got {mode!r}")
    if shard_size is not None:
        check_int(shard_size, "shard_size", "distributed.jacobian", minimum=1)
    check_max_memory(max_memory, "distributed.jacobian")
    if output is None:
        return None
    suffix = Path(output).suffix
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"distributed.jacobian expected output ending in .zarr (a chunked "
                         f"array the workers write) or .npy (written by this process), got "
                         f"{str(output)!r}; e.g. {str(Path(output).with_suffix('.zarr'))!r}")
    if suffix == ".zarr":
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ImportError(f"writing {str(output)!r} needs the zarr package: pip install "
                              "'fwdderiv[zarr]', or write a .npy file instead") from None
    return suffix


def _jacobian_shard(net, x, start, mode, max_memory, zarr_path):
    """One shard: ``{"F", "J"}``, or ``{"F"}`` with ``J`` written into the Zarr array at
    ``zarr_path`` (rows ``start`` to ``start + len(x)``, one chunk: written whole, never
    read back and rewritten)."""
    F, J = net.jacobian(x, mode=mode, max_memory=max_memory, return_output=True)
    if zarr_path is None:
        return {"F": F, "J": J}
    import zarr
    zarr.open_array(zarr_path, mode="r+")[start:start + len(x)] = J
    return {"F": F}


def _npy_writer(path):
    """``keep`` for a ``.npy`` output: write each computed shard's rows into the file
    (opened, written, flushed and closed per shard: the client holds one shard) before
    the shard is marked done; keep only ``F``."""
    def write(shard, result):
        J = np.lib.format.open_memmap(path, mode="r+")
        try:
            J[shard.start:shard.stop] = result["J"]
            J.flush()
        finally:
            del J
        return {"F": result["F"]}
    return write


@contextlib.contextmanager
def _work_array(output, kind, shape, dtype, size):
    """The work folder beside ``output`` with the array being filled: reopened when an
    interrupted run left one of this shape, dtype and chunking (its shard files are kept),
    else created (and the shard files removed). When the block ends without an error the
    array is moved to ``output`` (replacing an older one) and the folder removed."""
    output.parent.mkdir(parents=True, exist_ok=True)
    work = output.with_name(output.name + WORK_SUFFIX)
    if work.exists() and not work.is_dir():
        raise ValueError(f"distributed.jacobian: {str(work)!r} is a file, where the work "
                         "folder of the output goes; move it away")
    work.mkdir(exist_ok=True)
    array_path = work / output.name
    if not _reopen(array_path, kind, shape, dtype, size):
        for old in work.glob("shard-*.npz"):
            old.unlink()
        _create(array_path, kind, shape, dtype, size)
    yield work, array_path
    _publish(array_path, output)
    shutil.rmtree(work, ignore_errors=True)


def _reopen(path, kind, shape, dtype, size):
    """True when ``path`` holds an array of this shape, dtype (and chunks) to resume."""
    if not path.exists():
        return False
    try:
        if kind == ".npy":
            a = np.load(path, mmap_mode="r", allow_pickle=False)
            ok = a.shape == shape and a.dtype == dtype
            del a
            return ok
        import zarr
        a = zarr.open_array(str(path), mode="r")
        return tuple(a.shape) == shape and a.dtype == dtype and \
            tuple(a.chunks) == _chunks(shape, size)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _create(path, kind, shape, dtype, size):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    if kind == ".npy":
        a = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        del a
        return
    import zarr
    zarr.open_array(str(path), mode="w", shape=shape, dtype=dtype,
                    chunks=_chunks(shape, size))


def _chunks(shape, size):
    """Zarr chunks aligned to the shards: ``size`` rows, everything else whole."""
    return (max(1, min(size, shape[0])),) + tuple(shape[1:])


def _publish(src, dest):
    """Move ``src`` (a file or a folder) to ``dest``, replacing what is there."""
    if dest.is_dir() and not dest.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, aside / dest.name)
        os.replace(src, dest)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(src, dest)


def _open_result(output, kind):
    if kind == ".npy":
        return np.load(output, mmap_mode="r", allow_pickle=False)
    import zarr
    return zarr.open_array(str(output), mode="r")
