"""load_dataset's name handling and the Dataset container."""
import dataclasses

import numpy as np
import pytest

from fwdderiv.datasets import DATASETS, Dataset, load_dataset


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"unknown data set 'cifar100'.*\['digits', 'mnist', "
                                         r"'fashion-mnist', 'cifar10', 'folder'\]"):
        load_dataset("cifar100")
    with pytest.raises(TypeError, match="must be a string"):
        load_dataset(3)
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "folder")


def test_missing_mnist_dir_explains_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\[\.gz\].*download=True"):
        load_dataset("mnist", data_dir=tmp_path)


def test_dataset_is_frozen_and_repr_is_short():
    z = np.zeros((2, 1, 8, 8), np.float32)
    ds = Dataset(z, np.array([0, 3]), z[:1], np.array([1]), "toy", "two zeros")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    text = repr(ds)
    assert text == ("Dataset(name='toy', train=(2, 1, 8, 8), test=(1, 1, 8, 8), "
                    "description='two zeros')")
    assert ds.n_classes == 4 and ds.input_shape == (1, 8, 8)
    assert ds.classes == ("0", "1", "2", "3")      # by default the labels' digits


def test_dataset_class_names():
    z = np.zeros((2, 3, 4, 4), np.float32)
    ds = Dataset(z, np.array([0, 1]), z, np.array([1, 0]), "toy", "", ["cat", "dog", "owl"])
    assert ds.classes == ("cat", "dog", "owl") and ds.n_classes == 3   # not max label + 1
    assert ds.input_shape == (3, 4, 4)
    with pytest.raises(ValueError, match=r"2 class names for labels up to 2"):
        Dataset(z, np.array([0, 2]), z, np.array([1, 0]), "toy", "", ("cat", "dog"))
    assert load_dataset("digits").classes == tuple("0123456789")


def test_dataset_checks_shapes():
    z = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"y_train of shape \(N,\), got \(2, 1, 8, 8\) and \(3,\)"):
        Dataset(z, np.zeros(3), z, np.zeros(2), "toy", "")
    with pytest.raises(ValueError, match=r"x\[:, None\]"):
        Dataset(z[:, 0], np.zeros(2), z, np.zeros(2), "toy", "")
    with pytest.raises(ValueError, match="differ in shape"):
        Dataset(z, np.zeros(2), np.zeros((2, 1, 4, 4)), np.zeros(2), "toy", "")
