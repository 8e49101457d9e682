"""Fashion-MNIST: the MNIST IDX reader and validation under another name, its class names,
its default folder, and downloads from a loopback HTTP server."""
import hashlib

import numpy as np
import pytest

import fwdderiv.datasets.fashion_mnist as fashion
from fwdderiv.datasets import (FASHION_MNIST_CLASSES, FASHION_MNIST_MD5,
                               FASHION_MNIST_MIRRORS, DownloadError, fashion_mnist_root,
                               load_dataset, load_fashion_mnist, load_mnist, write_idx)


def _table(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_published_checksums_and_names():
    assert sorted(FASHION_MNIST_MD5) == sorted(
        f"{s}-{k}-idx{d}-ubyte.gz" for s in ("train", "t10k")
        for k, d in (("images", 3), ("labels", 1)))
    assert FASHION_MNIST_MD5["t10k-labels-idx1-ubyte.gz"] == "bb300cfdad3c16e7a12a480ee83cd310"
    assert FASHION_MNIST_MIRRORS[0] == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert all(m.endswith("/") for m in FASHION_MNIST_MIRRORS)
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"


def test_standard_split_with_class_names(tmp_path, fake_mnist):
    train_images, train_labels = fake_mnist(tmp_path, split="train", n=20, seed=3)
    _, test_labels = fake_mnist(tmp_path, split="test", n=6, seed=4)
    ds = load_dataset("Fashion-MNIST", data_dir=tmp_path)
    assert ds.name == "fashion-mnist"
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(ds.x_train[:, 0] * 255, train_images.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, train_labels)
    np.testing.assert_array_equal(ds.y_test, test_labels)
    assert ds.classes == FASHION_MNIST_CLASSES and ds.n_classes == 10
    assert "Fashion-MNIST train/test 20/6" in ds.description


def test_t10k_only_splits_the_last_tenth(tmp_path, fake_mnist):
    _, labels = fake_mnist(tmp_path / "FashionMNIST" / "raw", n=30, gz=False)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)     # torchvision's layout
    np.testing.assert_array_equal(ds.y_train, labels[:27])
    np.testing.assert_array_equal(ds.y_test, labels[27:])
    assert "Fashion-MNIST t10k split 27/3 (no training files)" in ds.description


def test_validation_is_mnists_with_the_name_changed(tmp_path, fake_mnist):
    fake_mnist(tmp_path, n=4, size=8)
    with pytest.raises(ValueError, match=r"Fashion-MNIST images file .*28x28 pixels, got 8x8"):
        load_fashion_mnist(tmp_path)
    fake_mnist(tmp_path, n=4)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 11, 3], np.uint8))
    with pytest.raises(ValueError, match=r"Fashion-MNIST labels file .*found 11 at index 2"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"load_fashion_mnist: split must be one of"):
        load_fashion_mnist(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match=r"Fashion-MNIST test files not found.*"
                                                r"load_fashion_mnist\(root, split='test', "
                                                r"download=True\)"):
        load_fashion_mnist(tmp_path / "empty")


def test_default_folder(tmp_path, monkeypatch, fake_mnist):
    monkeypatch.setenv("FWDDERIV_DATA_DIR", str(tmp_path))
    assert fashion_mnist_root() == tmp_path / "fashion-mnist"
    fake_mnist(tmp_path, n=5)                      # MNIST files directly in the data dir
    with pytest.raises(FileNotFoundError, match="fashion-mnist"):
        load_fashion_mnist()                       # are not taken for Fashion-MNIST
    _, labels = fake_mnist(tmp_path / "fashion-mnist", n=7)
    np.testing.assert_array_equal(load_fashion_mnist()[1], labels)


def test_files_with_the_other_data_sets_checksum_are_refused(tmp_path, fake_mnist,
                                                             monkeypatch):
    fake_mnist(tmp_path, n=4)
    digests = _table(tmp_path)
    monkeypatch.setattr(fashion, "MNIST_MD5", digests)     # as if these were MNIST's files
    with pytest.raises(ValueError, match=r"is the MNIST file of that name.*same file names"):
        load_fashion_mnist(tmp_path)
    monkeypatch.setattr(fashion, "FASHION_MNIST_MD5", digests)
    with pytest.raises(ValueError, match=r"is the Fashion-MNIST file of that name"):
        load_mnist(tmp_path)


def test_download_then_load(tmp_path, http_server, fake_mnist, monkeypatch):
    url, www = http_server
    fake_mnist(www, split="train", n=9)
    _, labels = fake_mnist(www, split="test", n=4)
    monkeypatch.setattr(fashion, "FASHION_MNIST_MIRRORS", ("http://127.0.0.1:9/", url))
    monkeypatch.setattr(fashion, "FASHION_MNIST_MD5", _table(www))
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "d", download=True)
    assert len(ds.y_train) == 9
    np.testing.assert_array_equal(ds.y_test, labels)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(_table(www))


def test_checksum_mismatch_leaves_nothing(tmp_path, http_server, fake_mnist):
    url, www = http_server
    fake_mnist(www, n=4)
    with pytest.raises(DownloadError, match=r"MD5 mismatch"):
        load_fashion_mnist(tmp_path / "d", download=True, mirrors=[url],
                           checksums=dict.fromkeys(_table(www), "f" * 32))
    assert list((tmp_path / "d").iterdir()) == []
