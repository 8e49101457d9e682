"""What every ``fwdderiv`` command shares: the parser class (subcommand usage on an
error, one meaning of ``--dataset``/``--data-dir``), option types, the progress options,
data loading with errors addressed to command-line users, and the first-run notice while
Numba compiles.

Exit statuses, the same for every command: 0 success, 1 a check that failed (``check``,
``jacobian``), 2 a usage error (an unknown option, a bad option value, inputs or a model
that do not fit), 130 interrupted.
"""
import argparse
import os
import sys
import threading

from fwdderiv.progress import progress_enabled

#: Exit status of a usage error: argparse's, and ``cli.main``'s for a CommandError.
USAGE = 2

#: The data sets a command can read (``--dataset``).
DATASETS = ("digits", "mnist")


class CommandError(ValueError):
    """A user error of the command line, phrased for it: which option to change.

    ``cli.main`` prints it as ``fwdderiv COMMAND: error: MESSAGE`` on one line of
    standard error and exits with status 2 (:data:`USAGE`).
    """


class CommandParser(argparse.ArgumentParser):
    """The parser of one subcommand: an unknown option prints this subcommand's usage (not
    the top-level one), and ``--dataset`` is resolved after parsing
    (:func:`resolve_dataset`)."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extra = super().parse_known_args(args, namespace)
        if extra and "run" in self._defaults:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        resolve_dataset(ns, self)
        return ns, extra


def add_dataset_option(parser):
    """Give a parser that has ``--data-dir`` a ``--dataset {digits,mnist}`` (unless it has
    one): the data set is chosen with ``--dataset``, ``--data-dir`` only says where
    MNIST's files are."""
    have = parser._option_string_actions
    if "--data-dir" in have and "--dataset" not in have:
        parser.add_argument("--dataset", choices=DATASETS, default=None,
                            help="the data set: digits (scikit-learn's 8x8 digits, offline) "
                                 "or mnist (IDX files in --data-dir or the default data "
                                 "folder); default: digits, or mnist when --data-dir or "
                                 "--download is given")
    return parser


def resolve_dataset(ns, parser):
    """Set ``ns.dataset`` when the command has one: an explicit ``--dataset``; else mnist
    when ``--data-dir`` or ``--download`` is given (with a one-line note: those options
    only mean something for MNIST), else digits. ``--dataset digits`` with ``--data-dir``
    or ``--download`` is a usage error."""
    if not hasattr(ns, "dataset") or not hasattr(ns, "data_dir"):
        return
    given = [o for o, v in (("--data-dir", ns.data_dir), ("--download",
                                                         getattr(ns, "download", False)))
             if v]
    if ns.dataset is None:
        ns.dataset = "mnist" if given else "digits"
        if given:
            print(f"{parser.prog}: note: {given[0]} without --dataset: using --dataset mnist "
                  "(the digits need no files)", file=sys.stderr)
    elif ns.dataset == "digits" and given:
        parser.error(f"{given[0]} applies to --dataset mnist (the digits need no files); "
                     f"add --dataset mnist, or drop {given[0]}")


def names_among(choices):
    """argparse type: comma-separated names, each one of ``choices``, at least one."""
    def parse(text):
        names = [n for n in text.split(",") if n]
        if not names or any(n not in choices for n in names):
            raise argparse.ArgumentTypeError(f"expected names among {', '.join(choices)}, "
                                             f"got {text!r}")
        return names
    return parse


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def nonnegative_int(text):
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text, low):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    return value


def nonnegative_float(text):
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def image_size(text):
    """argparse type of ``--image-size H,W`` (or one number for a square): (H, W)."""
    try:
        hw = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W such as 32,32, got {text!r}")
    return hw


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
                                 "the default data folder) if they are missing; MD5-checked "
                                 "(implies --dataset mnist)")
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
                           "pip install 'fwdderiv[data]', or use --dataset mnist"
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
