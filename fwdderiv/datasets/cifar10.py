"""CIFAR-10 from its binary distribution, with optional checksummed download.

CIFAR-10 (A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009;
https://www.cs.toronto.edu/~kriz/cifar.html) is 50,000 training and 10,000 test colour
images of 32x32 pixels in ten classes. Its *binary version* (``cifar-10-binary.tar.gz``)
holds the folder ``cifar-10-batches-bin/`` with ``data_batch_1.bin`` ...
``data_batch_5.bin`` and ``test_batch.bin``, each a run of 3,073-byte records (one label
byte, then 1,024 red, 1,024 green and 1,024 blue bytes, rows top to bottom), and
``batches.meta.txt`` with the class names, one a line. fwdderiv reads only that version:
the "Python version" is a set of pickles, and unpickling a file runs whatever code it
names, so it is refused with a pointer to the binary one.
"""
from pathlib import Path

import numpy as np

from .archive import extract_tar
from .download import DOWNLOAD_TIMEOUT, digest_arguments, download_file, file_matches
from .mnist import default_data_dir

__all__ = ["CIFAR10_ARCHIVE", "CIFAR10_CLASSES", "CIFAR10_MD5", "CIFAR10_MIRRORS",
           "RECORD_BYTES", "cifar10_classes", "cifar10_root", "find_cifar10_files",
           "load_cifar10"]

#: Class names by label, as in ``batches.meta.txt``.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
#: The archive of the binary version.
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
#: MD5 of the archive, as published on https://www.cs.toronto.edu/~kriz/cifar.html
#: ("CIFAR-10 binary version (suitable for C programs)").
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
#: Size of that archive in bytes (170,052,171); a mirror sending more is cut off.
CIFAR10_SIZE = 170_052_171
#: Base URLs of the archive, tried in order.
CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
#: The folder the archive holds.
CIFAR10_FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
#: The files of ``cifar-10-batches-bin/``; an archive holding anything else is refused.
ARCHIVE_MEMBERS = frozenset(TRAIN_FILES + (TEST_FILE, META_FILE, "readme.html"))
#: One record: a label byte and a 3x32x32 image, channel by channel.
RECORD_BYTES = 1 + 3 * 32 * 32
#: Largest number of records read from one file (the standard files hold 10,000).
MAX_RECORDS = 60_000

_PICKLED_HINT = ("fwdderiv never unpickles files (loading a pickle runs whatever code it "
                 "names): download the binary version, cifar-10-binary.tar.gz from "
                 "https://www.cs.toronto.edu/~kriz/cifar.html, into {root} (or pass "
                 "download=True / --download), and remove the Python version")


def cifar10_root():
    """Return the default CIFAR-10 directory, ``default_data_dir() / "cifar10"``.

    Returns
    -------
    path : pathlib.Path
    """
    return default_data_dir() / "cifar10"


def _folder(root):
    """The folder holding the .bin files: ``root`` or ``root/cifar-10-batches-bin``."""
    for folder in (root, root / CIFAR10_FOLDER):
        if any((folder / name).is_file() for name in TRAIN_FILES + (TEST_FILE,)):
            return folder
    return None


def find_cifar10_files(root, split="test"):
    """The .bin files of a split in ``root`` or ``root/cifar-10-batches-bin``.

    Parameters
    ----------
    root : str or os.PathLike
    split : {"test", "train"}

    Returns
    -------
    files : list of pathlib.Path or None
        ``[test_batch.bin]`` or the five ``data_batch_*.bin``; None if none exists.

    Raises
    ------
    ValueError
        If some but not all five training files exist.
    """
    _check_split(split)
    folder = _folder(Path(root).expanduser())
    if folder is None:
        return None
    names = TRAIN_FILES if split == "train" else (TEST_FILE,)
    have = [folder / n for n in names if (folder / n).is_file()]
    if have and len(have) < len(names):
        missing = [n for n in names if not (folder / n).is_file()]
        raise ValueError(f"CIFAR-10 folder {folder} holds only part of the training set: "
                         f"{', '.join(missing)} missing; extract the whole archive again, or "
                         "remove the data_batch files to train on part of test_batch.bin")
    return have or None


def _check_split(split):
    if split not in ("test", "train"):
        raise ValueError(f"load_cifar10: split must be one of ['test', 'train'], got "
                         f"{split!r}; 'test' is the 10,000-image test_batch.bin")


def _refuse_pickled(root):
    """Raise if ``root`` holds the pickled Python version of CIFAR-10."""
    signs = [root / "cifar-10-batches-py", root / "cifar-10-python.tar.gz",
             root / "data_batch_1", root / "test_batch"]
    found = [p for p in signs if p.exists()]
    if found:
        raise ValueError(f"CIFAR-10 in {root} is the pickled Python version ({found[0]}); "
                         + _PICKLED_HINT.format(root=root))


def _obtain(root, download, mirrors, checksum, timeout):
    """Extract the binary archive in ``root`` (downloading it first if asked and missing)
    unless the .bin files are there already."""
    if _folder(root) is not None:
        return
    archive = root / CIFAR10_ARCHIVE
    if not archive.is_file():
        if not download:
            _refuse_pickled(root)
            raise FileNotFoundError(
                f"load_cifar10: no CIFAR-10 binary files in {root}: expected {TEST_FILE} "
                f"(and data_batch_1.bin ... data_batch_5.bin) there or in {CIFAR10_FOLDER}/, "
                f"or the archive {CIFAR10_ARCHIVE}; point data_dir at that folder, set "
                "FWDDERIV_DATA_DIR, or pass download=True")
        download_file(CIFAR10_ARCHIVE, root, CIFAR10_MIRRORS if mirrors is None else mirrors,
                      timeout=timeout, size=CIFAR10_SIZE if checksum is None else None,
                      **digest_arguments(CIFAR10_MD5 if checksum is None else checksum))
    elif not file_matches(archive, CIFAR10_MD5 if checksum is None else checksum):
        raise ValueError(f"CIFAR-10 archive {archive}: its checksum is not the expected "
                         f"{CIFAR10_MD5 if checksum is None else checksum}; it is damaged or "
                         "another file: delete it and download it again")
    extract_tar(archive, root, CIFAR10_FOLDER, accept=lambda rel: rel in ARCHIVE_MEMBERS)


def read_cifar10_batch(path):
    """Read one binary batch file: ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``,
    validated (size a multiple of 3,073 bytes, labels 0..9)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or size % RECORD_BYTES:
        raise ValueError(f"CIFAR-10 file {path}: {size} bytes is not a whole number of "
                         f"{RECORD_BYTES}-byte records (1 label byte + 3x32x32 pixels); "
                         "the file is truncated or not a CIFAR-10 binary batch: extract "
                         "it again from cifar-10-binary.tar.gz")
    if size // RECORD_BYTES > MAX_RECORDS:
        raise ValueError(f"CIFAR-10 file {path}: {size // RECORD_BYTES} records, more than "
                         f"the {MAX_RECORDS} a batch file may hold (10,000 in each standard "
                         "file); it is not a CIFAR-10 binary batch")
    records = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= len(CIFAR10_CLASSES))
    if bad.size:
        raise ValueError(f"CIFAR-10 file {path}: labels must be 0..9, found {labels[bad[0]]} "
                         f"in record {bad[0]} ({bad.size} such records); the file is corrupt "
                         "or not CIFAR-10 (CIFAR-100's files have two label bytes)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(root=None, split="test", download=False, mirrors=None, checksum=None,
                 timeout=DOWNLOAD_TIMEOUT):
    """Load a CIFAR-10 split from the binary distribution as float images in [0, 1].

    Parameters
    ----------
    root : str or os.PathLike, optional
        The folder holding the ``.bin`` files, or its parent (with
        ``cifar-10-batches-bin/`` inside, or the archive ``cifar-10-binary.tar.gz``,
        which is then checked and extracted). Default :func:`cifar10_root`.
    split : {"test", "train"}
        ``"test"``: the 10,000 images of ``test_batch.bin``; ``"train"``: the 50,000 of
        ``data_batch_1.bin`` ... ``data_batch_5.bin``.
    download : bool, optional
        Download the archive into ``root`` first when no ``.bin`` files are there
        (checked against :data:`CIFAR10_MD5` and its size, written atomically), then
        extract it safely (:func:`fwdderiv.datasets.archive.extract_tar`). The archive is
        kept beside the folder.
    mirrors : sequence of str, optional
        Base URLs; default :data:`CIFAR10_MIRRORS`.
    checksum : str, optional
        Expected MD5 (or SHA-256) of the archive; default :data:`CIFAR10_MD5`.
    timeout : float, optional
        Seconds per network connection or read.

    Returns
    -------
    x : ndarray of shape (N, 3, 32, 32), float32
        RGB values divided by 255.
    y : ndarray of shape (N,), int64
        Labels 0..9, named by :func:`cifar10_classes`.

    Raises
    ------
    FileNotFoundError
        If neither the files nor the archive are there and ``download`` is False.
    ValueError
        If a file is truncated or corrupt, the archive holds anything unexpected, or the
        folder holds the pickled Python version (never unpickled).
    DownloadError
        If ``download`` is True and no mirror delivered the verified archive.

    Examples
    --------
    >>> x, y = load_cifar10("~/data/cifar10")         # doctest: +SKIP
    >>> x.shape, cifar10_classes("~/data/cifar10")[y[0]]   # doctest: +SKIP
    ((10000, 3, 32, 32), 'cat')
    """
    _check_split(split)
    root = cifar10_root() if root is None else Path(root).expanduser()
    _obtain(root, download, mirrors, checksum, timeout)
    files = find_cifar10_files(root, split)
    if files is None:
        want = ", ".join(TRAIN_FILES if split == "train" else (TEST_FILE,))
        raise FileNotFoundError(f"load_cifar10: no CIFAR-10 {split} files in {_folder(root)}; "
                                f"expected {want}: extract the whole archive again")
    counts = [f.stat().st_size // RECORD_BYTES for f in files]
    x = np.empty((sum(counts), 3, 32, 32), dtype=np.float32)   # filled file by file
    y = np.empty(sum(counts), dtype=np.int64)
    start = 0
    for path in files:
        images, labels = read_cifar10_batch(path)
        x[start:start + len(labels)] = images
        y[start:start + len(labels)] = labels
        start += len(labels)
    x /= np.float32(255)
    return x, y


def cifar10_classes(root=None):
    """The class names: the lines of ``batches.meta.txt`` when the folder has it (ten
    non-empty lines), else :data:`CIFAR10_CLASSES`.

    Parameters
    ----------
    root : str or os.PathLike, optional
        As in :func:`load_cifar10`.

    Returns
    -------
    classes : tuple of str
    """
    root = cifar10_root() if root is None else Path(root).expanduser()
    folder = _folder(root)
    meta = None if folder is None else folder / META_FILE
    if meta is None or not meta.is_file():
        return CIFAR10_CLASSES
    with open(meta, "rb") as f:
        raw = f.read(4097)
    try:
        names = tuple(n.strip() for n in raw.decode("utf-8").splitlines() if n.strip())
    except UnicodeDecodeError:
        names = ()
    if len(raw) > 4096 or len(names) != len(CIFAR10_CLASSES) or \
            any(len(n) > 64 or not n.isprintable() for n in names):
        raise ValueError(f"CIFAR-10 class names file {meta}: expected ten short names, one a "
                         f"line; the file is damaged: delete it to use the standard names")
    return names
