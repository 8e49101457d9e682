"""Fashion-MNIST from IDX files, with optional checksummed download.

Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms", 2017; github.com/zalandoresearch/fashion-mnist,
MIT licence) is 60,000 training and 10,000 test images of clothing, 28x28 grey levels, in
ten classes. It is a drop-in replacement for MNIST: the same four IDX files with the same
names, read and validated by the same code (:mod:`.idx_pair`).
"""
from pathlib import Path

from .download import DOWNLOAD_TIMEOUT
from .idx_pair import check_split, find_idx_pair, load_idx_pair
from .mnist import MNIST_MD5, default_data_dir

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_MD5", "FASHION_MNIST_MIRRORS",
           "fashion_mnist_root", "find_fashion_mnist_files", "load_fashion_mnist"]

#: Class names by label, as listed in Zalando's README.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

#: MD5 of the four gzip files as distributed. Source: the table in the README of
#: github.com/zalandoresearch/fashion-mnist; torchvision's ``FashionMNIST.resources``
#: lists the same digests.
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

#: Base URLs tried in order: Zalando's S3 website (the one torchvision uses), then the
#: copy in the project's GitHub repository.
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

#: torchvision's layout below a root folder.
FASHION_MNIST_SUBFOLDERS = ("FashionMNIST/raw",)


def fashion_mnist_root():
    """Return the default Fashion-MNIST directory, ``default_data_dir() / "fashion-mnist"``
    (``$FWDDERIV_DATA_DIR/fashion-mnist`` or ``~/.cache/fwdderiv/data/fashion-mnist``).

    Returns
    -------
    path : pathlib.Path
    """
    return default_data_dir() / "fashion-mnist"


def find_fashion_mnist_files(root, split="test"):
    """Locate the images and labels files of a split in ``root`` or
    ``root/FashionMNIST/raw`` (torchvision's layout), ``.gz`` first.

    Parameters
    ----------
    root : str or os.PathLike
    split : {"test", "train"}

    Returns
    -------
    files : tuple of (pathlib.Path, pathlib.Path) or None
        ``(images, labels)``, or None unless both exist.
    """
    check_split(split, "load_fashion_mnist")
    return find_idx_pair(root, split, FASHION_MNIST_SUBFOLDERS)


def load_fashion_mnist(root=None, split="test", download=False, mirrors=None,
                       checksums=None, timeout=DOWNLOAD_TIMEOUT):
    """Load a Fashion-MNIST split as float images in [0, 1] and integer labels.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Directory with the IDX files (``t10k-images-idx3-ubyte.gz`` etc., raw or
        ``.gz``; ``root/FashionMNIST/raw`` is searched too). Default
        :func:`fashion_mnist_root`.
    split : {"test", "train"}
        ``"test"``: the 10,000 t10k images; ``"train"``: the 60,000 training images.
    download : bool, optional
        Download the split's missing files into ``root`` first, MD5-checked, written
        atomically.
    mirrors : sequence of str, optional
        Base URLs to try in order; default :data:`FASHION_MNIST_MIRRORS`.
    checksums : dict of str to str, optional
        File name -> expected MD5; default :data:`FASHION_MNIST_MD5`.
    timeout : float, optional
        Seconds per network connection or read.

    Returns
    -------
    x : ndarray of shape (N, 1, 28, 28), float32
        Grey levels divided by 255, so in [0, 1] (0 is background).
    y : ndarray of shape (N,), int64
        Labels 0..9, named by :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    FileNotFoundError
        If the files are missing and ``download`` is False.
    ValueError
        If a file is corrupt, truncated or mismatched, or is the MNIST file of the same
        name (the two data sets share file names; recognised by MNIST's published MD5).
    DownloadError
        If ``download`` is True and no mirror delivered a verified file.

    Examples
    --------
    >>> x, y = load_fashion_mnist("~/data/fashion-mnist")   # doctest: +SKIP
    >>> x.shape, FASHION_MNIST_CLASSES[y[0]]                 # doctest: +SKIP
    ((10000, 1, 28, 28), 'Ankle boot')
    """
    root = fashion_mnist_root() if root is None else Path(root).expanduser()
    source = None
    if download:
        source = (FASHION_MNIST_MIRRORS if mirrors is None else mirrors,
                  FASHION_MNIST_MD5 if checksums is None else checksums, timeout)
    return load_idx_pair(root, split, "load_fashion_mnist", "Fashion-MNIST", source,
                         FASHION_MNIST_SUBFOLDERS,
                         foreign=dict.fromkeys(MNIST_MD5.values(), "MNIST"))
