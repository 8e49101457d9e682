"""Downloads from a loopback HTTP server (127.0.0.1, never the internet)."""
import hashlib

import numpy as np
import pytest

from fwdderiv.datasets import (MNIST_MD5, MNIST_MIRRORS, DownloadError, download_file,
                               load_dataset, load_mnist, md5sum)

IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def _table(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_standard_checksum_table():
    assert sorted(MNIST_MD5) == sorted(["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                        IMAGES, LABELS])
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in MNIST_MD5.values())
    assert all(m.endswith("/") for m in MNIST_MIRRORS)


def test_download_then_load(tmp_path, http_server, fake_mnist):
    url, www = http_server
    images, labels = fake_mnist(www, n=11)
    root = tmp_path / "data"
    x, y = load_mnist(root, download=True, mirrors=[url], checksums=_table(www))
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x[:, 0] * 255, images.astype(np.float32))
    assert _leftovers(root) == [IMAGES, LABELS]
    assert (root / IMAGES).read_bytes() == (www / IMAGES).read_bytes()


def test_falls_back_to_next_mirror(tmp_path, http_server, dead_url, fake_mnist):
    url, www = http_server
    _, labels = fake_mnist(www, n=5)
    _, y = load_mnist(tmp_path, download=True, mirrors=[dead_url, url + "missing/", url],
                      checksums=_table(www))
    np.testing.assert_array_equal(y, labels)


def test_existing_files_are_not_downloaded(tmp_path, dead_url, fake_mnist):
    _, labels = fake_mnist(tmp_path, n=4)
    _, y = load_mnist(tmp_path, download=True, mirrors=[dead_url], checksums={})
    np.testing.assert_array_equal(y, labels)


def test_checksum_mismatch_leaves_nothing(tmp_path, http_server, fake_mnist):
    url, www = http_server
    fake_mnist(www, n=4)
    wrong = dict.fromkeys(_table(www), "0" * 32)
    root = tmp_path / "data"
    pattern = r"MD5 mismatch: expected 0{32}, got [0-9a-f]{32}"
    with pytest.raises(DownloadError, match=pattern) as info:
        load_mnist(root, download=True, mirrors=[url], checksums=wrong)
    assert "checksums=" in str(info.value)
    assert info.value.failures == [(url + IMAGES, info.value.failures[0][1])]
    assert _leftovers(root) == []


def test_http_404(tmp_path, http_server):
    url, _ = http_server
    with pytest.raises(DownloadError, match=r"HTTP 404") as info:
        load_mnist(tmp_path / "d", download=True, mirrors=[url], checksums=MNIST_MD5)
    assert url + IMAGES in str(info.value)
    assert "internet connection" in str(info.value)
    assert _leftovers(tmp_path / "d") == []


def test_unreachable_mirror(tmp_path, dead_url):
    with pytest.raises(DownloadError, match=r"cannot connect") as info:
        load_mnist(tmp_path / "d", download=True, mirrors=[dead_url], timeout=5)
    assert isinstance(info.value, OSError)
    assert dead_url + IMAGES in str(info.value)
    assert _leftovers(tmp_path / "d") == []


def test_incomplete_transfer_is_rejected(tmp_path, http_server):
    url, _ = http_server
    with pytest.raises(DownloadError, match=r"incomplete transfer: got 10 of 100000 bytes"):
        download_file("x.gz", tmp_path / "d", [url + "short/"], "0" * 32)
    assert _leftovers(tmp_path / "d") == []


def test_second_file_failure_keeps_first_complete(tmp_path, http_server, fake_mnist):
    url, www = http_server
    fake_mnist(www, n=4)
    (www / LABELS).unlink()
    root = tmp_path / "d"
    with pytest.raises(DownloadError, match=LABELS):
        load_mnist(root, download=True, mirrors=[url], checksums={IMAGES: md5sum(www / IMAGES),
                                                                  LABELS: "0" * 32})
    assert _leftovers(root) == [IMAGES]  # verified, complete, reused by the next attempt


def test_missing_checksum_entry(tmp_path, http_server):
    url, _ = http_server
    with pytest.raises(ValueError, match=r"no checksum for t10k-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path, download=True, mirrors=[url], checksums={})


def test_no_mirrors(tmp_path):
    with pytest.raises(ValueError, match="no mirrors"):
        download_file("a", tmp_path, [], "0" * 32)


def test_load_dataset_downloads_both_splits(tmp_path, http_server, fake_mnist, monkeypatch):
    url, www = http_server
    fake_mnist(www, split="train", n=8)
    fake_mnist(www, split="test", n=3)
    import fwdderiv.datasets.mnist as mnist
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", (url,))
    monkeypatch.setattr(mnist, "MNIST_MD5", _table(www))
    ds = load_dataset("mnist", data_dir=tmp_path / "d", download=True)
    assert len(ds.y_train) == 8 and len(ds.y_test) == 3
    assert len(_leftovers(tmp_path / "d")) == 4


def test_md5sum(tmp_path):
    (tmp_path / "f").write_bytes(b"fwdderiv" * 10000)
    assert md5sum(tmp_path / "f") == hashlib.md5(b"fwdderiv" * 10000).hexdigest()
