"""Hostile files, arrays and arguments, run in a subprocess under an address-space limit.

Every case must end in a ``ValueError``/``TypeError``/``OSError`` naming the component (and
the file, for files), or succeed with a correct result; a ``MemoryError`` or any other
exception is a failure. The limit (:data:`LIMIT_MB`) is far below what the bombs declare
(from 1.25 GiB to 2**96 bytes) and above what fwdderiv needs to import, load LeNet-5 and
read the real MNIST test set (about 700 MB of address space with NumPy, Numba and
OpenBLAS mapped; measured with the control cases below), so a bomb that allocated
what it declares would crash the worker instead of raising a clear error.
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fwdderiv as fd

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 1024
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def run_worker(cases, folder):
    spec = Path(folder) / "cases.json"
    spec.write_text(json.dumps(cases))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "tests.hostile_worker", str(LIMIT_MB),
                           str(spec)], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == {c["id"] for c in cases}
    return results


def assert_clear(result, case, names=()):
    """A clear error (or success): never a crash; the message names ``names``."""
    assert result["outcome"] in ("ok", "error"), (case, result)
    if result["outcome"] == "error":
        assert result["type"] in ("ValueError", "TypeError", "FileNotFoundError",
                                  "DownloadError"), (case, result)
        for name in names:
            assert name in result["message"], (case, result)


# -- files made by hand: the bombs ----------------------------------------------------------
def model_file(path, layers, arrays=None, fmt="fwdderiv.sequential", **extra):
    arch = {"format": fmt, "version": 1, "layers": layers, **extra}
    np.savez(path, __architecture__=np.array(json.dumps(arch)), **(arrays or {}))
    return str(path)


def forged_member(path, declared, forge_zip_sizes):
    """A stored .npz whose weight member's .npy header declares ``declared`` float32
    values while holding 3; optionally the zip directory's sizes claim them too."""
    n = declared
    model_file(path, [{"type": "Linear", "config": {"in_features": n, "out_features": 1,
                                                    "bias": False}}],
               {"0.weight": np.zeros((1, 3), np.float32)})
    data = bytearray(Path(path).read_bytes())
    old, new = b"(1, 3), }" + b" " * 10, f"(1, {n}), }}".encode()   # eats header padding
    with zipfile.ZipFile(path) as zf:
        member = zf.read("0.weight.npy").replace(old, new.ljust(len(old)))
    at = data.find(old)
    assert at > 0
    data[at:at + len(old)] = new.ljust(len(old))
    crc = zlib.crc32(member).to_bytes(4, "little")         # a forger fixes the CRC too
    local, central = data.find(b"0.weight.npy") - 30, data.rfind(b"0.weight.npy") - 46
    data[local + 14:local + 18] = crc
    data[central + 16:central + 20] = crc
    if forge_zip_sizes:
        size = 128 + 4 * n
        for sig, off in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
            name_at = data.rfind(b"0.weight.npy") if sig == b"PK\x01\x02" else \
                data.find(b"0.weight.npy")
            hdr = name_at - (46 if sig == b"PK\x01\x02" else 30)
            assert data[hdr:hdr + 4] == sig
            data[hdr + off:hdr + off + 8] = size.to_bytes(4, "little") * 2
    Path(path).write_bytes(bytes(data))
    return str(path)


def gzip_zeros(header, n_mib):
    """A gzip stream of ``header`` then ``n_mib`` MiB of zeros, built in milliseconds by
    repeating one fully flushed deflate block (the reader must never inflate it all)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(1 << 20)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    body = head + block * n_mib + c.flush()
    crc = zlib.crc32(header)
    for _ in range(n_mib):
        crc = zlib.crc32(zeros, crc)
    size = (len(header) + (n_mib << 20)) & 0xFFFFFFFF
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body
            + crc.to_bytes(4, "little") + size.to_bytes(4, "little"))


def idx_header(code, dims, magic_zero=b"\x00\x00"):
    return magic_zero + bytes([code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def test_bombs_and_hostile_arguments_under_an_address_space_limit(tmp_path):
    d = tmp_path
    good = d / "lenet5.npz"
    fd.save(fd.models.lenet5(), good)
    (d / "bomb_mnist").mkdir()
    big = gzip_zeros(idx_header(0x08, (1280, 1024, 1024)), 1280)      # 1.25 GiB, valid IDX
    assert len(big) < 2 << 20
    (d / "bomb_mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(big)
    (d / "bomb_mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_header(0x08, (1280,)) + bytes(1280)))
    (d / "labels_bomb.gz").write_bytes(gzip_zeros(idx_header(0x08, (3,)) + b"\x01\x02\x03",
                                                  1280))
    (d / "overflow.idx").write_bytes(idx_header(0x0E, (2**32 - 1,) * 3) + bytes(64))
    (d / "report_is_a_file").write_text("x")
    (d / "dir.npz").mkdir()
    huge = 10**9
    cases = [
        # controls: the limit bites, and legitimate work fits under it
        {"id": "control-alloc", "kind": "jsma", "x": {"fill": 0.5, "shape": [2**28, 1]},
         "targets": 0},
        {"id": "control-load", "kind": "load", "path": str(good)},
        {"id": "linear-1e9", "kind": "load", "path": model_file(
            d / "a.npz", [{"type": "Linear", "config": {"in_features": huge,
                                                        "out_features": huge}}])},
        {"id": "conv-bomb", "kind": "load", "path": model_file(
            d / "b.npz", [{"type": "Conv2d", "config": {"in_channels": 2**40,
                                                        "out_channels": 2**40,
                                                        "kernel_size": 2**16}}])},
        {"id": "graph-bomb", "kind": "load", "path": model_file(
            d / "g.npz", None, fmt="fwdderiv.graph", output="fc",
            nodes=[{"name": "fc", "type": "Linear", "inputs": ["input"],
                    "config": {"in_features": huge, "out_features": huge}}])},
        {"id": "npy-header-lies", "kind": "load", "kwargs": {"max_bytes": 2**40},
         "path": forged_member(d / "c.npz", 750_000_000, False)},
        {"id": "npy-and-zip-lie", "kind": "load", "kwargs": {"max_bytes": 2**40},
         "path": forged_member(d / "e.npz", 750_000_000, True)},
        {"id": "json-depth", "kind": "load", "path": str(d / "deep.npz")},
        {"id": "json-size", "kind": "load", "path": str(d / "long.npz")},
        {"id": "idx-gzip-bomb", "kind": "idx", "path": str(d / "labels_bomb.gz")},
        {"id": "idx-overflow", "kind": "idx", "path": str(d / "overflow.idx")},
        {"id": "mnist-bomb", "kind": "mnist", "path": str(d / "bomb_mnist")},
        {"id": "jsma-nan", "kind": "jsma", "x": {"fill": "nan", "shape": [2, 1, 4, 4]},
         "targets": [0, 1]},
        {"id": "jsma-image-output", "kind": "jsma", "net": "image_out",
         "x": {"fill": 0.5, "shape": [2, 1, 4, 4]}, "targets": [0, 1]},
        {"id": "fit-nan", "kind": "fit", "x": {"fill": "nan", "shape": [4, 1, 4, 4]},
         "y": [0, 1, 2, 0]},
        {"id": "cli-model", "kind": "cli", "argv": ["jacobian", "--model", "nope"]},
        {"id": "cli-data-dir", "kind": "cli", "argv": ["train", "--data-dir", str(d)]},
        {"id": "cli-train-output", "kind": "cli",
         "argv": ["train", "--output", str(d / "dir.npz")]},
        {"id": "cli-report-output", "kind": "cli",
         "argv": ["reproduce", "--output", str(d / "report_is_a_file"), "--no-figures"]},
        {"id": "cli-upsilon", "kind": "cli", "argv": ["reproduce", "--upsilon", "2"]},
        {"id": "cli-fd", "kind": "cli", "argv": ["jacobian", "--fd-examples", "9"]},
        {"id": "cli-missing-data", "kind": "cli",
         "argv": ["jacobian", "--data-dir", str(d / "nowhere")]},
        {"id": "cli-mnist-bomb", "kind": "cli",
         "argv": ["train", "--dataset", "mnist", "--data-dir", str(d / "bomb_mnist")]},
    ]
    np.savez(d / "deep.npz", __architecture__=np.array("[" * 200000))
    np.savez(d / "long.npz", __architecture__=np.array(" " * (2 << 20)))
    if MNIST.is_dir():
        cases.append({"id": "control-mnist", "kind": "mnist", "path": str(MNIST)})
    r = run_worker(cases, d)
    assert r["control-alloc"]["outcome"] == "crash" and \
        r["control-alloc"]["type"] == "MemoryError", r["control-alloc"]
    assert r["control-load"]["outcome"] == "ok", r["control-load"]
    if MNIST.is_dir():
        assert r["control-mnist"]["outcome"] == "ok", r["control-mnist"]
    expect = {
        "linear-1e9": "more than max_bytes", "conv-bomb": "more than max_bytes",
        "graph-bomb": "more than max_bytes", "npy-header-lies": "its header needs",
        "npy-and-zip-lie": "sizes are impossible", "json-depth": "not valid JSON",
        "json-size": "expected a JSON string of at most",
        "idx-gzip-bomb": "extra bytes", "idx-overflow": "truncated",
        "mnist-bomb": "more than the 268435456 bytes allowed",
        "jsma-nan": "jsma expected finite images", "jsma-image-output": "vector of K >= 2",
        "fit-nan": "fit expected finite training images",
    }
    for key, text in expect.items():
        case = next(c for c in cases if c["id"] == key)
        assert r[key]["outcome"] == "error", (key, r[key])
        assert text in r[key]["message"], (key, r[key])
        if "path" in case:
            assert case["path"] in r[key]["message"] or key == "mnist-bomb", r[key]
    cli = {"cli-model": "--model", "cli-data-dir": "--data-dir", "cli-train-output": "--output",
           "cli-report-output": "--output", "cli-upsilon": "--upsilon",
           "cli-fd": "--fd-examples", "cli-missing-data": "nowhere",
           "cli-mnist-bomb": "268435456 bytes allowed"}
    for key, option in cli.items():
        res = r[key]
        assert res["outcome"] == "exit" and res["code"] not in (0, None), (key, res)
        errors = [ln for ln in res["stderr"] if "error" in ln]
        assert len(errors) == 1 and option in errors[0], (key, res)
        assert not any("Traceback" in ln for ln in res["stderr"]), (key, res)


# -- generated cases ------------------------------------------------------------------------
SMALL = {"Linear": {"in_features": 3, "out_features": 2, "bias": True},
         "Conv2d": {"in_channels": 1, "out_channels": 2, "kernel_size": [3, 3]},
         "BatchNorm2d": {"num_features": 2, "eps": 1e-5}, "MaxPool2d": {"kernel_size": 2},
         "AvgPool2d": {"kernel_size": [2, 2], "stride": [1, 1]}, "Pad2d": {"padding": 1},
         "Dropout": {"p": 0.5}, "ReLU": {}, "Softmax": {}, "Flatten": {}}

hostile_value = st.one_of(
    st.sampled_from([0, 1, 2, 3, -1, 10**9, 2**31, 2**63, 10**30, True, None, "", "3",
                     [1], [1, 2], [1, 2, 3, 4], [2**40, 2**40], {}, 1.5, -0.0, 2.0])
    | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2**70, 2**70))


@st.composite
def model_case(draw):
    n = draw(st.integers(1, 3))
    layers, arrays = [], {}
    for i in range(n):
        typ = draw(st.sampled_from(sorted(SMALL) + ["Conv3d", "", "LAYER_TYPES"]))
        config = dict(SMALL.get(typ, {}))
        for _ in range(draw(st.integers(0, 2))):
            key = draw(st.sampled_from(sorted(config) + ["seed", "junk"]) if config
                       else st.just("junk"))
            config[key] = draw(hostile_value)
        entry = {"type": typ, "config": config}
        if draw(st.integers(0, 9)) == 0:
            entry = draw(st.sampled_from([None, [], "ReLU", {"type": typ}]))
        layers.append(entry)
        try:
            from fwdderiv.schema import check_layer
            _, shapes = check_layer(typ, config, fd.layers.LAYER_TYPES)
        except Exception:
            shapes = {"weight": (2, 3)}
        for name, shape in shapes.items():
            how = draw(st.sampled_from(["good", "good", "good", "shape", "int", "nan",
                                        "missing", "object", "f16"]))
            shape = tuple(shape)
            if how == "missing" or np.prod(shape, dtype=float) > 1e6:
                continue
            a = np.ones(shape, np.float32)
            if how == "shape":
                a = np.ones(shape + (1,), np.float32)
            elif how == "int":
                a = a.astype(np.int32)
            elif how == "nan":
                a.flat[0] = np.nan
            elif how == "object":
                a = np.array([{"x": 1}], dtype=object)
            elif how == "f16":
                a = a.astype(np.float16)
            arrays[f"{i}.{name}"] = a
    top = draw(st.sampled_from(["ok"] * 6 + ["format", "version", "layers"]))
    arch = {"format": "fwdderiv.sequential", "version": 1, "layers": layers}
    if top != "ok":
        arch[top] = draw(hostile_value)
    return arch, arrays


@st.composite
def idx_case(draw):
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]))
    dims = draw(st.lists(st.one_of(st.integers(0, 5), st.sampled_from([2**31, 2**32 - 1])),
                         min_size=0, max_size=4))
    zero = draw(st.sampled_from([b"\x00\x00"] * 4 + [b"\x00\x01", b"\xff\xff"]))
    item = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(code, 1)
    exact = item * int(np.prod(dims, dtype=object)) if dims else 0
    payload = draw(st.integers(0, 80) if exact > 80 else
                   st.one_of(st.just(exact), st.just(exact), st.integers(0, 80)))
    cut = draw(st.one_of(st.none(), st.none(), st.integers(0, 20)))
    blob = idx_header(code, dims, zero) + bytes(range(payload % 256)) * (payload // 256 + 1)
    blob = blob[:len(idx_header(code, dims, zero)) + payload]
    if cut is not None:
        blob = blob[:cut]
    return blob, draw(st.booleans())


@st.composite
def call_case(draw):
    kw = {}
    for key in draw(st.lists(st.sampled_from(["theta", "upsilon", "clip", "batch_size",
                                              "max_iter", "max_memory", "logits"]),
                             max_size=3, unique=True)):
        kw[key] = draw(hostile_value)
    fill = draw(st.sampled_from([0.5, 0.5, "nan", "inf", 7.0]))
    targets = draw(st.one_of(hostile_value, st.lists(hostile_value, min_size=2, max_size=2),
                             st.just([0, 1])))
    return {"kind": "jsma", "x": {"fill": fill, "shape": [2, 1, 4, 4], "at": 3},
            "targets": targets, "kwargs": kw, "max_iter_default": "max_iter" not in kw}


def _json_safe(value):
    return json.loads(json.dumps(value))        # NaN and Infinity survive (Python's JSON)


@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(models=st.lists(model_case(), min_size=20, max_size=20),
       idxs=st.lists(idx_case(), min_size=20, max_size=20),
       calls=st.lists(call_case(), min_size=20, max_size=20),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255),
                                st.sampled_from(["flip", "cut"])), min_size=10, max_size=10))
def test_generated_hostile_inputs_get_clear_errors(models, idxs, calls, flips):
    with tempfile.TemporaryDirectory() as folder:
        d = Path(folder)
        cases, meta = [], {}
        for i, (arch, arrays) in enumerate(models):
            path = d / f"m{i}.npz"
            np.savez(path, __architecture__=np.array(json.dumps(arch)), **arrays)
            cases.append({"id": f"model{i}", "kind": "load", "path": str(path)})
        good = d / "good.npz"
        fd.save(fd.models.lenet5(), good)
        blob = good.read_bytes()
        for i, (pos, xor, how) in enumerate(flips):
            data = bytearray(blob)
            pos %= len(data)
            if how == "flip":
                data[pos] ^= xor
            else:
                data = data[:pos]
            path = d / f"f{i}.npz"
            path.write_bytes(bytes(data))
            cases.append({"id": f"flip{i}", "kind": "load", "path": str(path)})
        for i, (data, gz) in enumerate(idxs):
            path = d / (f"i{i}.idx" + (".gz" if gz else ""))
            path.write_bytes(gzip.compress(data) if gz else data)
            cases.append({"id": f"idx{i}", "kind": "idx", "path": str(path)})
            meta[f"idx{i}"] = data
        for i, call in enumerate(calls):
            call = {**call, "id": f"call{i}", "targets": _json_safe(call["targets"]),
                    "kwargs": _json_safe(call["kwargs"])}
            cases.append(call)
        r = run_worker(cases, d)
    for case in cases:
        res = r[case["id"]]
        if case["kind"] in ("load", "idx"):
            assert_clear(res, case, names=[case["path"]])
        else:
            assert_clear(res, case, names=["jsma"])
            if case["x"]["fill"] != 0.5:         # NaN, Inf, or outside clip: never "ok"
                assert res["outcome"] == "error", (case, res)
        if case["kind"] == "idx" and res["outcome"] == "ok":
            data = meta[case["id"]]                 # the header told the truth
            dims = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(data[3])]
            item = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}[data[2]]
            assert len(data) == 4 + 4 * len(dims) + item * int(np.prod(dims)), (case, res)
