"""Checkpoints: a whole network in the project's ``.npz`` format, written atomically."""
from pathlib import Path


def save_checkpoint(net, path):
    """Write ``net`` to ``path`` with ``fd.save``, which checks every parameter against its
    layer and writes through a fsynced temporary file and a rename.

    A reader never sees a half-written file, and an interrupted or refused save (a
    parameter of the wrong shape, NaN weights) leaves the previous checkpoint intact.

    Parameters
    ----------
    net : Sequential
    path : str or Path
        Destination; must end in ``.npz``.

    Returns
    -------
    Path
        ``path``.
    """
    import fwdderiv as fd

    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"checkpoint path must end in .npz, got {str(path)!r}; "
                         f"use {str(path.with_suffix('.npz'))!r}")
    fd.save(net, path)
    return path


def load_checkpoint(path):
    """Read a network written by :func:`save_checkpoint` (or ``fd.save``)."""
    import fwdderiv as fd

    return fd.load(str(path))
