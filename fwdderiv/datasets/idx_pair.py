"""Image/label pairs of IDX files: the layout MNIST and Fashion-MNIST share.

Both data sets ship four files with the same names (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz``): 28x28 uint8 images and uint8 labels 0..9. The functions
here find such a pair in a folder, download it (MD5-checked), and read and validate it;
:mod:`.mnist` and :mod:`.fashion_mnist` call them with their own names, checksums and
mirrors.
"""
from pathlib import Path

import numpy as np

from .download import download_file, md5sum
from .idx import read_idx

__all__ = ["IDX_PAIR_FILES", "IMAGES_MAGIC", "LABELS_MAGIC", "MAX_IDX_BYTES", "check_split",
           "find_idx_pair", "load_idx_pair"]

#: Magic number of an IDX file of uint8 images (3 dimensions).
IMAGES_MAGIC = 2051
#: Magic number of an IDX file of uint8 labels (1 dimension).
LABELS_MAGIC = 2049
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10

#: split -> (images file, labels file), without the ``.gz`` suffix.
IDX_PAIR_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: Largest IDX payload read (MNIST's training images are 47 MB); a header declaring
#: more is refused before anything is decompressed.
MAX_IDX_BYTES = 1 << 28


def check_split(split, who):
    """Raise a ValueError naming ``who`` unless ``split`` is "test" or "train"."""
    if split not in IDX_PAIR_FILES:
        raise ValueError(f"{who}: split must be one of {sorted(IDX_PAIR_FILES)}, got "
                         f"{split!r}; 'test' is the 10,000-image t10k set")


def _find(root, stem, subfolders):
    for folder in (root, *(root / s for s in subfolders)):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def find_idx_pair(root, split, subfolders=()):
    """``(images, labels)`` paths of ``split`` in ``root`` (or one of its ``subfolders``,
    such as torchvision's ``MNIST/raw``), ``<name>.gz`` before ``<name>``; None unless both
    exist."""
    found = tuple(_find(Path(root), stem, subfolders) for stem in IDX_PAIR_FILES[split])
    return found if all(found) else None


def _download(root, split, source, subfolders):
    mirrors, checksums, timeout = source
    for stem in IDX_PAIR_FILES[split]:
        if _find(root, stem, subfolders) is not None:
            continue
        name = stem + ".gz"
        if name not in checksums:
            raise ValueError(f"no checksum for {name} in checksums= (has "
                             f"{sorted(checksums)}); add its MD5 to verify the download")
        download_file(name, root, mirrors, checksums[name], timeout=timeout)


def _refuse_foreign(paths, title, foreign):
    """Refuse files whose MD5 is the published one of another data set with the same file
    names (MNIST given as Fashion-MNIST, or the reverse)."""
    for path in paths:
        if path.suffix == ".gz" and foreign:
            other = foreign.get(md5sum(path))
            if other:
                raise ValueError(f"{title} file {path} is the {other} file of that name (its "
                                 f"MD5 is {other}'s published one); the two data sets use the "
                                 f"same file names: point data_dir at the {title} folder")


def _validate(images, labels, paths, title):
    images_path, labels_path = paths
    if images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{title} images file {images_path}: expected images of "
                         f"{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} pixels, got "
                         f"{images.shape[1]}x{images.shape[2]}; is this {title}?")
    if len(images) != len(labels):
        raise ValueError(
            f"{title} files disagree: {images_path} holds {len(images)} images but "
            f"{labels_path} holds {len(labels)} labels; the two files belong to different "
            "splits or versions: use the matching pair")
    if len(images) == 0:
        raise ValueError(f"{title} images file {images_path} holds no images; replace it "
                         "with a good copy")
    bad = np.flatnonzero(labels >= N_CLASSES)
    if bad.size:
        raise ValueError(
            f"{title} labels file {labels_path}: labels must be 0..9, found {labels[bad[0]]} "
            f"at index {bad[0]} ({bad.size} such labels); the file is corrupt: replace it")


def load_idx_pair(root, split, who, title, source=None, subfolders=(), foreign=None):
    """Read (downloading first if asked) the IDX image/label pair of ``split`` in ``root``.

    Parameters
    ----------
    root : pathlib.Path
    split : {"test", "train"}
    who : str
        The public function, for messages (``"load_mnist"``).
    title : str
        The data set, for messages (``"MNIST"``, ``"Fashion-MNIST"``).
    source : tuple of (mirrors, checksums, timeout), optional
        Download the split's missing files from these mirrors first, each checked against
        its MD5 in ``checksums``; None reads only what is there.
    subfolders : sequence of str
        Other places below ``root`` to look in (torchvision's layout).
    foreign : dict of str to str, optional
        MD5 -> name of another data set whose files have the same names: such a file is
        refused.

    Returns
    -------
    x : ndarray of shape (N, 1, 28, 28), float32
        Grey levels divided by 255.
    y : ndarray of shape (N,), int64
        Labels 0..9.
    """
    check_split(split, who)
    if source is not None:
        try:
            _download(root, split, source, subfolders)
        except ValueError as err:
            raise ValueError(f"{who}: {err}") from None
    files = find_idx_pair(root, split, subfolders)
    if files is None:
        names = " and ".join(f"{stem}[.gz]" for stem in IDX_PAIR_FILES[split])
        raise FileNotFoundError(
            f"{who}: {title} {split} files not found: expected {names} in {root}; "
            f"pass root= the directory holding them, set FWDDERIV_DATA_DIR, or call "
            f"{who}(root, split={split!r}, download=True)")
    _refuse_foreign(files, title, foreign)
    images = read_idx(files[0], expected_magic=IMAGES_MAGIC, max_bytes=MAX_IDX_BYTES)
    labels = read_idx(files[1], expected_magic=LABELS_MAGIC, max_bytes=MAX_IDX_BYTES)
    _validate(images, labels, files, title)
    x = images.reshape(len(images), 1, *IMAGE_SHAPE).astype(np.float32)
    x /= np.float32(255)
    return x, labels.astype(np.int64)
