"""load_mnist on small files the tests write, and on the real MNIST test set."""
import numpy as np
import pytest

from fwdderiv.datasets import find_mnist_files, load_dataset, load_mnist, mnist_root, write_idx

FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["test", "train"])
def test_load_fake_split(tmp_path, fake_mnist, gz, split):
    images, labels = fake_mnist(tmp_path, split=split, n=13, gz=gz)
    x, y = load_mnist(tmp_path, split=split)
    assert x.dtype == np.float32 and x.shape == (13, 1, 28, 28)
    assert y.dtype == np.int64 and y.shape == (13,)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / np.float32(255))
    assert x.min() == 0.0 and x.max() == 1.0


def test_torchvision_layout_is_found(tmp_path, fake_mnist):
    _, labels = fake_mnist(tmp_path / "MNIST" / "raw", n=4, gz=False)
    _, y = load_mnist(tmp_path)
    np.testing.assert_array_equal(y, labels)


def test_gz_preferred_over_raw(tmp_path, fake_mnist):
    fake_mnist(tmp_path, n=3, gz=False)
    fake_mnist(tmp_path, n=5, gz=True)
    images, labels = find_mnist_files(tmp_path)
    assert images.name.endswith(".gz") and labels.name.endswith(".gz")
    assert len(load_mnist(tmp_path)[1]) == 5


def test_bad_split_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"\['test', 'train'\].*'valid'"):
        load_mnist(tmp_path, split="valid")
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte.*download=True") as info:
        load_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_count_mismatch_names_both_files(tmp_path, fake_mnist):
    fake_mnist(tmp_path, n=10)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"10 images.*9 labels.*matching pair") as info:
        load_mnist(tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_swapped_files_fail_on_magic(tmp_path, fake_mnist):
    fake_mnist(tmp_path, n=4)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    tmp = tmp_path / "swap"
    images.rename(tmp), labels.rename(images), tmp.rename(labels)
    with pytest.raises(ValueError, match=r"magic number 2049.*expected 2051.*swapped"):
        load_mnist(tmp_path)


def test_wrong_image_size(tmp_path, fake_mnist):
    fake_mnist(tmp_path, n=4, size=8)
    with pytest.raises(ValueError, match=r"28x28 pixels, got 8x8"):
        load_mnist(tmp_path)


def test_labels_out_of_range(tmp_path, fake_mnist):
    fake_mnist(tmp_path, n=4)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 12, 3], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.9, found 12 at index 2"):
        load_mnist(tmp_path)


def test_empty_file(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(0, dtype=np.uint8))
    with pytest.raises(ValueError, match="no images"):
        load_mnist(tmp_path)


def test_truncated_file_is_reported_through_load_mnist(tmp_path, fake_mnist):
    fake_mnist(tmp_path, n=6, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"truncated.*5 complete items"):
        load_mnist(tmp_path)


def test_default_root_follows_environment(tmp_path, monkeypatch, fake_mnist):
    monkeypatch.delenv("FWDDERIV_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist_root() == tmp_path / "home" / ".cache" / "fwdderiv" / "data" / "mnist"
    monkeypatch.setenv("FWDDERIV_DATA_DIR", str(tmp_path / "data"))
    assert mnist_root() == tmp_path / "data" / "mnist"
    _, labels = fake_mnist(tmp_path / "data" / "mnist", n=7)
    np.testing.assert_array_equal(load_mnist()[1], labels)
    fake_mnist(tmp_path / "data", n=3)  # files directly in the data dir win
    assert mnist_root() == tmp_path / "data"
    assert len(load_mnist()[1]) == 3


def test_load_dataset_uses_train_files_when_present(tmp_path, fake_mnist):
    _, train_labels = fake_mnist(tmp_path, split="train", n=20, seed=1)
    _, test_labels = fake_mnist(tmp_path, split="test", n=5, seed=2)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(ds.y_train, train_labels)
    np.testing.assert_array_equal(ds.y_test, test_labels)
    assert "train/test 20/5" in ds.description


def test_load_dataset_splits_t10k_last_tenth(tmp_path, fake_mnist):
    _, labels = fake_mnist(tmp_path, n=30)
    ds = load_dataset("MNIST", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.y_train, labels[:27])
    np.testing.assert_array_equal(ds.y_test, labels[27:])
    assert "27/3 (no training files)" in ds.description


def test_real_mnist_test_set(mnist_dir):
    x, y = load_mnist(mnist_dir, split="test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert y[:10].tolist() == FIRST_LABELS
    assert np.bincount(y, minlength=10).tolist() == CLASS_COUNTS
    assert x.min() == 0.0 and x.max() == 1.0
    # Pixels are k / 255 for integers k.
    k = x[:100] * 255
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    # MNIST digits are white on black: the border is background.
    assert x[:, :, 0, :].max() < 0.5


def test_real_mnist_dataset_split(mnist_dir):
    ds = load_dataset("mnist", data_dir=mnist_dir)
    assert ds.name == "mnist"
    assert ds.x_train.shape == (9000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.y_train[:10].tolist() == FIRST_LABELS
    assert "9000/1000 (no training files)" in ds.description
    counts = np.bincount(ds.y_train, minlength=10) + np.bincount(ds.y_test, minlength=10)
    assert counts.tolist() == CLASS_COUNTS
    assert ds.input_shape == (1, 28, 28) and ds.n_classes == 10
