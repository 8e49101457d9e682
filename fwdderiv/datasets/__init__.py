"""Data sets: MNIST from IDX files (optional download) and the offline 8x8 digits.

>>> from fwdderiv.datasets import load_dataset
>>> ds = load_dataset("digits")                      # offline, needs scikit-learn
>>> ds.x_train.shape, ds.y_train.dtype
((1497, 1, 8, 8), dtype('int64'))
"""
from .dataset import DATASETS, Dataset, load_dataset
from .digits import load_digits
from .download import DownloadError, download_file, md5sum
from .idx import read_idx, write_idx
from .mnist import (MNIST_MD5, MNIST_MIRRORS, default_data_dir, find_mnist_files,
                    load_mnist, mnist_root)
from .split import stratified_split

__all__ = ["DATASETS", "Dataset", "DownloadError", "MNIST_MD5", "MNIST_MIRRORS",
           "default_data_dir", "download_file", "find_mnist_files", "load_dataset",
           "load_digits", "load_mnist", "md5sum", "mnist_root", "read_idx",
           "stratified_split", "write_idx"]
