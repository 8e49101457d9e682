"""Saving and loading networks: one ``.npz`` holding the architecture as JSON and the
weights as arrays. Never pickle.

Loading a file from elsewhere is safe by construction, in this order: the zip directory
and the architecture JSON are read (the JSON is bounded in size); every layer's
arguments are checked against :mod:`fwdderiv.schema` and the shapes of its arrays are
computed from them; the total size is compared with ``max_bytes``; every ``.npz`` member's
``.npy`` header (dtype, shape) and its size in the zip directory are compared with what
the architecture needs; only then are the arrays read, checked for NaN/Inf, and the layers
built. Nothing is allocated that the checks have not bounded.

Saving checks the network the same way (every parameter's shape and dtype against its
layer's arguments) and writes atomically: a temporary file in the destination folder,
flushed and fsynced, then renamed over the destination. An existing file is never
replaced by one that :func:`load` would refuse.
"""
import contextlib
import json
import math
import os
import tempfile
import zipfile
import zlib

import numpy as np

from .schema import SchemaError, check_graph, check_sequential, check_layer
from .core.layer import no_init
from .core.graph import Graph
from .core.sequential import Sequential
from . import registry
from .layers import LAYER_TYPES

__all__ = ["DEFAULT_MAX_BYTES", "architecture", "load", "save"]

FORMAT = "fwdderiv.sequential"
GRAPH_FORMAT = "fwdderiv.graph"
VERSION = 1
_ARCH_KEY = "__architecture__"

#: Default limit on the bytes of arrays :func:`load` accepts from one file (2 GiB, about
#: 500 million float32 parameters); pass ``max_bytes=`` for larger models.
DEFAULT_MAX_BYTES = 2 << 30
#: Longest architecture JSON accepted, in characters.
MAX_ARCHITECTURE_CHARS = 1 << 20
#: Deflate cannot expand data by more than about 1032:1; a zip member claiming more is
#: lying about its size (checked before any buffer is allocated for it).
_MAX_DEFLATE_RATIO = 1100
_MAX_NPY_HEADER = 1 << 14
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_CHUNK = 1 << 20


def _types():
    """The layer types a file may name: the registered ones (fwdderiv's among them)."""
    return {**LAYER_TYPES, **registry.layer_types()}


def _fail(path, what, fix="re-save the model with fwdderiv.save"):
    return ValueError(f"load: {path} {what}; {fix}")


# -- saving -------------------------------------------------------------------------------
def architecture(net):
    """The JSON-serialisable description of ``net`` (layer types and constructor args;
    for a :class:`Graph`, also the node names and the names each node reads)."""
    return _payload(net, allow_nonfinite=True)[0]


def _payload(net, allow_nonfinite):
    """``(architecture, arrays)`` of ``net``, every parameter checked against its layer."""
    if not isinstance(net, Graph):
        raise TypeError(f"save expected a fwdderiv.Sequential or fwdderiv.Graph, got "
                        f"{type(net).__name__}; build one with fd.Sequential([...])")
    chain = isinstance(net, Sequential)
    specs, arrays = [], {}
    for i, (node, layer, inputs) in enumerate(net.nodes):
        name = type(layer).__name__
        key = str(i) if chain else node
        where = f"save: layer {i} ({layer!r})" if chain else \
            f"save: node {node!r} ({layer!r})"
        if _types().get(name) is not type(layer):
            raise TypeError(f"{where} is not a built-in fwdderiv layer, so it cannot be "
                            "rebuilt from JSON; save its arrays with np.savez instead")
        try:
            config, shapes = check_layer(name, layer.get_config(), _types())
        except SchemaError as err:
            raise ValueError(f"{where}: {err}; the layer's arguments were changed after "
                             "it was built: rebuild it with valid arguments") from None
        held = {k: v for k, v in {**layer.params, **layer.buffers}.items() if v is not None}
        if set(held) != set(shapes):
            raise ValueError(f"{where} holds arrays {sorted(held)}, but its arguments "
                             f"{config} need {sorted(shapes)}; rebuild the layer")
        for pname, value in held.items():
            _check_param(where, pname, value, shapes[pname], allow_nonfinite)
            arrays[f"{key}.{pname}"] = value
        spec = {"type": name, "config": config}
        specs.append(spec if chain else dict(spec, name=node, inputs=list(inputs)))
    if chain:
        return {"format": FORMAT, "version": VERSION, "layers": specs}, arrays
    return {"format": GRAPH_FORMAT, "version": VERSION, "nodes": specs}, arrays


def _check_param(where, key, value, shape, allow_nonfinite):
    if not isinstance(value, np.ndarray) or value.dtype not in _FLOATS:
        got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise TypeError(f"{where}: {key} must be a float32 or float64 ndarray, got {got}; "
                        f"assign layer.{key} = np.asarray(value, np.float32)")
    if value.shape != tuple(shape):
        raise ValueError(f"{where}: {key} has shape {value.shape}, but the layer's "
                         f"arguments need {tuple(shape)}; assign an array of that shape "
                         "or rebuild the layer with matching arguments")
    if not allow_nonfinite and value.size and not np.isfinite(value).all():
        raise ValueError(f"{where}: {key} holds NaN or Inf values; fix the weights (a "
                         "diverged training run?) or pass allow_nonfinite=True")


def save(net, path, *, allow_nonfinite=False):
    """Write ``net`` to ``path`` (a ``.npz`` file), checked and atomically.

    Parameters
    ----------
    net : Sequential or Graph
    path : str or os.PathLike
        Written as given (no suffix is added). The folder is created if missing.
    allow_nonfinite : bool
        Write parameters holding NaN or Inf (refused by default, as :func:`load` refuses
        them).

    Raises
    ------
    ValueError, TypeError
        If a parameter's shape or dtype does not match its layer, or holds NaN/Inf; the
        message names the layer and the parameter. Nothing is written then.
    OSError
        If writing fails; an existing file at ``path`` is left as it was.
    """
    arch, arrays = _payload(net, allow_nonfinite)
    arrays = {_ARCH_KEY: np.array(json.dumps(arch)), **arrays}
    path = os.fspath(path)

    def write(f):
        np.savez(f, **arrays)

    def verify(tmp):                    # the file as written passes load's checks
        _inspect(tmp, math.inf)
    write_atomic(path, write, verify)


def write_atomic(path, write, verify=None):
    """Write a file through ``write(f)`` on a temporary file in the same folder, flushed
    and fsynced, then renamed to ``path``. ``verify(tmp_path)``, if given, runs before the
    rename. On any failure the temporary file is removed and ``path`` is untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):        # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def current_umask():
    """This process's umask, read without changing it (``os.umask`` sets it)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return 0o022


# -- loading ------------------------------------------------------------------------------
def _npy_header(zf, info, path, key):
    """``(shape, fortran_order, dtype, header_bytes)`` of one member, without its data."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                    f, max_header_size=_MAX_NPY_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                    f, max_header_size=_MAX_NPY_HEADER)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            return shape, fortran, dtype, f.tell()
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, zlib.error,
            zipfile.BadZipFile, NotImplementedError, RuntimeError) as err:
        raise _fail(path, f"has a damaged array header for {key!r} ({err})") from None


def _read_member(zf, info, path, key, header):
    """Read the data of a checked member into a buffer of exactly its declared size."""
    shape, fortran, dtype, skip = header
    count = math.prod(shape)
    out = np.empty(count, dtype=dtype)
    view = memoryview(out).cast("B")
    try:
        with zf.open(info) as f:
            f.read(skip)
            pos = 0
            while pos < len(view):
                chunk = f.read(min(_CHUNK, len(view) - pos))
                if not chunk:
                    raise EOFError(f"got {pos} of {len(view)} data bytes")
                view[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
    except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as err:
        raise _fail(path, f"has a damaged array {key!r} ({err})") from None
    native = dtype.newbyteorder("=")
    if fortran:
        return np.array(out.reshape(shape[::-1]).T, dtype=native, order="C")
    return out.reshape(shape).astype(native, copy=False)


def _open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        fix = "re-save the model with fwdderiv.save"
        with contextlib.suppress(OSError):
            with open(path, "rb") as f:
                if f.read(6) == b"\x93NUMPY":
                    fix = ("it is a single .npy array; load expects a model written by "
                           "fwdderiv.save (a .npz archive with the architecture inside)")
        raise _fail(path, f"is not a readable .npz file ({err})", fix) from None


def _architecture(zf, members, path):
    if _ARCH_KEY not in members:
        raise _fail(path, "has no architecture entry, so it is not a fwdderiv model")
    info = members[_ARCH_KEY]
    shape, fortran, dtype, skip = header = _npy_header(zf, info, path, _ARCH_KEY)
    chars = dtype.itemsize // 4 if dtype.kind == "U" else 0
    if shape != () or dtype.kind != "U" or chars > MAX_ARCHITECTURE_CHARS:
        raise _fail(path, f"has an architecture entry of dtype {dtype} and shape {shape}; "
                    f"expected a JSON string of at most {MAX_ARCHITECTURE_CHARS} characters")
    _check_member_size(info, path, _ARCH_KEY, skip + dtype.itemsize, os.path.getsize(path))
    text = str(_read_member(zf, info, path, _ARCH_KEY, header)[()])
    try:
        arch = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _fail(path, f"has an architecture entry that is not valid JSON "
                    f"({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(arch, dict):
        raise _fail(path, f"has an architecture entry that is a {type(arch).__name__}, "
                    "expected a JSON object")
    fmt, version = arch.get("format"), arch.get("version")
    if fmt not in (FORMAT, GRAPH_FORMAT):
        raise _fail(path, f"has format {fmt!r}, expected {FORMAT!r} or {GRAPH_FORMAT!r}")
    if version != VERSION or isinstance(version, bool):
        raise _fail(path, f"has format version {version!r}; this fwdderiv reads version "
                    f"{VERSION}", "upgrade fwdderiv or re-save the model")
    return arch


def _check_member_size(info, path, key, want, file_size):
    if info.file_size != want:
        raise _fail(path, f"has a zip entry for {key!r} of {info.file_size} bytes, but its "
                    f"header needs {want}; the file is damaged or was edited")
    if info.compress_size > file_size or (
            info.compress_type != zipfile.ZIP_STORED
            and info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024):
        raise _fail(path, f"has a zip entry for {key!r} whose sizes are impossible "
                    f"({info.compress_size} compressed, {info.file_size} uncompressed, in "
                    f"a {file_size}-byte file); the file is damaged or forged")


def _inspect(path, max_bytes):
    """Every check that needs no array data. Returns ``(arch, entries, headers)``."""
    file_size = os.path.getsize(path)
    with _open_zip(path) as zf:
        infos = zf.infolist()
        members = {}
        for info in infos:
            if not info.filename.endswith(".npy") or info.filename[:-4] in members:
                raise _fail(path, f"holds an unexpected zip entry {info.filename!r}")
            members[info.filename[:-4]] = info
        arch = _architecture(zf, members, path)
        try:
            if arch["format"] == FORMAT:
                entries, output = check_sequential(arch, _types()), None
            else:
                entries, output = check_graph(arch, _types())
        except SchemaError as err:
            raise _fail(path, f"has an invalid architecture: {err}") from None
        expected = {key: (f"{label} ({type_name})", shape)
                    for label, type_name, _, arrays, *_ in entries
                    for key, shape in arrays.items()}
        floats = sum(math.prod(s) for _, s in expected.values())
        if 4 * floats > max_bytes:
            raise _fail(path, f"declares {floats} parameters ({4 * floats} bytes even as "
                        f"float32), more than max_bytes={max_bytes}",
                        "if you trust the file, pass a larger max_bytes to load")
        extra = sorted(set(members) - set(expected) - {_ARCH_KEY})
        if extra:
            raise _fail(path, f"has arrays that match no layer: {', '.join(extra)}")
        headers, total = {}, 0
        for key, (ltype, shape) in expected.items():
            if key not in members:
                raise _fail(path, f"lacks the array {key!r} of {ltype}")
            h = _npy_header(zf, members[key], path, key)
            if h[2] not in _FLOATS and h[2].newbyteorder("=") not in _FLOATS:
                raise _fail(path, f"has {key} ({ltype}) of dtype {h[2]}, expected float32 "
                            "or float64")
            if h[0] != tuple(shape):
                raise _fail(path, f"has {key} of shape {h[0]}, but {ltype} needs "
                            f"{tuple(shape)}")
            nbytes = math.prod(shape) * h[2].itemsize
            _check_member_size(members[key], path, key, h[3] + nbytes, file_size)
            total += nbytes
            headers[key] = h
        if total > max_bytes:
            raise _fail(path, f"holds {total} bytes of arrays, more than max_bytes="
                        f"{max_bytes}", "if you trust the file, pass a larger max_bytes")
    return arch, entries, output, headers, members


def load(path, *, allow_nonfinite=False, max_bytes=DEFAULT_MAX_BYTES):
    """Rebuild the network saved by :func:`save` at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    allow_nonfinite : bool
        Accept weights holding NaN or Inf (refused by default).
    max_bytes : int
        Largest total size of the weights accepted (default :data:`DEFAULT_MAX_BYTES`),
        checked from the architecture before anything is read.

    Returns
    -------
    Sequential or Graph

    Raises
    ------
    ValueError
        If the file is not a fwdderiv model, is damaged, declares more than ``max_bytes``,
        or its weights do not match its architecture; the message names the file, the
        layer and the field.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = os.fspath(path)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise TypeError(f"load expected max_bytes as a positive int, got {max_bytes!r}")
    arch, entries, output, headers, members = _inspect(path, max_bytes)
    layers = []
    with zipfile.ZipFile(path) as zf:
        for label, type_name, config, arrays, *_ in entries:
            try:
                with no_init():                     # the file's arrays replace them
                    layer = _types()[type_name](**config)
            except (TypeError, ValueError) as err:      # the schema missed a rule
                raise _fail(path, f"has arguments that {label} ({type_name}) refuses: "
                            f"{err}") from None
            held = {**layer.params, **layer.buffers}
            for key in arrays:
                name = key.rsplit(".", 1)[1]
                if name not in held or held[name] is None:
                    raise RuntimeError(f"the load schema of {type_name} is out of date: the layer "
                                       f"has no array {name!r}")
                value = _read_member(zf, members[key], path, key, headers[key])
                if not allow_nonfinite and not np.isfinite(value).all():
                    raise _fail(path, f"has NaN or Inf values in {key} ({label}, "
                                f"{type_name})", "pass allow_nonfinite=True to load it anyway")
                setattr(layer, name, value)
            layers.append(layer)
    if arch["format"] == FORMAT:
        return Sequential(layers)
    try:
        return Graph([(e[4], layer, e[5]) for e, layer in zip(entries, layers)], output)
    except (TypeError, ValueError) as err:
        raise _fail(path, f"has a graph that does not connect ({err})") from None
