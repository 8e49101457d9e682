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
import warnings
from pathlib import Path

from fwdderiv.datasets.dataset import DATASETS
from fwdderiv.progress import progress_enabled

#: Exit status of a usage error: argparse's, and ``cli.main``'s for a CommandError.
USAGE = 2


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
    """Give a parser that has ``--data-dir`` a ``--dataset`` among :data:`DATASETS` (unless
    it has one): the data set is chosen with ``--dataset``, ``--data-dir`` only says where
    its files are."""
    have = parser._option_string_actions
    if "--data-dir" in have and "--dataset" not in have:
        parser.add_argument("--dataset", choices=DATASETS, default=None,
                            help="the data set: digits (scikit-learn's 8x8 digits, offline), "
                                 "mnist or fashion-mnist (IDX files), cifar10 (CIFAR-10's "
                                 "binary files), or folder (photos in --data-dir, one "
                                 "sub-folder per class); the files are read from --data-dir "
                                 "or the default data folder; default: digits, or mnist when "
                                 "--data-dir or --download is given")
    return parser


def resolve_dataset(ns, parser):
    """Set ``ns.dataset`` when the command has one: an explicit ``--dataset``; else mnist
    when ``--data-dir`` or ``--download`` is given (with a one-line note: the digits need
    no files, and MNIST was the first data set read from files), else digits. ``--dataset
    digits`` with ``--data-dir`` or ``--download`` is a usage error."""
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
        parser.error(f"{given[0]} applies to --dataset mnist, fashion-mnist, cifar10 or "
                     f"folder (the digits need no files); add one of those, or drop "
                     f"{given[0]}")


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
                            help="download the data set's files into the --data-dir folder "
                                 "(or the default data folder) if they are missing, checked "
                                 "against their published MD5 or SHA-256: MNIST, "
                                 "Fashion-MNIST, CIFAR-10's binary archive, or for --dataset "
                                 "folder TensorFlow's flower photos (implies --dataset mnist "
                                 "when no --dataset is given)")
    return parser


def show_progress(args):
    """Whether this run draws progress bars (``--progress``, ``--no-progress``, else only
    when standard error is a terminal)."""
    return progress_enabled(getattr(args, "progress", None))


def _where(data_dir):
    return ("--data-dir" if data_dir is not None else
            "the default data folder ($FWDDERIV_DATA_DIR or ~/.cache/fwdderiv/data)")


def _check_idx_files(name, data_dir, download):
    """A usage error naming ``--data-dir``/``--download`` when MNIST's or Fashion-MNIST's
    t10k files are missing."""
    from fwdderiv.datasets import (fashion_mnist_root, find_fashion_mnist_files,
                                   find_mnist_files, mnist_root)

    root_of, find, title = {"mnist": (mnist_root, find_mnist_files, "MNIST"),
                            "fashion-mnist": (fashion_mnist_root, find_fashion_mnist_files,
                                              "Fashion-MNIST")}[name]
    root = root_of() if data_dir is None else Path(data_dir).expanduser()
    if not download and find(root, "test") is None:
        raise CommandError(
            f"no {title} files in {root} ({_where(data_dir)}): expected "
            "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]; point --data-dir at "
            "the folder that holds them, or add --download to fetch them")


def folder_root(data_dir=None, download=False):
    """The folder of ``--dataset folder``: ``--data-dir``; with ``--download``, the flower
    photos fetched into ``--data-dir`` (or the default data folder) and extracted there as
    ``flower_photos/``; without either, that folder if it exists."""
    from fwdderiv.datasets import default_data_dir, download_flowers

    if download:
        return download_flowers(data_dir)
    if data_dir is not None:
        return Path(data_dir).expanduser()
    flowers = default_data_dir() / "flower_photos"
    if flowers.is_dir():
        return flowers
    raise CommandError("--dataset folder needs --data-dir DIR, a folder with one sub-folder "
                       "of images per class, or --download to fetch TensorFlow's flower "
                       "photos (5 classes, 3,670 photos, 229 MB)")


def _load_folder(data_dir, download, image_size):
    """The image folder as a Dataset; skipped files are reported on standard error, one
    line each, not as a Python warning."""
    from fwdderiv.datasets import SkippedImageWarning, load_dataset

    root = folder_root(data_dir, download)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedImageWarning)
        ds = load_dataset("folder", data_dir=root, image_size=image_size)
    for w in caught:
        if issubclass(w.category, SkippedImageWarning):
            print(f"fwdderiv: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def load_data(name, data_dir=None, download=False, image_size=None):
    """``fwdderiv.datasets.load_dataset`` with errors that name command-line options.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    data_dir : str or os.PathLike, optional
        The ``--data-dir`` value; None is the default data folder.
    download : bool
        The ``--download`` flag (for ``folder``: fetch the flower photos).
    image_size : (int, int), optional
        ``--image-size``: for ``folder``, the size the photos are decoded at (default
        64x64); ignored by the other data sets.

    Returns
    -------
    dataset : fwdderiv.datasets.Dataset

    Raises
    ------
    CommandError
        Files missing (without ``--download``), or scikit-learn missing for the digits,
        or Pillow for an image folder.
    """
    from fwdderiv.datasets import load_dataset

    if name in ("mnist", "fashion-mnist"):
        _check_idx_files(name, data_dir, download)
    try:
        if name == "folder":
            return _load_folder(data_dir, download, image_size)
        return load_dataset(name, data_dir=data_dir, download=download)
    except FileNotFoundError as err:
        raise CommandError(f"{' '.join(str(err).split())} (on the command line: point "
                           f"--data-dir at the folder, or add --download)") from err
    except ImportError as err:
        if name == "folder":
            raise CommandError(f"--dataset folder decodes images with Pillow ({err}); install "
                               "it with pip install 'fwdderiv[images]'") from err
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


def add_per_example_option(p):
    """``--per-example`` / ``--no-per-example``: how an .onnx MODEL's batch axis is read
    (``fwdderiv.from_onnx``'s ``per_example``)."""
    p.add_argument("--per-example", action=argparse.BooleanOptionalAction, default=None,
                   help="an .onnx MODEL only: read the file as the function of one example, "
                        "its input at batch 1 (for exports that fold the batch into windows "
                        "or heads, or froze sizes computed from it), or with "
                        "--no-per-example its axis 0 as the batch only (default: the batch "
                        "first, then one example at a time if the file agrees at batch 2)")
