"""IDX reading and writing: round trips, and every kind of damaged file."""
import gzip

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from fwdderiv.datasets import read_idx, write_idx

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


@settings(max_examples=40, deadline=None)
@given(array=st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
           dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
           elements=None if dt.startswith("u") or dt.startswith("i") else
           st.floats(-1e6, 1e6, width=32))),
       gz=st.booleans())
def test_round_trip(tmp_path_factory, array, gz):
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_mnist_header_bytes_and_magic(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "i", images)
    raw = (tmp_path / "i").read_bytes()
    assert raw[:16] == bytes.fromhex("00000803" "00000002" "0000001c" "0000001c")
    assert len(raw) == 16 + images.size
    np.testing.assert_array_equal(read_idx(tmp_path / "i", expected_magic=2051), images)


def test_gz_matches_raw_and_is_deterministic(tmp_path):
    labels = np.array([7, 2, 1, 0], dtype=np.uint8)
    write_idx(tmp_path / "l", labels)
    write_idx(tmp_path / "l.gz", labels)
    assert gzip.decompress((tmp_path / "l.gz").read_bytes()) == (tmp_path / "l").read_bytes()
    first = (tmp_path / "l.gz").read_bytes()
    write_idx(tmp_path / "l.gz", labels)
    assert (tmp_path / "l.gz").read_bytes() == first


def test_multibyte_is_big_endian_on_disk(tmp_path):
    write_idx(tmp_path / "w", np.array([1, 258], dtype=np.int32))
    assert (tmp_path / "w").read_bytes()[8:] == bytes.fromhex("00000001" "00000102")


# Each case: file name, its bytes, the expected magic, a pattern the message must match.
_LABELS = bytes.fromhex("00000801" "00000003") + bytes([1, 2, 3])
_IMAGES_HEADER = bytes.fromhex("00000803" "00000002" "00000002" "00000002")
CORRUPT = [
    pytest.param("f", _LABELS, 2051, r"magic number 2049.*expected 2051", id="wrong-magic"),
    pytest.param("f", b"\x00\x00", None, r"only 2 bytes", id="too-short-for-magic"),
    pytest.param("f", b"\x89PNG\r\n\x1a\n" + bytes(8), None, r"not a valid IDX header",
                 id="not-idx"),
    pytest.param("f", bytes.fromhex("00000701" "00000001") + b"\x00", None,
                 r"not a valid IDX header", id="unknown-type-code"),
    pytest.param("f", bytes.fromhex("00000800"), None, r"not a valid IDX header",
                 id="zero-dimensions"),
    pytest.param("f", bytes.fromhex("00000803" "00000002" "0000"), 2051,
                 r"header declares 3 dimensions", id="header-cut-in-dimensions"),
    pytest.param("f", _LABELS[:-1], 2049, r"truncated.*3 items.*holds 2 data bytes",
                 id="truncated-labels"),
    pytest.param("f", _IMAGES_HEADER + bytes(5), 2051, r"truncated.*1 complete items",
                 id="truncated-images"),
    pytest.param("f", _LABELS + b"\x04", 2049, r"1 extra", id="extra-bytes"),
    pytest.param("f.gz", b"this is not gzip at all", None, r"not a valid gzip stream",
                 id="bad-gzip"),
    pytest.param("f.gz", gzip.compress(_LABELS * 50)[:-12], None, r"not a valid gzip stream",
                 id="gzip-cut-short"),
    pytest.param("f.gz", _LABELS, 2049, r"remove the \.gz suffix", id="raw-named-gz"),
    pytest.param("f.gz", gzip.compress(_LABELS[:-2]), 2049, r"truncated",
                 id="truncated-inside-gzip"),
]


@pytest.mark.parametrize("name, blob, magic, pattern", CORRUPT)
def test_corrupt_files_raise_valueerror_naming_file(tmp_path, name, blob, magic, pattern):
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=pattern) as info:
        read_idx(path, expected_magic=magic)
    message = str(info.value)
    assert str(path) in message
    assert any(fix in message for fix in ("download", "replace", "remove", "swapped"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


def test_write_rejects_unsupported_arrays(tmp_path):
    with pytest.raises(TypeError, match="astype"):
        write_idx(tmp_path / "b", np.array([True, False]))
    with pytest.raises(ValueError, match=r"array\[None\]"):
        write_idx(tmp_path / "s", np.array(3, dtype=np.uint8))
