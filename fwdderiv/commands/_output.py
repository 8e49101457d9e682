"""Command outputs that are whole or absent.

A command writes its output folder (or file) under a temporary name beside the
destination and renames it into place at the end (:func:`output_dir`,
:func:`output_file`): an error, Ctrl-C or SIGTERM in between removes the temporary copy
and leaves the destination as it was, so a folder that looks finished is finished. Work
that is worth keeping across an interruption is written resumably instead, in the
destination itself, one complete file at a time (``reproduce --workers`` keeps its
finished shards in ``OUTPUT/shards``).

A large array goes to a ``.npy`` file (or a Zarr array) as it is computed through
:func:`array_output`, which holds only the block being written in memory.
"""
import contextlib
import glob
import mmap
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..io import current_umask

#: Temporary copies are named ``.NAME.partial-PID-XXXX`` beside the destination.
PARTIAL = ".partial-"


@contextlib.contextmanager
def output_dir(path, last=None, replace=False):
    """Stage an output folder: yields a temporary folder beside ``path`` to write in.

    When the block ends without an error, the folder is renamed to ``path`` (when
    ``path`` does not exist or is empty), or its files are moved into the existing
    ``path`` one by one, ``last`` (the file saying the run finished, e.g. ``report.md``)
    removed first and moved in last: a reader never sees the new ``last`` beside older
    files. On an error (or Ctrl-C, or SIGTERM) the temporary folder and any parent
    folders created for it are removed; ``path`` is left as it was.

    Parameters
    ----------
    path : str or Path
        The output folder.
    last : str, optional
        The file name, inside the folder, that marks a finished run.
    replace : bool
        Replace an existing ``path`` as a whole instead (a folder that is one data set,
        such as a Zarr array): the old one is renamed aside, the new one into place,
        then the old one removed.

    Yields
    ------
    Path
        The temporary folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output {str(path)!r} is an existing file; the output is a "
                         "folder: give a new or existing folder name")
    created = _make_parents(path.parent)
    _remove_stale(path)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}{PARTIAL}{os.getpid()}-",
                                  dir=path.parent))
    try:
        os.chmod(stage, 0o777 & ~current_umask())         # mkdtemp's 0o700 is for temporaries
        with _sigterm_interrupts():
            yield stage
            _publish(stage, path, last, replace)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:                     # deepest first; only if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def output_file(path):
    """Stage one output file: yields a temporary path beside ``path``; renamed to
    ``path`` when the block ends without an error, removed otherwise."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give a file name")
    created = _make_parents(path.parent)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{PARTIAL}{os.getpid()}-",
                               dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())           # mkstemp's 0o600 is for temporaries
        with _sigterm_interrupts():
            yield Path(tmp)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` whole or not at all (:func:`output_file`)."""
    with output_file(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def array_output(path, shape, dtype):
    """An array file of ``shape`` and ``dtype`` filled block by block: yields a
    :class:`Blocks` (an array-like for ``net.jacobian(x, out=...)``) on a temporary copy,
    renamed to ``path`` when the block ends without an error.

    ``path`` ends in ``.npy`` (a memmap opened with ``np.lib.format.open_memmap``) or in
    ``.zarr`` (a Zarr array, when the ``zarr`` package is installed)."""
    path = Path(path)
    if path.suffix == ".zarr":
        try:
            import zarr
        except ImportError:
            raise ImportError(f"writing {str(path)!r} needs the zarr package, which is not "
                              "installed: pip install zarr, or write a .npy file "
                              "(a memory-mapped array) instead") from None
        with output_dir(path, replace=True) as stage:
            yield Blocks(zarr.open_array(str(stage), mode="w", shape=tuple(shape),
                                         dtype=dtype))
        return
    if path.suffix != ".npy":
        raise ValueError(f"expected a .npy (or .zarr) path for the array, got "
                         f"{str(path)!r}; e.g. {str(path.with_suffix('.npy'))!r}")
    with output_file(path) as tmp:
        blocks = Blocks(np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype,
                                                  shape=tuple(shape)))
        try:
            yield blocks
            blocks.flush()
        finally:
            blocks.close()


class Blocks:
    """An array on disk (a ``.npy`` memmap, a Zarr array) written and read one block at
    a time. A memmap's pages are flushed and released from this process after each
    block, so its memory holds one block, not the file (a plain memmap keeps every page
    it touched resident).

    ``blocks[index] = values`` writes; ``blocks[index]`` returns a copy in memory;
    ``max_abs`` is the largest |value| written so far.
    """

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, tuple(array.shape), array.dtype
        self.max_abs = 0.0

    def __setitem__(self, index, values):
        values = np.asarray(values)
        self.array[index] = values
        if values.size:
            self.max_abs = max(self.max_abs, float(np.abs(values).max()))
        self.flush()                    # then the pages can go: the file holds the data
        self._release()

    def __getitem__(self, index):
        part = np.array(self.array[index])
        self._release()
        return part

    def flush(self):
        if isinstance(self.array, np.memmap):
            self.array.flush()

    def _release(self):
        base = getattr(self.array, "base", None)
        if isinstance(base, mmap.mmap) and hasattr(base, "madvise"):
            with contextlib.suppress(OSError, ValueError):
                base.madvise(mmap.MADV_DONTNEED)

    def close(self):
        """Unmap a memmap (the file stays)."""
        base = getattr(self.array, "base", None)
        self.array = None
        if isinstance(base, mmap.mmap):
            with contextlib.suppress(BufferError, ValueError):
                base.close()


def _make_parents(folder):
    """Create ``folder`` and its missing parents; return the ones created, deepest
    first (removed again if the run fails)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir(exist_ok=True)
    return missing


def _remove_stale(path):
    """Remove temporary copies of ``path`` left by runs that were killed (their process
    is gone)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}{PARTIAL}*"):
        pid = stale.name[len(path.name) + 1 + len(PARTIAL):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    stale.unlink()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _publish(stage, path, last, replace=False):
    """Move the finished ``stage`` folder to ``path`` (see :func:`output_dir`)."""
    try:
        os.rename(stage, path)             # path absent or an empty folder: one step
        return
    except OSError:
        if replace:
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, aside / path.name)
            os.rename(stage, path)
            shutil.rmtree(aside, ignore_errors=True)
            return
    names = sorted(p.name for p in stage.iterdir())
    if last in names:
        names = [n for n in names if n != last] + [last]
        with contextlib.suppress(FileNotFoundError):
            (path / last).unlink()
    for name in names:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(stage / name, target)
    stage.rmdir()


@contextlib.contextmanager
def _sigterm_interrupts():
    """Turn SIGTERM into KeyboardInterrupt for the duration (main thread, default
    handler only), so a terminated run cleans up as a Ctrl-C'd one does."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"terminated (signal {signum})")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
