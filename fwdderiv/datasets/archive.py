"""Extracting a downloaded tar archive without trusting it.

``tarfile.extractall`` would follow whatever the archive says: absolute paths, ``..``
components, symbolic and hard links, device files. :func:`extract_tar` reads the members
one by one and accepts only folders and regular files whose names lie inside one
expected top folder (and pass the caller's name check), writes each file itself by
streaming its bytes, stops at a size budget, and builds everything in a temporary
folder beside the destination that is renamed into place only when the whole archive
was read: an interrupted or refused extraction leaves nothing under the final name.
"""
import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

__all__ = ["MAX_EXTRACTED_BYTES", "MAX_MEMBERS", "extract_tar"]

#: Largest total size of the files one archive may extract (CIFAR-10's binary version
#: holds 184 MB, flower_photos 230 MB).
MAX_EXTRACTED_BYTES = 2 << 30
#: Largest number of members one archive may hold (flower_photos has about 3,700).
MAX_MEMBERS = 200_000

_CHUNK = 1 << 20


class _Refused(ValueError):
    """A member the archive should not contain."""


def _relative(member, top):
    """The member's path below ``top`` ('' for ``top`` itself), or raise _Refused."""
    name = member.name
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or ":" in path.parts[0]:
        raise _Refused(f"member {name!r} has an absolute path")
    parts = [p for p in path.parts if p != "."]
    if ".." in parts or any("\\" in p for p in parts):
        raise _Refused(f"member {name!r} points outside the archive's folder ('..')")
    if not parts or parts[0] != top:
        raise _Refused(f"member {name!r} lies outside the expected folder {top}/")
    if not (member.isdir() or member.isreg()):
        kind = ("a symbolic link" if member.issym() else "a hard link" if member.islnk()
                else "a device or FIFO" if member.isdev() else "not a regular file")
        raise _Refused(f"member {name!r} is {kind}")
    return "/".join(parts[1:])


def _write(tar, member, path):
    """Stream one regular member into ``path`` (which must not exist yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    try:
        with open(path, "xb") as out:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                out.write(chunk)
    except FileExistsError:
        raise _Refused(f"member {member.name!r} appears twice") from None
    finally:
        source.close()


def _extract_members(tar, tmp, top, accept, max_bytes):
    total = count = 0
    for member in tar:
        count += 1
        if count > MAX_MEMBERS:
            raise _Refused(f"more than {MAX_MEMBERS} members")
        rel = _relative(member, top)
        if member.isdir():
            (tmp / top / rel).mkdir(parents=True, exist_ok=True)
            continue
        if not rel or (accept is not None and not accept(rel)):
            raise _Refused(f"member {member.name!r} is not a file this data set holds")
        total += member.size
        if total > max_bytes:
            raise _Refused(f"its files exceed {max_bytes} bytes")
        _write(tar, member, tmp / top / rel)
    if not (tmp / top).is_dir():
        raise _Refused(f"it holds no folder {top}/")


def extract_tar(archive, dest_dir, top, accept=None, max_bytes=MAX_EXTRACTED_BYTES):
    """Extract the folder ``top`` of a tar archive (plain, gzip, bzip2 or xz) into
    ``dest_dir/top``, refusing anything unexpected.

    Every member must be ``top`` or lie under ``top/``; its path may not be absolute or
    contain ``..``; it must be a folder or a regular file (no symbolic or hard links, no
    devices or FIFOs); a file's path below ``top`` must pass ``accept``; the files may
    not add up to more than ``max_bytes``. The files are written into a temporary folder
    in ``dest_dir``, which is renamed to ``dest_dir/top`` once every member was read, and
    removed on any failure.

    Parameters
    ----------
    archive : str or os.PathLike
    dest_dir : str or os.PathLike
        Folder to create ``top`` in; ``dest_dir/top`` must not exist yet.
    top : str
        The one top-level folder the archive holds, e.g. ``"cifar-10-batches-bin"``.
    accept : callable, optional
        ``accept(relative_path) -> bool`` for each file's path below ``top`` (with ``/``
        separators); None accepts every file.
    max_bytes : int, optional
        Budget for the total size of the extracted files.

    Returns
    -------
    path : pathlib.Path
        ``dest_dir / top``.

    Raises
    ------
    ValueError
        If the archive is not a readable tar file or holds a member refused above; the
        message names the archive and the member.
    FileExistsError
        If ``dest_dir/top`` exists already.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest = dest_dir / top
    if dest.exists():
        raise FileExistsError(f"extract_tar: {dest} exists already; remove it to extract "
                              f"{archive.name} again")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{top}.", suffix=".part"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            _extract_members(tar, tmp, top, accept, max_bytes)
        os.replace(tmp / top, dest)
    except _Refused as exc:
        raise ValueError(f"archive {archive} refused: {exc}; it is not the expected file "
                         "(damaged, or tampered with): delete it and download it again"
                         ) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"archive {archive} is not a readable tar file ({type(exc).__name__}"
                         f": {detail}); the download was probably cut short: delete it and "
                         "download it again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
