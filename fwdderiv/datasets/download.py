"""Downloading a file from a list of mirrors, checksummed and written atomically.

Only the standard library is used (``urllib``, ``hashlib``). A file is streamed into a
temporary file beside its destination, its MD5 is compared with the expected one, and
only then is it renamed into place (``os.replace``, atomic on one file system): an
interrupted or rejected download never leaves a partial file under the final name,
and the temporary file is removed on every failure.
"""
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["DOWNLOAD_TIMEOUT", "DownloadError", "download_file", "md5sum"]

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


def _fetch(url, dest, md5, timeout):
    """Stream ``url`` into a temporary file, check its MD5, rename it to ``dest``."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest, size = hashlib.md5(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) != size:
            raise _BadContent(f"incomplete transfer: got {size} of {declared} bytes")
        if digest.hexdigest() != md5.lower():
            raise _BadContent(
                f"MD5 mismatch: expected {md5.lower()}, got {digest.hexdigest()} "
                f"({size} bytes)")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reason(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def download_file(name, dest_dir, mirrors, md5, timeout=DOWNLOAD_TIMEOUT):
    """Download ``name`` from the first mirror that serves it with the right MD5.

    Parameters
    ----------
    name : str
        File name, appended to each mirror's base URL.
    dest_dir : str or os.PathLike
        Directory to write ``dest_dir/name`` into (created if missing).
    mirrors : sequence of str
        Base URLs tried in order, e.g. ``"https://ossci-datasets.s3.amazonaws.com/mnist/"``.
    md5 : str
        Expected hexadecimal MD5 of the file.
    timeout : float, optional
        Seconds per connection attempt or read (default :data:`DOWNLOAD_TIMEOUT`).

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
        If ``mirrors`` is empty or ``md5`` is not a 32-character hexadecimal digest.
    """
    if not isinstance(md5, str) or len(md5) != 32 or \
            any(c not in "0123456789abcdef" for c in md5.lower()):
        raise ValueError(f"download_file: an expected MD5 for {name} is required (32 "
                         f"hexadecimal characters), got {md5!r}; every download is "
                         "verified: pass the checksum published with the file")
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
            _fetch(url, dest, md5, timeout)
            return dest
        except (_BadContent, urllib.error.URLError, http.client.HTTPException,
                OSError, ValueError) as exc:
            failures.append((url, str(exc) if isinstance(exc, _BadContent)
                             else _reason(exc)))
    lines = "\n".join(f"  {url}: {why}" for url, why in failures)
    if all(why.startswith(("MD5 mismatch", "incomplete")) for _, why in failures):
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
