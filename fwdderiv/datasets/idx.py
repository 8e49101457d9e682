"""Reading and writing IDX files, the format of the MNIST distribution.

An IDX file is a big-endian header followed by a dense array::

    bytes 0-1   zero
    byte  2     element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64)
    byte  3     number of dimensions d
    4 * d bytes the size of each dimension, unsigned 32-bit big-endian
    then        prod(sizes) elements, big-endian, row-major

Read as one big-endian 32-bit integer, the first four bytes are the *magic number*:
2051 (0x00000803) for MNIST images (uint8, 3 dimensions) and 2049 (0x00000801) for
MNIST labels (uint8, 1 dimension). Files whose name ends in ``.gz`` are gzip streams
holding an IDX file. The format is described at http://yann.lecun.com/exdb/mnist/.
"""
import gzip
import math
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

#: IDX element type code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_HEADER_FIX = ("the file is damaged or not an IDX file: delete it and download it again "
               "(e.g. load_mnist(root, download=True)) or replace it with a good copy")


#: Deflate cannot expand data by more than about 1032:1, so a gzip file of n bytes holds
#: at most this many times n bytes; a header declaring more is refused before reading.
MAX_GZIP_RATIO = 1100

_CHUNK = 1 << 20


def _gzip_error(path, exc):
    # gzip.BadGzipFile is an OSError; a cut-off stream is an EOFError.
    return ValueError(
        f"IDX file {path}: not a valid gzip stream ({type(exc).__name__}: {exc}); "
        "the download was probably interrupted or the file is corrupt: delete it and "
        "download it again, or, if it is an uncompressed IDX file, remove the .gz "
        "suffix from its name")


def _read_upto(f, n, buf=None):
    """Read up to ``n`` bytes from the stream ``f``, growing ``buf`` as data arrives (so
    memory follows the data actually present, never a size a header merely claims)."""
    buf = bytearray() if buf is None else buf
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path, expected_magic=None, max_bytes=None):
    """Read an IDX file (raw or ``.gz``) into a NumPy array.

    The header is read and checked first: the magic number (when ``expected_magic`` is
    given), the element type, the number of dimensions and their product (with Python
    integers, so it cannot overflow), which must fit in the file (for ``.gz``: in
    :data:`MAX_GZIP_RATIO` times the compressed size). Only then is the payload
    decompressed, as a stream that stops one byte after the size the header implies: the
    file must hold exactly that many bytes (no fewer: truncated; no more: trailing
    garbage). A gzip bomb is never decompressed whole.

    Parameters
    ----------
    path : str or os.PathLike
        The file. A name ending in ``.gz`` is decompressed with gzip.
    expected_magic : int, optional
        Required magic number, e.g. 2051 for MNIST images, 2049 for labels.
    max_bytes : int, optional
        Refuse a header declaring a payload larger than this (checked before reading).

    Returns
    -------
    array : ndarray of shape (d_0, ..., d_{k-1})
        The payload in native byte order (uint8 for MNIST), writable.

    Raises
    ------
    ValueError
        Naming the file, what is wrong and how to fix it: bad gzip stream, short
        header, wrong magic number, unknown element type, impossible dimensions,
        truncated or oversized payload.
    FileNotFoundError
        If ``path`` does not exist.

    Examples
    --------
    >>> labels = read_idx("t10k-labels-idx1-ubyte.gz", expected_magic=2049)  # doctest: +SKIP
    >>> labels[:3]                                                          # doctest: +SKIP
    array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    gz = path.suffix == ".gz"
    file_size = path.stat().st_size
    with open(path, "rb") as raw:
        f = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        try:
            return _read_stream(f, path, gz, file_size, expected_magic, max_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            if not gz:
                raise
            raise _gzip_error(path, exc) from None


def _read_stream(f, path, gz, file_size, expected_magic, max_bytes):
    head = bytes(_read_upto(f, 4))
    if len(head) < 4:
        raise ValueError(f"IDX file {path}: expected a 4-byte magic number, got only "
                         f"{len(head)} bytes; {_HEADER_FIX}")
    magic = int.from_bytes(head, "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"IDX file {path}: magic number {magic} (0x{magic:08X}), expected "
            f"{expected_magic} (0x{expected_magic:08X}); check that images and labels are "
            f"not swapped and that the file is an IDX file; otherwise {_HEADER_FIX}")
    if head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES or head[3] == 0:
        raise ValueError(
            f"IDX file {path}: magic number 0x{magic:08X} is not a valid IDX header "
            "(expected two zero bytes, a type code in "
            f"{sorted(hex(c) for c in IDX_DTYPES)} and at least one dimension); {_HEADER_FIX}")
    dtype, ndim = IDX_DTYPES[head[2]], head[3]
    header_len = 4 + 4 * ndim
    dims = bytes(_read_upto(f, 4 * ndim))
    if len(dims) < 4 * ndim:
        raise ValueError(
            f"IDX file {path}: header declares {ndim} dimensions ({header_len} header "
            f"bytes) but the file holds only {4 + len(dims)} bytes; {_HEADER_FIX}")
    shape = tuple(int.from_bytes(dims[4 * i:4 + 4 * i], "big") for i in range(ndim))
    item_bytes = dtype.itemsize * math.prod(shape[1:])      # Python ints: no overflow
    want = shape[0] * item_bytes
    if max_bytes is not None and want > max_bytes:
        raise ValueError(
            f"IDX file {path}: its header declares shape {shape} ({want} data bytes), more "
            f"than the {max_bytes} bytes allowed here; the header is damaged or the file is "
            f"not the data set expected: {_HEADER_FIX}")
    room = MAX_GZIP_RATIO * file_size if gz else file_size - header_len
    if want > room and gz:
        raise ValueError(
            f"IDX file {path}: its header declares shape {shape} ({want} data bytes), more "
            f"than a {file_size}-byte gzip file can hold; the header is damaged or forged: "
            f"{_HEADER_FIX}")
    data = _read_upto(f, min(want, room))
    have = len(data)
    if have < want:
        complete = have // item_bytes if item_bytes else 0
        raise ValueError(
            f"IDX file {path} is truncated: its header declares shape {shape} "
            f"({shape[0]} items, {want} data bytes) but it holds {have} data bytes "
            f"({complete} complete items); the file was cut short (interrupted download?): "
            "delete it and download it again")
    extra = len(_read_upto(f, _CHUNK))
    if extra:
        more = "" if extra < _CHUNK else " or more"
        raise ValueError(
            f"IDX file {path}: its header declares shape {shape} ({want} data bytes) but "
            f"the file holds {extra}{more} extra bytes after them; the header and the data "
            f"disagree: {_HEADER_FIX}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path, array):
    """Write an array as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    The inverse of :func:`read_idx`; used to make test fixtures and to convert data
    to the MNIST format.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; a ``.gz`` suffix selects gzip compression (with a zero timestamp,
        so equal arrays give equal files).
    array : ndarray of shape (d_0, ..., d_{k-1})
        uint8, int8, int16, int32, float32 or float64, at least one dimension.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code.
    ValueError
        If the array is 0-dimensional or has more than 255 dimensions.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    key = array.dtype.newbyteorder("=")
    if key not in codes:
        raise TypeError(f"write_idx: IDX stores uint8, int8, int16, int32, float32 or "
                        f"float64, got dtype {array.dtype}; convert with array.astype(...)")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got shape "
                         f"{array.shape}; add an axis with array[None]")
    code = codes[key]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    blob = header + payload
    if path.suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)
    path.write_bytes(blob)
    return path
