"""One entry point for the data sets fwdderiv trains and evaluates on."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cifar10 import cifar10_classes, cifar10_root, find_cifar10_files, load_cifar10
from .digits import load_digits
from .fashion_mnist import (FASHION_MNIST_CLASSES, fashion_mnist_root,
                            find_fashion_mnist_files, load_fashion_mnist)
from .folder import DEFAULT_IMAGE_SIZE, FLOWERS_FOLDER, download_flowers, load_image_folder
from .mnist import default_data_dir, find_mnist_files, load_mnist, mnist_root
from .split import stratified_split

__all__ = ["DATASETS", "DIGITS_N_TEST", "DIGITS_SEED", "FOLDER_SEED", "FOLDER_TEST_FRACTION",
           "MNIST_T10K_TEST_FRACTION", "Dataset", "load_dataset"]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "folder")
#: Size of the held-out part of the scikit-learn digits (1,797 = 1,497 + 300).
DIGITS_N_TEST = 300
#: Seed of the digits split; fixed so every run and every helper sees the same split.
DIGITS_SEED = 0
#: Held-out fraction when only the test files exist (MNIST and Fashion-MNIST t10k:
#: 10,000 -> 9,000 + 1,000; CIFAR-10's test_batch.bin likewise).
MNIST_T10K_TEST_FRACTION = 0.1
#: Held-out fraction of an image folder, split per class (3,670 flower photos -> 2,936 +
#: 734).
FOLDER_TEST_FRACTION = 0.2
#: Seed of an image folder's stratified split.
FOLDER_SEED = 0
#: Class names of the digit data sets (the digits and MNIST).
DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of image arrays with a name, a description and class names.

    Attributes
    ----------
    x_train : ndarray of shape (N_train, C, H, W), float32
        Training images in [0, 1]: one channel (grey) for the digits, MNIST and
        Fashion-MNIST, three (RGB) for CIFAR-10 and colour photo folders.
    y_train : ndarray of shape (N_train,), int64
        Training labels.
    x_test : ndarray of shape (N_test, C, H, W), float32
        Held-out images in [0, 1].
    y_test : ndarray of shape (N_test,), int64
        Held-out labels.
    name : str
        One of :data:`DATASETS`.
    description : str
        Where the data came from and how it was split.
    classes : tuple of str
        The name of each label, ``classes[y]``; by default the labels' digits ``"0"``,
        ``"1"``, ... up to the largest label.
    """

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    name: str
    description: str
    classes: tuple = ()

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
        top = int(max(np.max(self.y_train, initial=-1), np.max(self.y_test, initial=-1)))
        classes = tuple(str(c) for c in self.classes) or tuple(str(k) for k in range(top + 1))
        if top >= len(classes):
            raise ValueError(f"Dataset {self.name!r}: {len(classes)} class names for labels up "
                             f"to {top}; give one name per class, classes[label]")
        object.__setattr__(self, "classes", classes)

    @property
    def n_classes(self):
        """int : Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def input_shape(self):
        """tuple of int : Shape of one image, ``(C, H, W)``."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, train={self.x_train.shape}, "
                f"test={self.x_test.shape}, description={self.description!r})")


def _digits():
    x, y = load_digits()
    train, test = stratified_split(y, DIGITS_N_TEST, seed=DIGITS_SEED)
    description = (f"scikit-learn 8x8 digits, values 0..16 scaled to [0, 1]; stratified "
                   f"split {len(train)}/{len(test)} (seed {DIGITS_SEED})")
    return Dataset(x[train], y[train], x[test], y[test], "digits", description, DIGIT_CLASSES)


def _split_test_files(name, title, x, y, root, classes, what="t10k"):
    """The data set from its test files only: the first 90% train, the last 10% held out."""
    n_test = max(1, round(len(y) * MNIST_T10K_TEST_FRACTION))
    n_train = len(y) - n_test
    description = (f"{title} {what} split {n_train}/{n_test} (no training files): first "
                   f"{n_train} test images for training, last {n_test} held out; from {root}")
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], name, description,
                   classes)


def _idx(name, data_dir, download):
    """MNIST or Fashion-MNIST: the standard split with the training files, else the t10k
    split."""
    title, default, find, load, classes = {
        "mnist": ("MNIST", mnist_root, find_mnist_files, load_mnist, DIGIT_CLASSES),
        "fashion-mnist": ("Fashion-MNIST", fashion_mnist_root, find_fashion_mnist_files,
                          load_fashion_mnist, FASHION_MNIST_CLASSES)}[name]
    root = default() if data_dir is None else Path(data_dir).expanduser()
    if download or find(root, "train") is not None:
        x_train, y_train = load(root, "train", download=download)
        x_test, y_test = load(root, "test", download=download)
        description = f"{title} train/test {len(y_train)}/{len(y_test)} from {root}"
        return Dataset(x_train, y_train, x_test, y_test, name, description, classes)
    x, y = load(root, "test")
    return _split_test_files(name, title, x, y, root, classes)


def _cifar10(data_dir, download):
    root = cifar10_root() if data_dir is None else Path(data_dir).expanduser()
    x, y = load_cifar10(root, "test", download=download)
    classes = cifar10_classes(root)
    if find_cifar10_files(root, "train") is None:
        return _split_test_files("cifar10", "CIFAR-10", x, y, root, classes, "test_batch")
    x_train, y_train = load_cifar10(root, "train")
    description = f"CIFAR-10 train/test {len(y_train)}/{len(y)} from {root}"
    return Dataset(x_train, y_train, x, y, "cifar10", description, classes)


def _folder(data_dir, download, options):
    image_size = options.get("image_size") or DEFAULT_IMAGE_SIZE
    channels = options.get("channels") or 3
    fraction = options.get("test_fraction")
    fraction = FOLDER_TEST_FRACTION if fraction is None else fraction
    seed = FOLDER_SEED if options.get("seed") is None else options["seed"]
    if download not in (False, None, "flowers"):
        raise ValueError(f"load_dataset('folder'): download must be 'flowers' (TensorFlow's "
                         f"flower photos) or False, got {download!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"load_dataset('folder'): test_fraction must be between 0 and 1, "
                         f"got {fraction!r}; e.g. 0.2 holds out a fifth of each class")
    if download == "flowers":
        root = Path(download_flowers(data_dir))
    elif data_dir is not None:
        root = Path(data_dir).expanduser()
    elif (default_data_dir() / FLOWERS_FOLDER).is_dir():
        root = default_data_dir() / FLOWERS_FOLDER
    else:
        raise ValueError("load_dataset('folder'): pass data_dir=, the folder that holds one "
                         "sub-folder per class, or download='flowers' for TensorFlow's flower "
                         "photos")
    x, y, classes, skipped = load_image_folder(root, image_size, channels,
                                               strict=bool(options.get("strict")))
    if len(y) < 2:
        raise ValueError(f"image folder {root}: {len(y)} usable image; a train/test split "
                         "needs at least 2")
    n_test = min(max(1, round(len(y) * fraction)), len(y) - 1)
    train, test = stratified_split(y, n_test, seed=seed)
    description = (f"image folder {root.name} ({len(y)} images, {len(classes)} classes) "
                   f"decoded at {image_size[0]}x{image_size[1]} "
                   f"({'RGB' if channels == 3 else 'grey'}); stratified split "
                   f"{len(train)}/{len(test)} (seed {seed})"
                   + (f"; {len(skipped)} unreadable files skipped" if skipped else "")
                   + f"; from {root}")
    return Dataset(x[train], y[train], x[test], y[test], "folder", description, classes)


_FOLDER_OPTIONS = ("image_size", "channels", "test_fraction", "seed", "strict")


def load_dataset(name, data_dir=None, download=False, **options):
    """Load a data set as a :class:`Dataset` with a fixed train/test split.

    ``"digits"``
        scikit-learn's 8x8 digits (offline): 1,497 training and 300 held-out images,
        split per class by :func:`stratified_split` with seed 0.
    ``"mnist"``, ``"fashion-mnist"``
        28x28 grey images from the four IDX files: 60,000/10,000, or with only the t10k
        files the first 9,000 train and the last 1,000 are held out (``description`` says
        so). Fashion-MNIST's classes are named (``"T-shirt/top"``, ..., ``"Ankle boot"``).
    ``"cifar10"``
        3x32x32 colour images from the binary files (:func:`load_cifar10`): 50,000/10,000,
        or a 90%/10% split of ``test_batch.bin`` alone. The pickled version is refused.
    ``"folder"``
        Photos in ``data_dir``, one sub-folder per class (:func:`load_image_folder`),
        split per class; ``download="flowers"`` fetches TensorFlow's flower photos into
        ``data_dir`` and reads ``data_dir/flower_photos``.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion-mnist", "cifar10", "folder"}
        Case-insensitive.
    data_dir : str or os.PathLike, optional
        The data set's folder; default ``mnist_root()``, ``default_data_dir() /
        "fashion-mnist"`` or ``/ "cifar10"``; for ``"folder"``, ``default_data_dir() /
        "flower_photos"`` when it exists. Ignored by ``"digits"``.
    download : bool or "flowers", optional
        Download the missing files (MD5- or SHA-256-checked); ``"folder"`` takes
        ``"flowers"``.
    **options
        ``"folder"`` only: ``image_size=(H, W)`` (default (64, 64)), ``channels`` (3 or
        1), ``test_fraction`` (default :data:`FOLDER_TEST_FRACTION`), ``seed`` (default
        0), ``strict`` (raise on an unreadable image instead of skipping it with a
        :class:`~fwdderiv.datasets.folder.SkippedImageWarning`).

    Returns
    -------
    dataset : Dataset

    Raises
    ------
    ValueError
        If ``name`` is unknown, an option does not apply, or the files are invalid.
    TypeError
        If ``name`` is not a string, or an unknown option is given.
    FileNotFoundError
        If files are missing and ``download`` is False.

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape, ds.x_test.shape, ds.classes[:3]
    ((1497, 1, 8, 8), (300, 1, 8, 8), ('0', '1', '2'))
    """
    if not isinstance(name, str):
        raise TypeError(f"load_dataset: name must be a string, one of {list(DATASETS)}; "
                        f"got {type(name).__name__}")
    key = name.lower()
    unknown = sorted(set(options) - set(_FOLDER_OPTIONS))
    if unknown:
        raise TypeError(f"load_dataset: unknown option {unknown[0]!r}; the options are "
                        f"{list(_FOLDER_OPTIONS)} (for 'folder')")
    given = [k for k, v in options.items() if v is not None and v is not False]
    if key in DATASETS and key != "folder" and given:
        raise ValueError(f"load_dataset: {given[0]}= applies to the 'folder' data set, not "
                         f"{key!r}; drop it")
    if key == "digits":
        return _digits()
    if key in ("mnist", "fashion-mnist"):
        return _idx(key, data_dir, download)
    if key == "cifar10":
        return _cifar10(data_dir, download)
    if key == "folder":
        return _folder(data_dir, download, options)
    raise ValueError(f"load_dataset: unknown data set {name!r}; choose one of "
                     f"{list(DATASETS)} ('digits' needs no download)")
