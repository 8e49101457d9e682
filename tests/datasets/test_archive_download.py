"""Safe tar extraction on its own, and downloads checked by SHA-256 and size."""
import hashlib
import os

import pytest

from fwdderiv.datasets import DownloadError, download_file, extract_tar, file_matches
from fwdderiv.datasets.download import digest_arguments

from .makers import make_tar


def _names(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize("mode, suffix", [("w:gz", ".tgz"), ("w:bz2", ".tar.bz2"),
                                          ("w", ".tar")])
def test_extracts_files_and_folders(tmp_path, mode, suffix):
    archive = make_tar(tmp_path / f"a{suffix}", [("top", None), ("top/sub", None),
                                                 ("top/sub/b.txt", b"bee"),
                                                 ("./top/a.txt", b"ay")], mode)
    out = extract_tar(archive, tmp_path / "d", "top")
    assert out == tmp_path / "d" / "top"
    assert _names(tmp_path / "d") == ["top", "top/a.txt", "top/sub", "top/sub/b.txt"]
    assert (out / "sub" / "b.txt").read_bytes() == b"bee"


def test_refusal_midway_leaves_nothing(tmp_path):
    archive = make_tar(tmp_path / "a.tgz", [("top/a.txt", b"ay"), ("top/../../x", b"x")])
    with pytest.raises(ValueError, match=r"refused: member 'top/\.\./\.\./x' points outside"):
        extract_tar(archive, tmp_path / "d", "top")
    assert _names(tmp_path / "d") == []
    assert not (tmp_path / "x").exists()


def test_accept_and_budget(tmp_path):
    archive = make_tar(tmp_path / "a.tgz", [("top/a.txt", b"ay"), ("top/b.bin", b"b" * 100)])
    with pytest.raises(ValueError, match=r"'top/b\.bin' is not a file this data set holds"):
        extract_tar(archive, tmp_path / "d", "top", accept=lambda rel: rel.endswith(".txt"))
    with pytest.raises(ValueError, match=r"its files exceed 50 bytes"):
        extract_tar(archive, tmp_path / "d", "top", max_bytes=50)
    assert _names(tmp_path / "d") == []
    extract_tar(archive, tmp_path / "d", "top")
    with pytest.raises(FileExistsError, match="exists already"):
        extract_tar(archive, tmp_path / "d", "top")


def test_damaged_archives(tmp_path):
    (tmp_path / "junk.tgz").write_bytes(b"this is no archive")
    with pytest.raises(ValueError, match=r"not a readable tar file"):
        extract_tar(tmp_path / "junk.tgz", tmp_path / "d", "top")
    good = make_tar(tmp_path / "a.tgz", [("top/a.bin", os.urandom(100_000))])
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good.read_bytes()[:-2000])
    with pytest.raises(ValueError, match=r"not a readable tar file.*cut short"):
        extract_tar(cut, tmp_path / "d", "top")
    empty = make_tar(tmp_path / "e.tgz", [("other", None)])
    with pytest.raises(ValueError, match=r"outside the expected folder top/"):
        extract_tar(empty, tmp_path / "d", "top")
    assert _names(tmp_path / "d") == []


def test_sha256_and_size_checks(tmp_path, http_server):
    url, www = http_server
    blob = b"flowers" * 1000
    (www / "f.tgz").write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    path = download_file("f.tgz", tmp_path / "a", [url], sha256=sha, size=len(blob))
    assert path.read_bytes() == blob and file_matches(path, sha)
    assert file_matches(path, hashlib.md5(blob).hexdigest())
    assert not file_matches(path, "0" * 64)
    with pytest.raises(DownloadError, match=r"size mismatch: expected 10 bytes, the mirror "
                                            r"sent more"):
        download_file("f.tgz", tmp_path / "b", [url], sha256=sha, size=10)
    with pytest.raises(DownloadError, match=r"SHA-256 mismatch"):
        download_file("f.tgz", tmp_path / "b", [url], **digest_arguments("1" * 64))
    assert list((tmp_path / "b").iterdir()) == []
    with pytest.raises(ValueError, match=r"sha256 for f\.tgz must be 64 hexadecimal"):
        download_file("f.tgz", tmp_path / "b", [url], sha256="abc")
