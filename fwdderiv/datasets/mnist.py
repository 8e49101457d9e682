"""MNIST from IDX files, with optional checksummed download.

MNIST (Y. LeCun, C. Cortes, C. J. C. Burges; http://yann.lecun.com/exdb/mnist/,
CC BY-SA 3.0) is 60,000 training and 10,000 test images of handwritten digits,
28x28 grey levels, in four IDX files. :func:`load_mnist` reads them from a directory,
raw or gzip-compressed, validates them, and can download the gzip files first.
"""
import os
from pathlib import Path

import numpy as np

from .download import DOWNLOAD_TIMEOUT, download_file
from .idx import read_idx

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "MNIST_FILES", "MNIST_MD5", "MNIST_MIRRORS",
           "default_data_dir", "find_mnist_files", "load_mnist", "mnist_root"]

#: Magic number of an IDX file of uint8 images (3 dimensions).
IMAGES_MAGIC = 2051
#: Magic number of an IDX file of uint8 labels (1 dimension).
LABELS_MAGIC = 2049
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10

#: split -> (images file, labels file), without the ``.gz`` suffix.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

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


#: Largest IDX payload load_mnist reads (the training images are 47 MB); a header
#: declaring more is refused before anything is decompressed.
MAX_IDX_BYTES = 1 << 28


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


def _find(root, stem):
    for folder in (root, root / "MNIST" / "raw"):  # ours, then torchvision's layout
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


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
    _check_split(split)
    found = tuple(_find(Path(root), stem) for stem in MNIST_FILES[split])
    return found if all(found) else None


def _check_split(split):
    if split not in MNIST_FILES:
        raise ValueError(f"load_mnist: split must be one of {sorted(MNIST_FILES)}, got "
                         f"{split!r}; 'test' is the 10,000-image t10k set")


def _download(root, split, mirrors, checksums, timeout):
    for stem in MNIST_FILES[split]:
        if _find(root, stem) is not None:
            continue
        name = stem + ".gz"
        if name not in checksums:
            raise ValueError(f"load_mnist: no checksum for {name} in checksums= (has "
                             f"{sorted(checksums)}); add its MD5 to verify the download")
        download_file(name, root, mirrors, checksums[name], timeout=timeout)


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
    _check_split(split)
    root = mnist_root() if root is None else Path(root).expanduser()
    if download:
        _download(root, split, MNIST_MIRRORS if mirrors is None else mirrors,
                  MNIST_MD5 if checksums is None else checksums, timeout)
    files = find_mnist_files(root, split)
    if files is None:
        names = " and ".join(f"{stem}[.gz]" for stem in MNIST_FILES[split])
        raise FileNotFoundError(
            f"load_mnist: MNIST {split} files not found: expected {names} in {root}; "
            f"pass root= the directory holding them, set FWDDERIV_DATA_DIR, or call "
            f"load_mnist(root, split={split!r}, download=True)")
    images_path, labels_path = files
    images = read_idx(images_path, expected_magic=IMAGES_MAGIC, max_bytes=MAX_IDX_BYTES)
    labels = read_idx(labels_path, expected_magic=LABELS_MAGIC, max_bytes=MAX_IDX_BYTES)
    if images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"MNIST images file {images_path}: expected images of "
                         f"{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} pixels, got "
                         f"{images.shape[1]}x{images.shape[2]}; is this MNIST?")
    if len(images) != len(labels):
        raise ValueError(
            f"MNIST files disagree: {images_path} holds {len(images)} images but "
            f"{labels_path} holds {len(labels)} labels; the two files belong to different "
            "splits or versions: use the matching pair")
    if len(images) == 0:
        raise ValueError(f"MNIST images file {images_path} holds no images; replace it "
                         "with a good copy")
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        raise ValueError(
            f"MNIST labels file {labels_path}: labels must be 0..9, found {labels[bad[0]]} "
            f"at index {bad[0]} ({bad.size} such labels); the file is corrupt: replace it")
    x = images.reshape(len(images), 1, *IMAGE_SHAPE).astype(np.float32)
    x /= np.float32(255)
    return x, labels.astype(np.int64)
