"""A folder of photos with one sub-folder per class, decoded with Pillow.

The layout of torchvision's ``ImageFolder`` and of TensorFlow's ``flower_photos``
archive::

    root/daisy/100080576_f52e8ee070_n.jpg
    root/daisy/...
    root/roses/...

The class names are the sub-folders' names, sorted; their positions are the labels. Files
ending in .jpg, .jpeg, .png, .bmp, .gif or .webp (any case) anywhere below a class folder
are images; hidden files and folders (a leading dot) and files directly in ``root`` are
ignored. Each image is decoded on its own, converted to RGB or grey, resized (bilinear)
and written into one preallocated array, so memory holds the result and one photo.

Photos from elsewhere are not trusted: an image whose header declares more than
:data:`MAX_PIXELS` pixels (a decompression bomb) is refused before it is decoded, and a
truncated or unreadable file is reported on one line that names it. By default such files
are skipped with one :class:`SkippedImageWarning` listing them all (a stray bad file
among thousands of photos should not stop a run); ``strict=True`` raises at the first.
Pillow is an optional dependency: ``pip install fwdderiv[images]``.
"""
import os
import warnings
from pathlib import Path

import numpy as np

from .archive import extract_tar
from .download import DOWNLOAD_TIMEOUT, digest_arguments, download_file, file_matches
from .mnist import default_data_dir

__all__ = ["DEFAULT_IMAGE_SIZE", "FLOWERS_ARCHIVE", "FLOWERS_CLASSES", "FLOWERS_MIRRORS",
           "FLOWERS_SHA256", "IMAGE_EXTENSIONS", "ImageError", "MAX_PIXELS",
           "SkippedImageWarning", "decode_image", "download_flowers", "find_images",
           "load_image_folder"]

#: File name endings read as images (compared in lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
#: Largest image accepted, in pixels (width x height, as its header declares): 64
#: megapixels, several times a phone photo; a header claiming more is refused unread.
MAX_PIXELS = 64_000_000
#: (H, W) images are decoded at when no size is given (the input of ``photo_cnn``).
DEFAULT_IMAGE_SIZE = (64, 64)

#: TensorFlow's flower photos: 3,670 JPEGs of five classes (CC-BY licences listed in
#: the archive's LICENSE.txt).
FLOWERS_ARCHIVE = "flower_photos.tgz"
FLOWERS_MIRRORS = ("http://download.tensorflow.org/example_images/",
                   "https://storage.googleapis.com/download.tensorflow.org/example_images/")
#: SHA-256 and size of the archive. Source: TensorFlow Datasets,
#: ``tensorflow_datasets/url_checksums/tf_flowers.txt`` (github.com/tensorflow/datasets);
#: TensorFlow publishes no MD5 for it.
FLOWERS_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
FLOWERS_SIZE = 228_813_984
FLOWERS_FOLDER = "flower_photos"
FLOWERS_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


class ImageError(ValueError):
    """An image file that cannot be used; the message is one line naming the file."""


class SkippedImageWarning(UserWarning):
    """Warned once per load, listing every image file that was skipped and why."""


def _pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("reading a folder of images needs Pillow, which is not installed; "
                          "install it with `pip install fwdderiv[images]` (or `pip install "
                          "pillow`)") from exc
    return Image


def _visible(name):
    return not name.startswith(".")


def find_images(root):
    """The class names and the image files of an image folder.

    Parameters
    ----------
    root : str or os.PathLike
        A folder with one sub-folder per class.

    Returns
    -------
    classes : tuple of str
        The sub-folders' names, sorted.
    files : list of (pathlib.Path, int)
        Every image file with its label, class by class, each class's files sorted.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    ValueError
        If it has no class sub-folders, or a class folder holds no image files.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder; "
                                "pass the folder that holds one sub-folder per class")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and _visible(d.name)))
    if not classes:
        raise ValueError(f"image folder {root} has no sub-folders; put each class's images "
                         "in a sub-folder named after the class (root/cat/1.jpg, "
                         "root/dog/2.jpg, ...)")
    files = []
    for label, name in enumerate(classes):
        found = []
        for folder, subdirs, names in os.walk(root / name):
            subdirs[:] = sorted(d for d in subdirs if _visible(d))
            found += [Path(folder) / n for n in names
                      if _visible(n) and n.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise ValueError(f"class folder {root / name} holds no image files (endings "
                             f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove the "
                             "folder")
        files += [(p, label) for p in sorted(found)]
    return classes, files


def _decode(Image, path, size, mode, max_pixels):
    with Image.open(path) as img:
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(f"{path}: {w}x{h} pixels, more than the {max_pixels} allowed "
                             "(max_pixels); refused unread as a possible decompression bomb")
        img.draft(mode, (size[1], size[0]))     # JPEG: decode at a smaller scale that fits
        img = img.convert(mode)
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.float32)


def decode_image(path, image_size=DEFAULT_IMAGE_SIZE, channels=3, max_pixels=MAX_PIXELS):
    """Decode one image file as a float array in [0, 1], resized to ``image_size``.

    Parameters
    ----------
    path : str or os.PathLike
    image_size : (int, int)
        (H, W) of the result; bilinear resizing (Pillow's, which averages when shrinking).
    channels : {3, 1}
        3: converted to RGB (an alpha channel is dropped); 1: to grey levels.
    max_pixels : int
        Largest width x height accepted, read from the header before decoding.

    Returns
    -------
    image : ndarray of shape (channels, H, W), float32

    Raises
    ------
    ImageError
        One line naming the file: not an image Pillow reads, truncated or corrupt, or
        larger than ``max_pixels`` (Pillow's own DecompressionBombWarning counts as an
        error here too).
    """
    Image = _pillow()
    mode = "RGB" if channels == 3 else "L"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pixels = _decode(Image, path, image_size, mode, max_pixels)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except Exception as exc:              # Pillow raises many kinds on damaged files
        if type(exc).__name__ == "UnidentifiedImageError":
            raise ImageError(f"{path}: not an image file Pillow can read (unknown format); "
                             "delete or replace it") from None
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"{path}: cannot be decoded ({detail}); the file is truncated or "
                         "damaged: delete or replace it") from None
    pixels /= np.float32(255)
    return pixels[None] if channels == 1 else np.moveaxis(pixels, -1, 0)


def _check_options(image_size, channels, max_pixels):
    if channels not in (1, 3):
        raise ValueError(f"load_image_folder: channels must be 1 (grey) or 3 (RGB), got "
                         f"{channels!r}")
    try:
        size = tuple(int(s) for s in image_size)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1 or size != tuple(image_size):
        raise ValueError(f"load_image_folder: image_size must be (H, W), two integers >= 1, "
                         f"got {image_size!r}; e.g. image_size=(64, 64)")
    if not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"load_image_folder: max_pixels must be an integer >= 1, got "
                         f"{max_pixels!r}")
    return size


def load_image_folder(root, image_size=DEFAULT_IMAGE_SIZE, channels=3, strict=False,
                      max_pixels=MAX_PIXELS):
    """Decode every image of a class-per-sub-folder image folder.

    Parameters
    ----------
    root : str or os.PathLike
        The folder (see the module docstring for the layout).
    image_size : (int, int), default (64, 64)
        (H, W) every image is resized to (bilinear).
    channels : {3, 1}
        RGB or grey levels.
    strict : bool, default False
        Raise at the first file that cannot be used instead of skipping it.
    max_pixels : int, optional
        Largest image accepted (default :data:`MAX_PIXELS`).

    Returns
    -------
    x : ndarray of shape (N, channels, H, W), float32
        Values in [0, 1].
    y : ndarray of shape (N,), int64
        Labels: positions in ``classes``.
    classes : tuple of str
        The class folders' names, sorted.
    skipped : list of str
        One line per skipped file (empty with ``strict=True``).

    Raises
    ------
    ImageError
        With ``strict=True``, the first file that cannot be used.
    ValueError
        If the folder has no classes, a class has no image files, or none of a class's
        files could be read.
    ImportError
        If Pillow is not installed.

    Warns
    -----
    SkippedImageWarning
        Once, listing the skipped files, when some were skipped.

    Examples
    --------
    >>> x, y, classes, skipped = load_image_folder("flower_photos", (64, 64))  # doctest: +SKIP
    >>> x.shape, classes                                                      # doctest: +SKIP
    ((3670, 3, 64, 64), ('daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'))
    """
    size = _check_options(image_size, channels, max_pixels)
    _pillow()
    classes, files = find_images(root)
    x = np.empty((len(files), channels) + size, dtype=np.float32)
    y = np.empty(len(files), dtype=np.int64)
    skipped, k = [], 0
    for path, label in files:
        try:
            x[k] = decode_image(path, size, channels, max_pixels)
        except ImageError as err:
            if strict:
                raise
            skipped.append(str(err))
            continue
        y[k] = label
        k += 1
    empty = sorted(set(range(len(classes))) - set(y[:k].tolist()))
    if empty:
        raise ValueError(f"image folder {root}: none of the files of class "
                         f"{classes[empty[0]]!r} could be read (first: {skipped[0]}); replace "
                         "them or remove the folder")
    if skipped:
        warnings.warn(SkippedImageWarning(
            f"image folder {root}: skipped {len(skipped)} of {len(files)} files (strict=True "
            "refuses instead):\n  " + "\n  ".join(skipped)), stacklevel=2)
    return x[:k], y[:k], classes, skipped


def _flower_member(rel):
    """The files of flower_photos/: LICENSE.txt and the photos of the five class folders."""
    parts = rel.split("/")
    return len(parts) == 1 or (len(parts) == 2 and parts[0] in FLOWERS_CLASSES)


def download_flowers(data_dir=None, mirrors=None, checksum=None, timeout=DOWNLOAD_TIMEOUT):
    """Fetch and extract TensorFlow's flower photos into ``data_dir/flower_photos``.

    The archive (228,813,984 bytes) is checked against :data:`FLOWERS_SHA256` and its size
    before anything is extracted, then extracted safely
    (:func:`fwdderiv.datasets.archive.extract_tar`: only ``flower_photos/`` with
    ``LICENSE.txt`` and the five class folders). Nothing is fetched when the folder exists.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Where the archive and the folder go; default :func:`default_data_dir`.
    mirrors : sequence of str, optional
        Base URLs; default :data:`FLOWERS_MIRRORS`.
    checksum : str, optional
        Expected SHA-256 (or MD5) of the archive; default :data:`FLOWERS_SHA256`.
    timeout : float, optional

    Returns
    -------
    folder : pathlib.Path
        ``data_dir / "flower_photos"``.
    """
    data_dir = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    folder = data_dir / FLOWERS_FOLDER
    if folder.is_dir():
        return folder
    archive = data_dir / FLOWERS_ARCHIVE
    expected = FLOWERS_SHA256 if checksum is None else checksum
    if not archive.is_file():
        download_file(FLOWERS_ARCHIVE, data_dir, FLOWERS_MIRRORS if mirrors is None else mirrors,
                      timeout=timeout, size=FLOWERS_SIZE if checksum is None else None,
                      **digest_arguments(expected))
    elif not file_matches(archive, expected):
        raise ValueError(f"flower photos archive {archive}: its checksum is not the expected "
                         f"{expected}; it is damaged or another file: delete it and download "
                         "it again")
    return extract_tar(archive, data_dir, FLOWERS_FOLDER, accept=_flower_member)
