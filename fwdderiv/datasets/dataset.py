"""One entry point for the data sets fwdderiv trains and evaluates on."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .digits import load_digits
from .mnist import find_mnist_files, load_mnist, mnist_root
from .split import stratified_split

__all__ = ["DATASETS", "DIGITS_N_TEST", "DIGITS_SEED", "MNIST_T10K_TEST_FRACTION",
           "Dataset", "load_dataset"]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "mnist")
#: Size of the held-out part of the scikit-learn digits (1,797 = 1,497 + 300).
DIGITS_N_TEST = 300
#: Seed of the digits split; fixed so every run and every helper sees the same split.
DIGITS_SEED = 0
#: Held-out fraction when only the MNIST t10k files exist (10,000 -> 9,000 + 1,000).
MNIST_T10K_TEST_FRACTION = 0.1


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of image arrays with a name and a description.

    Attributes
    ----------
    x_train : ndarray of shape (N_train, 1, H, W), float32
        Training images in [0, 1].
    y_train : ndarray of shape (N_train,), int64
        Training labels.
    x_test : ndarray of shape (N_test, 1, H, W), float32
        Held-out images in [0, 1].
    y_test : ndarray of shape (N_test,), int64
        Held-out labels.
    name : str
        ``"digits"`` or ``"mnist"``.
    description : str
        Where the data came from and how it was split.
    """

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    name: str
    description: str

    def __post_init__(self):
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if np.ndim(x) != 4 or np.ndim(y) != 1 or len(x) != len(y):
                raise ValueError(
                    f"Dataset {self.name!r}: expected x_{part} of shape (N, C, H, W) and "
                    f"y_{part} of shape (N,), got {np.shape(x)} and {np.shape(y)}; give "
                    "one label per image and add a channel axis with x[:, None]")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"Dataset {self.name!r}: train images {self.x_train.shape[1:]} "
                             f"and test images {self.x_test.shape[1:]} differ in shape; "
                             "use the same image size for both")

    @property
    def n_classes(self):
        """int : Number of classes (largest label + 1)."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self):
        """tuple of int : Shape of one image, ``(1, H, W)``."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, train={self.x_train.shape}, "
                f"test={self.x_test.shape}, description={self.description!r})")


def _digits():
    x, y = load_digits()
    train, test = stratified_split(y, DIGITS_N_TEST, seed=DIGITS_SEED)
    description = (f"scikit-learn 8x8 digits, values 0..16 scaled to [0, 1]; stratified "
                   f"split {len(train)}/{len(test)} (seed {DIGITS_SEED})")
    return Dataset(x[train], y[train], x[test], y[test], "digits", description)


def _mnist(data_dir, download):
    root = mnist_root() if data_dir is None else Path(data_dir).expanduser()
    if download or find_mnist_files(root, "train") is not None:
        x_train, y_train = load_mnist(root, "train", download=download)
        x_test, y_test = load_mnist(root, "test", download=download)
        description = (f"MNIST train/test {len(y_train)}/{len(y_test)} from {root}")
        return Dataset(x_train, y_train, x_test, y_test, "mnist", description)
    x, y = load_mnist(root, "test")
    n_test = max(1, round(len(y) * MNIST_T10K_TEST_FRACTION))
    n_train = len(y) - n_test
    description = (f"MNIST t10k split {n_train}/{n_test} (no training files): first "
                   f"{n_train} test images for training, last {n_test} held out; from {root}")
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "mnist", description)


def load_dataset(name, data_dir=None, download=False):
    """Load a data set as a :class:`Dataset` with a fixed train/test split.

    ``"digits"``
        The scikit-learn 8x8 digits (offline, needs scikit-learn): 1,797 images of
        shape (1, 8, 8), split by :func:`stratified_split` into 1,497 training and 300
        held-out images with seed 0 (class proportions kept; the same split every run).
    ``"mnist"``
        28x28 MNIST from ``data_dir``. With the training files present: the standard
        60,000/10,000 split. With only the t10k files (as on the project machines):
        the first 9,000 of the 10,000 test images train, the last 1,000 are held out
        (in general the last 10%), and ``description`` says so.

    Parameters
    ----------
    name : {"digits", "mnist"}
        Case-insensitive.
    data_dir : str or os.PathLike, optional
        MNIST directory; default :func:`fwdderiv.datasets.mnist_root`. Ignored by
        ``"digits"``.
    download : bool, optional
        MNIST only: download the four standard files (MD5-checked) if missing.

    Returns
    -------
    dataset : Dataset

    Raises
    ------
    ValueError
        If ``name`` is unknown, or the files are invalid.
    TypeError
        If ``name`` is not a string.
    FileNotFoundError
        If MNIST files are missing and ``download`` is False.

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape, ds.x_test.shape
    ((1497, 1, 8, 8), (300, 1, 8, 8))
    """
    if not isinstance(name, str):
        raise TypeError(f"load_dataset: name must be a string, one of {list(DATASETS)}; "
                        f"got {type(name).__name__}")
    key = name.lower()
    if key == "digits":
        return _digits()
    if key == "mnist":
        return _mnist(data_dir, download)
    raise ValueError(f"load_dataset: unknown data set {name!r}; choose one of "
                     f"{list(DATASETS)} ('digits' needs no download)")
