"""MNIST from IDX files, with optional checksummed download.

MNIST (Y. LeCun, C. Cortes, C. J. C. Burges; http://yann.lecun.com/exdb/mnist/,
CC BY-SA 3.0) is 60,000 training and 10,000 test images of handwritten digits,
28x28 grey levels, in four IDX files. :func:`load_mnist` reads them from a directory,
raw or gzip-compressed, validates them, and can download the gzip files first.
"""
import os
from pathlib import Path

from .download import DOWNLOAD_TIMEOUT
from .idx_pair import (IDX_PAIR_FILES, IMAGES_MAGIC, LABELS_MAGIC, MAX_IDX_BYTES,
                       check_split, find_idx_pair, load_idx_pair)

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "MAX_IDX_BYTES", "MNIST_FILES", "MNIST_MD5",
           "MNIST_MIRRORS", "default_data_dir", "find_mnist_files", "load_mnist", "mnist_root"]

#: split -> (images file, labels file), without the ``.gz`` suffix.
MNIST_FILES = IDX_PAIR_FILES

#: torchvision's layout below a root folder.
MNIST_SUBFOLDERS = ("MNIST/raw",)

#: MD5 of the four gzip files as distributed. Source: torchvision,
#: ``torchvision/datasets/mnist.py``, ``MNIST.resources`` (github.com/pytorch/vision).
#: Only downloads are checked against it: a local copy that was re-compressed (like the
#: one on the project machines) has another digest and is validated by its IDX content.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: Base URLs tried in order (the mirrors torchvision uses; the S3 copy first because
#: yann.lecun.com has often refused automated downloads).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def default_data_dir():
    """Return the base data directory: ``$FWDDERIV_DATA_DIR`` or ``~/.cache/fwdderiv/data``.

    Returns
    -------
    path : pathlib.Path
    """
    env = os.environ.get("FWDDERIV_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fwdderiv" / "data"


def mnist_root():
    """Return the default MNIST directory.

    ``$FWDDERIV_DATA_DIR/mnist``, or ``$FWDDERIV_DATA_DIR`` itself when it directly
    holds MNIST files; ``~/.cache/fwdderiv/data/mnist`` when the variable is unset.

    Returns
    -------
    path : pathlib.Path
    """
    base = default_data_dir()
    if os.environ.get("FWDDERIV_DATA_DIR") and any(
            find_mnist_files(base, split) for split in MNIST_FILES):
        return base
    return base / "mnist"


def find_mnist_files(root, split="test"):
    """Locate the images and labels files of a split.

    Looks in ``root`` and in ``root/MNIST/raw`` (torchvision's layout), preferring
    ``<name>.gz`` to the uncompressed ``<name>``.

    Parameters
    ----------
    root : str or os.PathLike
    split : {"test", "train"}

    Returns
    -------
    files : tuple of (pathlib.Path, pathlib.Path) or None
        ``(images, labels)``, or None unless both exist.
    """
    check_split(split, "load_mnist")
    return find_idx_pair(root, split, MNIST_SUBFOLDERS)


def load_mnist(root=None, split="test", download=False, mirrors=None, checksums=None,
               timeout=DOWNLOAD_TIMEOUT):
    """Load an MNIST split as float images in [0, 1] and integer labels.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Directory with the IDX files (``t10k-images-idx3-ubyte.gz`` etc., raw or
        ``.gz``; ``root/MNIST/raw`` is searched too). Default :func:`mnist_root`.
    split : {"test", "train"}
        ``"test"``: the 10,000 t10k images; ``"train"``: the 60,000 training images.
    download : bool, optional
        If True, download the split's missing files into ``root`` first (existing files
        are used as they are). Downloads are MD5-checked and written atomically.
    mirrors : sequence of str, optional
        Base URLs to try in order; default :data:`MNIST_MIRRORS`.
    checksums : dict of str to str, optional
        File name -> expected MD5; default :data:`MNIST_MD5`.
    timeout : float, optional
        Seconds per network connection or read.

    Returns
    -------
    x : ndarray of shape (N, 1, 28, 28), float32
        Grey levels divided by 255, so in [0, 1] (0 is background).
    y : ndarray of shape (N,), int64
        Digit labels 0..9.

    Raises
    ------
    FileNotFoundError
        If the files are missing and ``download`` is False.
    ValueError
        If a file is corrupt, truncated or mismatched (wrong magic number, image size,
        labels outside 0..9, image and label counts that differ).
    DownloadError
        If ``download`` is True and no mirror delivered a verified file.

    Examples
    --------
    >>> x, y = load_mnist("../shared/data/mnist")   # doctest: +SKIP
    >>> x.shape, y[:5]                              # doctest: +SKIP
    ((10000, 1, 28, 28), array([7, 2, 1, 0, 4]))
    """
    from .fashion_mnist import FASHION_MNIST_MD5    # its module imports this one

    root = mnist_root() if root is None else Path(root).expanduser()
    source = None
    if download:
        source = (MNIST_MIRRORS if mirrors is None else mirrors,
                  MNIST_MD5 if checksums is None else checksums, timeout)
    return load_idx_pair(root, split, "load_mnist", "MNIST", source, MNIST_SUBFOLDERS,
                         foreign=dict.fromkeys(FASHION_MNIST_MD5.values(), "Fashion-MNIST"))
