"""CIFAR-10's binary version: records the tests write, the folder layouts, validation,
the refusal of the pickled version, and the checked download and safe extraction."""
import hashlib

import numpy as np
import pytest

import fwdderiv.datasets.cifar10 as cifar
from fwdderiv.datasets import (CIFAR10_CLASSES, DownloadError, cifar10_classes, load_cifar10,
                               load_dataset)

from .makers import RECORD, cifar_records, folder_tar, make_cifar, make_tar

MEMBERS = ["cifar-10-batches-bin", "cifar-10-batches-bin/test_batch.bin"]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_records_are_read_channel_by_channel(tmp_path):
    made = make_cifar(tmp_path, n_test=7)
    images, labels = made["test"]
    x, y = load_cifar10(tmp_path)
    assert x.shape == (7, 3, 32, 32) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x * 255, images.astype(np.float32))
    assert x.min() == 0.0 and x.max() == 1.0
    # byte 1 + c*1024 + i*32 + j of a record is pixel (c, i, j)
    raw = (tmp_path / "test_batch.bin").read_bytes()
    assert raw[RECORD + 1 + 2 * 1024 + 5 * 32 + 7] == images[1, 2, 5, 7]


def test_standard_split_from_the_parent_folder_with_meta_names(tmp_path):
    names = [f"kind{k}" for k in range(10)]
    made = make_cifar(tmp_path / "cifar-10-batches-bin", n_test=6, n_train=4, meta=names)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(ds.y_train, made["train"][1])
    np.testing.assert_array_equal(ds.x_train[4:8] * 255, made["train"][0][4:8].astype(np.float32))
    assert ds.classes == tuple(names)
    assert "CIFAR-10 train/test 20/6" in ds.description


def test_test_batch_only_is_split_and_standard_names_used(tmp_path):
    _, labels = make_cifar(tmp_path, n_test=20)["test"]
    ds = load_dataset("cifar10", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.y_train, labels[:18])
    np.testing.assert_array_equal(ds.y_test, labels[18:])
    assert "test_batch split 18/2 (no training files)" in ds.description
    assert ds.classes == CIFAR10_CLASSES and ds.classes[3] == "cat"


@pytest.mark.parametrize("blob, pattern", [
    (b"", r"0 bytes is not a whole number of 3073-byte records"),
    (cifar_records(3)[0][:-5], r"9214 bytes is not a whole number"),
    (bytes([10]) + bytes(3072), r"labels must be 0\.\.9, found 10 in record 0"),
])
def test_damaged_batch_names_the_file(tmp_path, blob, pattern):
    (tmp_path / "test_batch.bin").write_bytes(blob)
    with pytest.raises(ValueError, match=pattern) as info:
        load_cifar10(tmp_path)
    assert str(tmp_path / "test_batch.bin") in str(info.value)


def test_part_of_the_training_files_is_an_error(tmp_path):
    make_cifar(tmp_path, n_test=3, n_train=2)
    (tmp_path / "data_batch_4.bin").unlink()
    with pytest.raises(ValueError, match=r"only part of the training set: data_batch_4\.bin"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_bad_meta_file(tmp_path):
    make_cifar(tmp_path, n_test=2, meta=["a", "b"])
    with pytest.raises(ValueError, match=r"batches\.meta\.txt: expected ten short names"):
        cifar10_classes(tmp_path)


@pytest.mark.parametrize("sign", ["cifar-10-batches-py/data_batch_1", "data_batch_1",
                                  "cifar-10-python.tar.gz"])
def test_the_pickled_version_is_refused(tmp_path, sign):
    (tmp_path / sign).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / sign).write_bytes(b"\x80\x04pickle")
    with pytest.raises(ValueError, match=r"pickled Python version.*never unpickles.*"
                                         r"cifar-10-binary\.tar\.gz"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_nothing_there(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no CIFAR-10 binary files.*download=True"):
        load_cifar10(tmp_path)


def _archive(tmp_path, n_test=5, n_train=None):
    src = tmp_path / "src"
    make_cifar(src, n_test=n_test, n_train=n_train, meta=list(CIFAR10_CLASSES))
    www = tmp_path / "www"
    www.mkdir(exist_ok=True)
    path = folder_tar(www / "cifar-10-binary.tar.gz", src, "cifar-10-batches-bin")
    return path, hashlib.md5(path.read_bytes()).hexdigest()


def test_download_extracts_into_place(tmp_path, http_server):
    url, www = http_server
    _, md5 = _archive(tmp_path, n_test=5, n_train=1)
    root = tmp_path / "data"
    x, y = load_cifar10(root, "train", download=True, mirrors=["http://127.0.0.1:9/", url],
                        checksum=md5)
    assert x.shape == (5, 3, 32, 32)
    assert _leftovers(root) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]
    assert len(load_cifar10(root)[1]) == 5       # now read without any download


def test_checksum_mismatch_leaves_nothing(tmp_path, http_server):
    url, _ = http_server
    _archive(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"MD5 mismatch: expected 0{32}"):
        load_cifar10(root, download=True, mirrors=[url], checksum="0" * 32)
    assert _leftovers(root) == []


def test_published_size_cuts_off_a_longer_file(tmp_path, http_server, monkeypatch):
    url, _ = http_server
    _archive(tmp_path)
    monkeypatch.setattr(cifar, "CIFAR10_SIZE", 100)
    with pytest.raises(DownloadError, match=r"size mismatch: expected 100 bytes"):
        load_cifar10(tmp_path / "data", download=True, mirrors=[url])
    assert _leftovers(tmp_path / "data") == []


def test_a_placed_archive_is_checked_then_extracted(tmp_path):
    path, md5 = _archive(tmp_path)
    root = tmp_path / "www"
    with pytest.raises(ValueError, match=r"its checksum is not the expected c32a1d4a"):
        load_cifar10(root)                         # not the published archive
    assert _leftovers(root) == ["cifar-10-binary.tar.gz"]
    assert len(load_cifar10(root, checksum=md5)[1]) == 5


@pytest.mark.parametrize("member, pattern", [
    (("cifar-10-batches-bin/../evil.bin", b"x"), r"points outside the archive's folder"),
    (("/tmp/evil.bin", b"x"), r"absolute path"),
    (("cifar-10-batches-bin/data_batch_1.bin", "->/etc/passwd"), r"is a symbolic link"),
    (("cifar-10-batches-bin/data_batch_2.bin", "=>cifar-10-batches-bin/test_batch.bin"),
     r"is a hard link"),
    (("cifar-10-batches-bin/null", "chr"), r"is a device"),
    (("cifar-10-batches-bin/run.sh", b"#!/bin/sh"), r"not a file this data set holds"),
    (("elsewhere.bin", b"x"), r"outside the expected folder"),
    (("cifar-10-batches-bin/test_batch.bin", b"again"), r"appears twice"),
])
def test_hostile_archive_members_are_refused(tmp_path, member, pattern):
    (tmp_path / "www").mkdir()
    path = make_tar(tmp_path / "www" / "cifar-10-binary.tar.gz",
                    [(MEMBERS[0], None), (MEMBERS[1], cifar_records(2)[0]), member])
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=pattern) as info:
        load_cifar10(tmp_path / "www", checksum=md5)
    assert "refused" in str(info.value) and str(path) in str(info.value)
    assert _leftovers(tmp_path / "www") == ["cifar-10-binary.tar.gz"]   # nothing extracted
    assert not (tmp_path / "evil.bin").exists()
