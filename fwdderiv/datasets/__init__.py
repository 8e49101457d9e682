"""Data sets: MNIST and Fashion-MNIST from IDX files, CIFAR-10 from its binary files, a
folder of photos (one sub-folder per class), each with optional checksummed download, and
the offline 8x8 digits.

>>> from fwdderiv.datasets import load_dataset
>>> ds = load_dataset("digits")                      # offline, needs scikit-learn
>>> ds.x_train.shape, ds.y_train.dtype
((1497, 1, 8, 8), dtype('int64'))
"""
from .archive import extract_tar
from .cifar10 import (CIFAR10_CLASSES, CIFAR10_MD5, CIFAR10_MIRRORS, cifar10_classes,
                      cifar10_root, find_cifar10_files, load_cifar10)
from .dataset import DATASETS, Dataset, load_dataset
from .digits import load_digits
from .download import DownloadError, download_file, file_matches, md5sum
from .fashion_mnist import (FASHION_MNIST_CLASSES, FASHION_MNIST_MD5, FASHION_MNIST_MIRRORS,
                            fashion_mnist_root, find_fashion_mnist_files, load_fashion_mnist)
from .folder import (FLOWERS_SHA256, ImageError, SkippedImageWarning, decode_image,
                     download_flowers, find_images, load_image_folder)
from .idx import read_idx, write_idx
from .mnist import (MNIST_MD5, MNIST_MIRRORS, default_data_dir, find_mnist_files,
                    load_mnist, mnist_root)
from .split import stratified_split

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MD5", "CIFAR10_MIRRORS", "DATASETS", "Dataset",
           "DownloadError", "FASHION_MNIST_CLASSES", "FASHION_MNIST_MD5",
           "FASHION_MNIST_MIRRORS", "FLOWERS_SHA256", "ImageError", "MNIST_MD5",
           "MNIST_MIRRORS", "SkippedImageWarning", "cifar10_classes", "cifar10_root",
           "decode_image", "default_data_dir", "download_file", "download_flowers",
           "extract_tar", "fashion_mnist_root", "file_matches", "find_cifar10_files",
           "find_fashion_mnist_files", "find_images", "find_mnist_files", "load_cifar10",
           "load_dataset", "load_digits", "load_fashion_mnist", "load_image_folder",
           "load_mnist", "md5sum", "mnist_root", "read_idx", "stratified_split", "write_idx"]
