"""What every ``fwdderiv`` command shares: the progress options, data loading with
errors addressed to command-line users, and the first-run notice while Numba compiles."""
import os
import sys
import threading

from fwdderiv.progress import progress_enabled


class CommandError(ValueError):
    """A user error of the command line, phrased for it: which option to change.

    ``cli.main`` prints it as ``fwdderiv COMMAND: error: MESSAGE`` on one line of
    standard error and exits with status 1.
    """


def add_progress_options(parser):
    """Give ``parser`` ``--progress`` / ``--no-progress`` (dest ``progress``: True, False,
    or None for "only on a terminal") unless it has them already."""
    have = parser._option_string_actions
    if "--progress" not in have and "--no-progress" not in have:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--progress", dest="progress", action="store_true", default=None,
                           help="show progress bars even when standard error is not a "
                                "terminal (default: only on a terminal)")
        group.add_argument("--no-progress", dest="progress", action="store_false",
                           help="never show progress bars")
    return parser


def add_download_option(parser):
    """Give a parser that has ``--data-dir`` a ``--download`` flag (unless it has one)."""
    have = parser._option_string_actions
    if "--data-dir" in have and "--download" not in have:
        parser.add_argument("--download", action="store_true",
                            help="download the MNIST files into the --data-dir folder (or "
                                 "the default data folder) if they are missing; MD5-checked")
    return parser


def show_progress(args):
    """Whether this run draws progress bars (``--progress``, ``--no-progress``, else only
    when standard error is a terminal)."""
    return progress_enabled(getattr(args, "progress", None))


def load_data(name, data_dir=None, download=False):
    """``fwdderiv.datasets.load_dataset`` with errors that name command-line options.

    Parameters
    ----------
    name : {"digits", "mnist"}
    data_dir : str or os.PathLike, optional
        The ``--data-dir`` value; None is the default data folder.
    download : bool
        The ``--download`` flag.

    Returns
    -------
    dataset : fwdderiv.datasets.Dataset

    Raises
    ------
    CommandError
        MNIST files missing (without ``--download``), or scikit-learn missing for the
        digits.
    """
    from fwdderiv.datasets import find_mnist_files, load_dataset, mnist_root
    from pathlib import Path

    if name == "mnist":
        root = mnist_root() if data_dir is None else Path(data_dir).expanduser()
        if not download and find_mnist_files(root, "test") is None:
            where = ("--data-dir" if data_dir is not None else
                     "the default data folder ($FWDDERIV_DATA_DIR or ~/.cache/fwdderiv/data)")
            raise CommandError(
                f"no MNIST files in {root} ({where}): expected t10k-images-idx3-ubyte[.gz] "
                "and t10k-labels-idx1-ubyte[.gz]; point --data-dir at the folder that holds "
                "them, or add --download to fetch them")
    try:
        return load_dataset(name, data_dir=data_dir, download=download)
    except ImportError as err:
        raise CommandError(f"the offline digits need scikit-learn ({err}); install it with "
                           "pip install 'fwdderiv[data]', or use MNIST with --data-dir DIR"
                           ) from err


#: Printed while Numba compiles the kernels on a first run.
FIRST_RUN_NOTICE = ("fwdderiv: first run: compiling the Numba kernels (about 20 s, once; "
                    "the compiled code is cached for later runs)")


def _kernel_cache_files():
    """(cached, total): how many of fwdderiv's Numba kernels have an on-disk cache index."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import fwdderiv.kernels as kernels
    cached = total = 0
    for info in pkgutil.iter_modules(kernels.__path__, "fwdderiv.kernels."):
        for obj in vars(importlib.import_module(info.name)).values():
            if isinstance(obj, CPUDispatcher) and getattr(obj, "_cache", None) is not None:
                total += 1
                index = getattr(getattr(obj._cache, "_cache_file", None), "_index_path", None)
                cached += bool(index and os.path.exists(index))
    return cached, total


def first_run_notice(stream=None):
    """Print a notice when most Numba kernels have no compiled copy on disk yet.

    The first call of each kernel compiles it (15-30 s in all on two cores) and caches the
    result beside the package (or in ``$NUMBA_CACHE_DIR``); later runs load it. Returns
    True when the notice was printed.
    """
    try:
        cached, total = _kernel_cache_files()
    except Exception:                      # Numba internals moved: say nothing
        return False
    if total and cached < total / 2:
        _print_notice(stream)
        return True
    return False


def _print_notice(stream=None):
    print(FIRST_RUN_NOTICE, file=sys.stderr if stream is None else stream, flush=True)


def first_run_notice_after(delay, stream=None):
    """Start a timer that calls :func:`first_run_notice` after ``delay`` seconds, if the
    kernels were not compiled when it started; returns the timer (call ``cancel()``)."""
    try:
        cached, total = _kernel_cache_files()
    except Exception:
        cached, total = 1, 1
    cold = bool(total) and cached < total / 2
    timer = threading.Timer(delay, _print_notice if cold else (lambda stream=None: None),
                            kwargs={"stream": stream})
    timer.daemon = True
    timer.start()
    return timer
