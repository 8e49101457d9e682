"""A folder of photos (one sub-folder per class): decoding, the layout rules, the split,
hostile files (a decompression bomb's header, a truncated JPEG, a text file named .jpg),
and the flower photos' checked download."""
import hashlib
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import fwdderiv.datasets.folder as folder_module
from fwdderiv.datasets import (DownloadError, ImageError, SkippedImageWarning, decode_image,
                               find_images, load_dataset, load_image_folder)

from .makers import folder_tar, make_photos, png_claiming, truncated_jpeg


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    make_photos(root, per_class=10)
    return root


def test_decoding_values_and_channels(tmp_path):
    Image.new("RGB", (30, 20), (255, 0, 128)).save(tmp_path / "a.png")
    x = decode_image(tmp_path / "a.png", (8, 12))
    assert x.shape == (3, 8, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [1.0, 0.0, 128 / 255], atol=1e-6)
    grey = decode_image(tmp_path / "a.png", (5, 5), channels=1)
    assert grey.shape == (1, 5, 5)
    # Pillow's "L" conversion: (299 R + 587 G + 114 B) / 1000, rounded
    assert grey[0, 2, 2] * 255 == pytest.approx(round((299 * 255 + 114 * 128) / 1000), abs=1)
    Image.new("RGBA", (4, 4), (0, 255, 0, 10)).save(tmp_path / "alpha.png")
    np.testing.assert_allclose(decode_image(tmp_path / "alpha.png", (4, 4))[:, 0, 0], [0, 1, 0])


def test_resizing_is_bilinear(tmp_path):
    pixels = np.zeros((4, 8), np.uint8)
    pixels[:, 4:] = 200                              # left half black, right half grey
    Image.fromarray(pixels).save(tmp_path / "half.png")
    x = decode_image(tmp_path / "half.png", (2, 4), channels=1)[0] * 255
    # halving the width with a triangle filter two input pixels wide: output pixel 1
    # (centred at input 3.0) weighs inputs 1.5, 2.5, 3.5, 4.5 by 1/8, 3/8, 3/8, 1/8, so
    # 200/8 = 25; nearest-neighbour sampling would give 0 or 200
    np.testing.assert_allclose(x, [[0, 25, 175, 200]] * 2, atol=0.5)


def test_layout_classes_and_labels(photos):
    (photos / ".hidden").mkdir()                      # hidden folders are no class
    Image.new("RGB", (5, 5)).save(photos / ".hidden" / "x.png")
    Image.new("RGB", (5, 5)).save(photos / "dogs" / ".x.png")   # hidden file
    (photos / "LICENSE.txt").write_text("CC-BY")       # files beside the classes are ignored
    (photos / "dogs" / "notes.txt").write_text("not an image ending")
    (photos / "owls" / "more").mkdir()
    Image.new("RGB", (5, 5), (0, 200, 0)).save(photos / "owls" / "more" / "UPPER.JPG")
    classes, files = find_images(photos)
    assert classes == ("cats", "dogs", "owls")
    assert len(files) == 31 and files[-1][0].name == "UPPER.JPG"
    labels = [label for _, label in files]
    assert labels == sorted(labels) and labels.count(2) == 11


def test_dataset_split_is_stratified_and_seeded(photos):
    ds = load_dataset("folder", data_dir=photos, image_size=(16, 16))
    assert ds.name == "folder" and ds.classes == ("cats", "dogs", "owls")
    assert ds.x_train.shape == (24, 3, 16, 16) and ds.x_test.shape == (6, 3, 16, 16)
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    # cats are red, dogs blue: the channel means tell the classes apart
    red = ds.x_train[ds.y_train == 0].mean(axis=(0, 2, 3))
    assert red[0] > 0.7 and red[2] < 0.3
    assert "stratified split 24/6 (seed 0)" in ds.description
    again = load_dataset("folder", data_dir=photos, image_size=(16, 16))
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    other = load_dataset("folder", data_dir=photos, image_size=(16, 16), seed=1,
                         test_fraction=0.5)
    assert len(other.y_test) == 15 and not np.array_equal(other.x_test[:6], ds.x_test)


HOSTILE = [
    ("bomb.png", png_claiming(100_000, 100_000), r"decompression bomb"),
    ("cut.jpg", truncated_jpeg(), r"cannot be decoded \(image file is truncated"),
    ("text.jpg", b"just some text, no image at all\n" * 3, r"not an image file Pillow can read"),
]


@pytest.mark.parametrize("name, blob, pattern", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_file_is_one_line_naming_it(photos, name, blob, pattern):
    path = photos / "cats" / name
    path.write_bytes(blob)
    with pytest.raises(ImageError, match=pattern) as info:
        load_image_folder(photos, (8, 8), strict=True)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_hostile_files_are_skipped_with_one_warning(photos):
    for name, blob, _ in HOSTILE:
        (photos / "dogs" / name).write_bytes(blob)
    with pytest.warns(SkippedImageWarning) as record:
        ds = load_dataset("folder", data_dir=photos, image_size=(8, 8))
    assert len(record) == 1
    lines = str(record[0].message).splitlines()
    assert "skipped 3 of 33 files" in lines[0]
    assert sorted(line.split(":")[0].strip().rsplit("/", 1)[1] for line in lines[1:]) == \
        sorted(h[0] for h in HOSTILE)
    assert len(ds.y_train) + len(ds.y_test) == 30
    assert "3 unreadable files skipped" in ds.description


def test_pixel_limit_is_read_from_the_header(photos, tmp_path):
    with pytest.raises(ImageError, match=r"24x20 pixels, more than the 400 allowed"):
        load_image_folder(photos, (8, 8), strict=True, max_pixels=400)
    # 81 megapixels: under Pillow's own limit (89.5), over ours (64)
    (tmp_path / "a.png").write_bytes(png_claiming(9000, 9000))
    with pytest.raises(ImageError, match=r"9000x9000 pixels, more than the 64000000"):
        decode_image(tmp_path / "a.png")
    # 100 megapixels: Pillow's DecompressionBombWarning, turned into a refusal
    (tmp_path / "b.png").write_bytes(png_claiming(10_000, 10_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match=r"b\.png: refused as a possible decompression bomb"):
            decode_image(tmp_path / "b.png", max_pixels=10**9)


def test_a_class_with_no_readable_file(photos):
    for p in (photos / "owls").iterdir():
        p.write_bytes(b"broken")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        with pytest.raises(ValueError, match=r"none of the files of class 'owls'"):
            load_image_folder(photos, (8, 8))


def test_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "nope")
    with pytest.raises(ValueError, match="has no sub-folders"):
        find_images(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds no image files"):
        find_images(tmp_path)


def test_option_errors(photos):
    with pytest.raises(ValueError, match="channels must be 1"):
        load_image_folder(photos, (8, 8), channels=2)
    with pytest.raises(ValueError, match=r"image_size must be \(H, W\)"):
        load_image_folder(photos, (8,))
    with pytest.raises(ValueError, match="test_fraction must be between 0 and 1"):
        load_dataset("folder", data_dir=photos, test_fraction=1.0)
    with pytest.raises(ValueError, match="image_size= applies to the 'folder' data set"):
        load_dataset("mnist", data_dir=photos, image_size=(8, 8))
    with pytest.raises(TypeError, match="unknown option 'size'"):
        load_dataset("folder", data_dir=photos, size=3)
    with pytest.raises(ValueError, match=r"pass data_dir=.*download='flowers'"):
        load_dataset("folder")


def test_missing_pillow_gives_install_hint(photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install fwdderiv\[images\]"):
        load_image_folder(photos)


def _flowers(tmp_path, monkeypatch, url):
    src = tmp_path / "src"
    make_photos(src, per_class=5, classes={"daisy": (250, 250, 250), "roses": (200, 0, 0)})
    (src / "LICENSE.txt").write_text("CC-BY")
    path = folder_tar(tmp_path / "www" / "flower_photos.tgz", src, "flower_photos")
    monkeypatch.setattr(folder_module, "FLOWERS_MIRRORS", (url,))
    monkeypatch.setattr(folder_module, "FLOWERS_SHA256",
                        hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(folder_module, "FLOWERS_SIZE", path.stat().st_size)
    return path


def test_flowers_download(tmp_path, http_server, monkeypatch):
    url, _ = http_server
    _flowers(tmp_path, monkeypatch, url)
    ds = load_dataset("folder", data_dir=tmp_path / "data", download="flowers",
                      image_size=(8, 8))
    assert ds.classes == ("daisy", "roses") and ds.y_test.tolist() == [0, 1]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["flower_photos",
                                                                    "flower_photos.tgz"]
    assert (tmp_path / "data" / "flower_photos" / "LICENSE.txt").is_file()


def test_flowers_checksum_mismatch_leaves_nothing(tmp_path, http_server, monkeypatch):
    url, _ = http_server
    _flowers(tmp_path, monkeypatch, url)
    monkeypatch.setattr(folder_module, "FLOWERS_SHA256", "ab" * 32)
    with pytest.raises(DownloadError, match=r"SHA-256 mismatch: expected (ab){32}"):
        load_dataset("folder", data_dir=tmp_path / "data", download="flowers")
    assert list((tmp_path / "data").iterdir()) == []


def test_published_flowers_checksum():
    # TensorFlow Datasets, url_checksums/tf_flowers.txt
    assert folder_module.FLOWERS_SIZE == 228_813_984
    assert folder_module.FLOWERS_SHA256.startswith("4c54ace7911aaffe")
    assert folder_module.FLOWERS_MIRRORS[0] == "http://download.tensorflow.org/example_images/"
