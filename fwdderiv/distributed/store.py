"""Finished shards on disk, and the fingerprint that says whether one can be reused.

A shard is written to ``shard-00012.npz`` in the shard folder as soon as it is finished:
first under a temporary name, then renamed (``os.replace``), so a file is complete or
absent. Beside the shard's arrays it holds the shard's fingerprint, a SHA-256 over what
determines its result (the task, the network's parameters, the shard's inputs, the
settings): a later run reuses the file only when its fingerprint is the same. Files are
NumPy ``.npz`` archives read with ``allow_pickle=False``; a shard's result is therefore
an ndarray, a dict of ndarrays, or None.
"""
import functools
import hashlib
import json
import logging
import numbers
import os
from pathlib import Path

import numpy as np

log = logging.getLogger("fwdderiv.distributed")

#: Keys of a shard file that are not part of the result.
FINGERPRINT, KIND = "__fingerprint__", "__kind__"

#: What :meth:`ShardStore.load` returns for a shard that has to be computed.
MISSING = object()


def digest(obj):
    """SHA-256 (hex) of ``obj``: arrays by dtype, shape and bytes; numbers, strings, lists,
    tuples and dicts by value; a network (anything with ``params``) by its layers and
    parameters; a function by its module and name; another object by its class and
    attributes.

    Parameters
    ----------
    obj : object

    Returns
    -------
    str
        64 hexadecimal digits; equal for equal contents, whatever the object's identity.

    Examples
    --------
    >>> import numpy as np
    >>> digest(np.zeros(3)) == digest(np.zeros(3)), digest(np.zeros(3)) == digest(np.ones(3))
    (True, False)
    """
    h = hashlib.sha256()
    _feed(h, obj, set())
    return h.hexdigest()


def _feed(h, obj, seen):
    if obj is None or isinstance(obj, (bool, str, bytes, numbers.Number, np.generic)) \
            and not isinstance(obj, np.ndarray):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array_interface__"):
        a = np.ascontiguousarray(obj)
        h.update(f"array:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes() if a.dtype.kind != "O" else repr(a.tolist()).encode())
        return
    if id(obj) in seen:                       # a cycle: the object was fed already
        h.update(b"cycle;")
        return
    seen = seen | {id(obj)}
    if isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}:{len(obj)}[".encode())
        for v in obj:
            _feed(h, v, seen)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(f"dict:{len(obj)}{{".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k, seen)
            _feed(h, obj[k], seen)
        h.update(b"}")
    elif hasattr(obj, "params") and not callable(obj.params):
        h.update(f"network:{type(obj).__qualname__}:{obj!r};".encode())
        _feed(h, [sorted(p.items()) for p in obj.params], seen)
    elif isinstance(obj, functools.partial):
        h.update(b"partial:")
        _feed(h, (obj.func, obj.args, obj.keywords), seen)
    elif callable(obj) and hasattr(obj, "__qualname__"):
        h.update(f"function:{getattr(obj, '__module__', '')}.{obj.__qualname__};".encode())
    elif hasattr(obj, "__dict__"):
        h.update(f"object:{type(obj).__module__}.{type(obj).__qualname__}".encode())
        _feed(h, vars(obj), seen)
    else:
        h.update(f"{type(obj).__qualname__}:{obj!r};".encode())


def shard_fingerprint(common, part):
    """The fingerprint of one shard: ``common`` (the digest of what all shards share)
    and the shard's own inputs ``part``."""
    return digest((common, part))


def settings_digest(task, shared, args, settings):
    """The part of every shard's fingerprint that all shards share."""
    try:
        text = json.dumps(settings, sort_keys=True, default=repr)
    except (TypeError, ValueError) as err:
        raise TypeError(f"run_sharded expected settings as a JSON-able dict, got "
                        f"{type(settings).__name__} ({err})") from None
    return digest((task, shared, args, text))


class ShardStore:
    """The shard files of one run in ``folder`` (created if missing)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"run_sharded expected shard_dir to be a folder, got the file "
                             f"{str(self.folder)!r}; give a folder name")
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, index):
        return self.folder / f"shard-{index:05d}.npz"

    def load(self, index, fingerprint):
        """The result stored for shard ``index`` when its fingerprint matches, else
        :data:`MISSING` (with a warning when a file is there but unusable)."""
        path = self.path(index)
        if not path.exists():
            return MISSING
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z[FINGERPRINT]) != fingerprint:
                    log.warning("%s was written for other inputs or settings; recomputing it",
                                path)
                    return MISSING
                kind = str(z[KIND])
                fields = {k: z[k] for k in z.files if k not in (FINGERPRINT, KIND)}
        except (OSError, KeyError, ValueError, EOFError) as err:
            log.warning("cannot read %s (%s); recomputing it", path, err)
            return MISSING
        if kind == "none":
            return None
        return fields["result"] if kind == "array" else fields

    def save(self, index, fingerprint, result):
        """Write shard ``index`` whole: a temporary file renamed into place."""
        kind, fields = encode(result, index)
        path = self.path(index)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, **{FINGERPRINT: np.array(fingerprint), KIND: np.array(kind)},
                     **fields)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def clear(self):
        """Remove every shard file (the results they hold are no longer valid)."""
        for path in self.folder.glob("shard-*.npz"):
            path.unlink(missing_ok=True)


def encode(result, index):
    """``(kind, fields)`` of a shard's result for :meth:`ShardStore.save`."""
    if result is None:
        return "none", {}
    if isinstance(result, dict):
        bad = [k for k in result if not isinstance(k, str) or k.startswith("__")]
        if bad:
            raise TypeError(f"run_sharded: the task's result for shard {index} has keys "
                            f"{bad!r}; use string keys that do not start with '__'")
        return "dict", {k: _array(v, index, k) for k, v in result.items()}
    return "array", {"result": _array(result, index, None)}


def _array(value, index, key):
    a = np.asarray(value)
    if a.dtype.kind == "O":
        where = "" if key is None else f" under {key!r}"
        raise TypeError(f"run_sharded: the task returned {type(value).__name__}{where} for "
                        f"shard {index}; a task returns an ndarray, a dict of ndarrays, or "
                        "None (shard files hold plain arrays and are read without pickle)")
    return a
