"""Downloading a file from a list of mirrors, checksummed and written atomically.

Only the standard library is used (``urllib``, ``hashlib``). A file is streamed into a
temporary file beside its destination, its MD5 (or SHA-256, for files whose publisher
gives that) is compared with the expected one, and only then is it renamed into place
(``os.replace``, atomic on one file system): an interrupted or rejected download never
leaves a partial file under the final name, and the temporary file is removed on every
failure.
"""
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["DOWNLOAD_TIMEOUT", "DownloadError", "digest_arguments", "download_file",
           "file_matches", "md5sum"]

#: Seconds to wait for a mirror to connect or send data before trying the next one.
DOWNLOAD_TIMEOUT = 30.0

_CHUNK = 1 << 16


class DownloadError(OSError):
    """Raised when no mirror delivered a file with the expected checksum.

    Attributes
    ----------
    failures : list of (str, str)
        One ``(url, reason)`` pair per mirror tried, in order.
    """

    def __init__(self, message, failures=()):
        super().__init__(message)
        self.failures = list(failures)


class _BadContent(Exception):
    """The bytes arrived but are not the expected file (short, or wrong MD5)."""


def md5sum(path):
    """Return the hexadecimal MD5 digest of a file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    digest : str
        32 lowercase hexadecimal characters.
    """
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_matches(path, digest):
    """Whether the file's MD5 (a 32-character ``digest``) or SHA-256 (64 characters) is
    ``digest``.

    Parameters
    ----------
    path : str or os.PathLike
    digest : str
        Hexadecimal; case is ignored.

    Returns
    -------
    bool
    """
    algorithm = "sha256" if _is_hex(digest, 64) else "md5"
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest() == str(digest).lower()


def _fetch(url, dest, check, timeout):
    """Stream ``url`` into a temporary file, check its digest (and size), rename it to
    ``dest``. ``check`` is ``(algorithm, hex digest, size or None)``."""
    algorithm, expected, want_size = check
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest, size = hashlib.new(algorithm), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                if want_size is not None and size > want_size:
                    raise _BadContent(f"size mismatch: expected {want_size} bytes, the "
                                      "mirror sent more")
            declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) != size:
            raise _BadContent(f"incomplete transfer: got {size} of {declared} bytes")
        if want_size is not None and size != want_size:
            raise _BadContent(f"size mismatch: expected {want_size} bytes, got {size}")
        if digest.hexdigest() != expected:
            raise _BadContent(
                f"{_LABELS[algorithm]} mismatch: expected {expected}, got "
                f"{digest.hexdigest()} ({size} bytes)")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Printed names of the digest algorithms download_file checks.
_LABELS = {"md5": "MD5", "sha256": "SHA-256"}


def _is_hex(text, length):
    return isinstance(text, str) and len(text) == length and \
        all(c in "0123456789abcdef" for c in text.lower())


def digest_arguments(digest):
    """``{"md5": digest}`` or ``{"sha256": digest}`` by the digest's length (32 or 64
    hexadecimal characters), for :func:`download_file`; other lengths go to ``md5`` and
    are refused there with the usual message."""
    return {"sha256": digest} if _is_hex(digest, 64) else {"md5": digest}


def _expected(name, md5, sha256, size):
    """``(algorithm, digest, size)`` to check a download against; SHA-256 wins when both
    digests are given."""
    if sha256 is not None:
        if not _is_hex(sha256, 64):
            raise ValueError(f"download_file: sha256 for {name} must be 64 hexadecimal "
                             f"characters, got {sha256!r}; pass the published SHA-256")
        check = ("sha256", sha256.lower())
    elif _is_hex(md5, 32):
        check = ("md5", md5.lower())
    else:
        raise ValueError(f"download_file: an expected MD5 for {name} is required (32 "
                         f"hexadecimal characters; or sha256=, 64), got {md5!r}; every "
                         "download is verified: pass the checksum published with the file")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ValueError(f"download_file: size for {name} must be a byte count >= 0, got "
                         f"{size!r}")
    return check + (size,)


def _reason(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def download_file(name, dest_dir, mirrors, md5=None, timeout=DOWNLOAD_TIMEOUT, *,
                  sha256=None, size=None):
    """Download ``name`` from the first mirror that serves it with the right checksum.

    Parameters
    ----------
    name : str
        File name, appended to each mirror's base URL.
    dest_dir : str or os.PathLike
        Directory to write ``dest_dir/name`` into (created if missing).
    mirrors : sequence of str
        Base URLs tried in order, e.g. ``"https://ossci-datasets.s3.amazonaws.com/mnist/"``.
    md5 : str
        Expected hexadecimal MD5 of the file (required unless ``sha256`` is given).
    timeout : float, optional
        Seconds per connection attempt or read (default :data:`DOWNLOAD_TIMEOUT`).
    sha256 : str, optional
        Expected hexadecimal SHA-256, for files published with one instead of an MD5;
        checked instead of ``md5`` when given.
    size : int, optional
        Expected size in bytes; a mirror sending more is cut off as soon as it does.

    Returns
    -------
    path : pathlib.Path
        ``dest_dir / name``, complete and verified.

    Raises
    ------
    DownloadError
        If every mirror failed (unreachable, HTTP error, timeout, checksum mismatch);
        the message lists each URL with its reason and how to proceed. No file or
        temporary file is left behind.
    ValueError
        If ``mirrors`` is empty, or neither ``md5`` (32 hexadecimal characters) nor
        ``sha256`` (64) is a valid digest.
    """
    check = _expected(name, md5, sha256, size)
    dest_dir = Path(dest_dir)
    mirrors = [mirrors] if isinstance(mirrors, str) else list(mirrors)
    if not mirrors:
        raise ValueError(f"download_file: no mirrors given for {name}; pass a list of "
                         "base URLs such as ['https://ossci-datasets.s3.amazonaws.com/mnist/']")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name
    failures = []
    for mirror in mirrors:
        url = mirror if mirror.endswith("/") else mirror + "/"
        url += name
        try:
            _fetch(url, dest, check, timeout)
            return dest
        except (_BadContent, urllib.error.URLError, http.client.HTTPException,
                OSError, ValueError) as exc:
            failures.append((url, str(exc) if isinstance(exc, _BadContent)
                             else _reason(exc)))
    lines = "\n".join(f"  {url}: {why}" for url, why in failures)
    if all(why.startswith(("MD5 mismatch", "SHA-256 mismatch", "size mismatch",
                           "incomplete")) for _, why in failures):
        hint = ("every mirror answered but none delivered the expected file; the "
                "connection may have dropped (try again), or the file on the mirror "
                "changed or was tampered with: if you trust it, pass its MD5 in "
                "checksums=, otherwise fetch the file from elsewhere")
    else:
        hint = ("check the internet connection (and any HTTP(S)_PROXY setting), or "
                f"download the file yourself from one of these URLs into {dest_dir}, or "
                "pass other base URLs with mirrors=")
    raise DownloadError(f"could not download {name} into {dest_dir}:\n{lines}\n{hint}",
                        failures)
