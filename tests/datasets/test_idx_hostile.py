"""IDX headers are checked before the payload is decompressed, and the payload is read as
a bounded stream (bombs under an address-space limit: tests/test_hostile.py)."""
import gzip
import zlib

import numpy as np
import pytest

from fwdderiv.datasets.download import download_file
from fwdderiv.datasets.idx import MAX_GZIP_RATIO, read_idx, write_idx

HUGE = bytes.fromhex("00000803" "ffffffff" "ffffffff" "ffffffff")   # 2**96 bytes declared


@pytest.mark.parametrize("name", ["f", "f.gz"])
def test_dimension_product_beyond_any_size_is_refused_from_the_header(tmp_path, name):
    path = tmp_path / name
    blob = HUGE + bytes(100)
    path.write_bytes(gzip.compress(blob) if name.endswith(".gz") else blob)
    pattern = "more than a .*-byte gzip file can hold" if name.endswith(".gz") else \
        r"truncated: its header declares shape \(4294967295, 4294967295, 4294967295\)"
    with pytest.raises(ValueError, match=pattern):
        read_idx(path, expected_magic=2051)


def _bomb(header, n_zeros):
    """A gzip stream of ``header`` then ``n_zeros`` zero bytes, compressed in pieces."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(header)]
    block = bytes(1 << 20)
    for _ in range(n_zeros >> 20):
        out.append(comp.compress(block))
    out.append(comp.flush())
    return b"".join(out)


def test_gzip_bomb_behind_a_small_header_stops_after_the_declared_size(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(_bomb(bytes.fromhex("00000801" "00000003") + b"\x01\x02\x03", 64 << 20))
    assert path.stat().st_size < (64 << 20) / 500
    with pytest.raises(ValueError, match=r"1048576 or more extra bytes"):
        read_idx(path, expected_magic=2049)


def test_header_claiming_more_than_gzip_can_expand_to(tmp_path):
    path = tmp_path / "images.gz"
    n = 1000
    header = bytes.fromhex("00000803") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
    path.write_bytes(gzip.compress(header + bytes(10)))
    assert n * 784 > MAX_GZIP_RATIO * path.stat().st_size
    with pytest.raises(ValueError, match=r"\(784000 data bytes\), more than a"):
        read_idx(path)


def test_legitimate_files_still_read(tmp_path):
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        np.testing.assert_array_equal(read_idx(write_idx(tmp_path / name, a)), a)
    zeros = np.zeros((200, 28, 28), np.uint8)       # compresses about 500:1, and is valid
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "z.gz", zeros)), zeros)


@pytest.mark.parametrize("md5", [None, "", "xyz", "0" * 31, 1234])
def test_download_requires_a_checksum(tmp_path, md5):
    with pytest.raises(ValueError, match="an expected MD5 for f.gz is required"):
        download_file("f.gz", tmp_path, ["http://127.0.0.1:9/"], md5)
    assert list(tmp_path.iterdir()) == []
