"""load refuses hostile files before allocating; save never replaces a good file with a bad
one. (The same inputs under an address-space limit: tests/test_hostile.py.)"""
import json
import os
import zipfile

import numpy as np
import pytest

import fwdderiv as fd
import fwdderiv.io as fio
from fwdderiv.schema import LAYER_SCHEMAS


def write_model(path, layers, arrays=(), fmt="fwdderiv.sequential", **extra):
    arch = {"format": fmt, "version": 1, "layers": layers, **extra}
    np.savez(path, __architecture__=np.array(json.dumps(arch)), **dict(arrays))
    return path


def linear(i, o, bias=True):
    return {"type": "Linear", "config": {"in_features": i, "out_features": o, "bias": bias}}


@pytest.mark.parametrize("layers, message", [
    ({"0": 1}, r"field 'layers' must be a list"),
    ([{"type": "Linear", "config": {"in_features": 3}}],
     r"layer 0 \(Linear\): field 'out_features' is missing"),
    ([{"type": "Linear", "config": {"in_features": -3, "out_features": 2}}],
     r"layer 0 \(Linear\): field 'in_features' must be >= 1, got -3"),
    ([{"type": "Linear", "config": {"in_features": 3, "out_features": 2, "bias": "yes"}}],
     r"field 'bias' must be true or false, got str 'yes'"),
    ([{"type": "Linear", "config": {"in_features": 3.0, "out_features": 2}}],
     r"field 'in_features' must be an int >= 1, got float 3.0"),
    ([{"type": "BatchNorm2d", "config": {"num_features": 2, "eps": -1e-5}}],
     r"layer 0 \(BatchNorm2d\): field 'eps' must be a finite number in \(0, inf\]"),
    ([{"type": "Dropout", "config": {"p": 1.5}}], r"field 'p' must be a finite number in"),
    ([{"type": "Conv2d", "config": {"in_channels": 3, "out_channels": 4, "kernel_size": 3,
                                    "groups": 2}}], r"divisible by 'groups' \(2\)"),
    ([{"type": "MaxPool2d", "config": {"kernel_size": [2, 2, 2]}}],
     r"field 'kernel_size' must be an int or a list of 2 ints"),
    ([{"type": "ReLU", "config": {"inplace": True}}], r"unknown argument\(s\) \['inplace'\]"),
    ([{"type": "ReLU", "config": []}], r"field 'config' must be an object"),
    (["ReLU"], r"layer 0: must be an object with 'type' and 'config'"),
    ([{"config": {}}], r"layer 0: field 'type' is missing"),
])
def test_bad_architecture_names_file_layer_and_field(tmp_path, layers, message):
    path = write_model(tmp_path / "m.npz", layers)
    with pytest.raises(ValueError, match=message) as info:
        fd.load(path)
    assert str(path) in str(info.value)


def test_registered_type_without_schema_is_refused(tmp_path, monkeypatch):
    class Custom(fd.ReLU):
        pass
    monkeypatch.setitem(fio.LAYER_TYPES, "Custom", Custom)
    path = write_model(tmp_path / "m.npz", [{"type": "Custom", "config": {}}])
    with pytest.raises(ValueError, match="'Custom' has no load schema"):
        fd.load(path)
    assert "Custom" not in LAYER_SCHEMAS


def test_declared_size_is_checked_before_anything_is_read(tmp_path):
    path = write_model(tmp_path / "bomb.npz", [linear(10**9, 10**9)])
    with pytest.raises(ValueError, match=r"declares 1000000001000000000 parameters .* more "
                                         r"than max_bytes=2147483648"):
        fd.load(path)
    # a real model over a small limit: the limit is configurable
    net = fd.models.mlp(in_shape=(4,), hidden=(3,))
    fd.save(net, tmp_path / "ok.npz")
    with pytest.raises(ValueError, match="more than max_bytes=20; if you trust the file"):
        fd.load(tmp_path / "ok.npz", max_bytes=20)
    assert len(fd.load(tmp_path / "ok.npz", max_bytes=1000)) == len(net)
    with pytest.raises(TypeError, match="max_bytes as a positive int"):
        fd.load(tmp_path / "ok.npz", max_bytes="1e9")


def test_member_whose_zip_size_disagrees_with_its_header_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    fd.save(fd.Sequential([fd.Linear(3, 2)]), path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        size = zf.getinfo("0.weight.npy").file_size
    # the central directory's entry (46-byte header, then the name) is the name's last
    # occurrence; its uncompressed size sits at offset 24
    cd = data.rfind(b"0.weight.npy") - 46
    assert data[cd:cd + 4] == b"PK\x01\x02"
    assert int.from_bytes(data[cd + 24:cd + 28], "little") == size
    data[cd + 24:cd + 28] = (size + 2**30).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"zip entry for '0.weight' of \d+ bytes, but its "
                                         r"header needs \d+"):
        fd.load(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_weights_are_refused_unless_allowed(tmp_path, bad):
    w = np.ones((2, 3), np.float32)
    w[1, 2] = bad
    path = write_model(tmp_path / "m.npz", [linear(3, 2)],
                       {"0.weight": w, "0.bias": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match=r"NaN or Inf values in 0.weight \(layer 0, Linear\)"):
        fd.load(path)
    net = fd.load(path, allow_nonfinite=True)
    np.testing.assert_array_equal(net[0].weight, w)


def test_integer_weights_and_npy_files_are_refused_with_a_hint(tmp_path):
    path = write_model(tmp_path / "m.npz", [linear(3, 2, bias=False)],
                       {"0.weight": np.ones((2, 3), np.int64)})
    with pytest.raises(ValueError, match=r"0.weight \(layer 0 \(Linear\)\) of dtype int64"):
        fd.load(path)
    np.save(tmp_path / "w.npy", np.ones(3))
    with pytest.raises(ValueError, match="it is a single .npy array"):
        fd.load(tmp_path / "w.npy")


def test_architecture_entry_must_be_small_json(tmp_path):
    np.savez(tmp_path / "a.npz", __architecture__=np.zeros(3))
    with pytest.raises(ValueError, match="expected a JSON string"):
        fd.load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", __architecture__=np.array("[" * 100000 + "]" * 100000))
    with pytest.raises(ValueError, match="not valid JSON"):
        fd.load(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", __architecture__=np.array("[1, 2]"))
    with pytest.raises(ValueError, match="is a list, expected a JSON object"):
        fd.load(tmp_path / "c.npz")


def test_big_endian_and_fortran_order_arrays_load_as_native(tmp_path):
    w = np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3))
    path = write_model(tmp_path / "m.npz", [linear(3, 2, bias=False)], {"0.weight": w})
    net = fd.load(path)
    assert net[0].weight.dtype == np.float64 and net[0].weight.flags.c_contiguous
    np.testing.assert_array_equal(net[0].weight, w)


def test_graph_architecture_is_checked_with_the_same_rules(tmp_path):
    nodes = [{"name": "fc", "type": "Linear", "inputs": ["input"],
              "config": {"in_features": 3, "out_features": 2}},
             {"name": "act", "type": "ReLU", "inputs": ["fc", "nowhere"], "config": {}}]
    path = write_model(tmp_path / "g.npz", None, fmt="fwdderiv.graph", nodes=nodes,
                       output="act")
    with pytest.raises(ValueError, match=r"node 1 'act': field 'inputs' names \['nowhere'\]"):
        fd.load(path)
    nodes[1]["inputs"] = ["fc"]
    nodes[0]["config"]["out_features"] = 0
    write_model(path, None, fmt="fwdderiv.graph", nodes=nodes, output="act")
    with pytest.raises(ValueError, match=r"node 0 'fc' \(Linear\): field 'out_features' "
                                         r"must be >= 1"):
        fd.load(path)
    nodes[0]["config"]["out_features"] = 2
    write_model(path, None, fmt="fwdderiv.graph", nodes=nodes, output="act")
    with pytest.raises(ValueError, match=r"lacks the array 'fc.weight' of node 0 'fc'"):
        fd.load(path)


# -- save -----------------------------------------------------------------------------------
def good_file(tmp_path):
    path = tmp_path / "model.npz"
    fd.save(fd.models.mlp(in_shape=(4,), hidden=(3,)), path)
    return path, path.read_bytes()


def test_save_refuses_a_parameter_of_the_wrong_shape_and_keeps_the_old_file(tmp_path):
    path, before = good_file(tmp_path)
    net = fd.models.mlp(in_shape=(4,), hidden=(3,))
    net[1].weight = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"layer 1 \(Linear\(in_features=4, out_features=3.*weight has shape \(3, 5\), "
                                         r"but the layer's arguments need \(3, 4\)"):
        fd.save(net, path)
    net[1].weight = np.zeros((3, 4), np.int32)
    with pytest.raises(TypeError, match="weight must be a float32 or float64 ndarray"):
        fd.save(net, path)
    net[1].weight = np.full((3, 4), np.nan, np.float32)
    with pytest.raises(ValueError, match="holds NaN or Inf"):
        fd.save(net, path)
    with pytest.raises(ValueError, match="holds NaN or Inf"):
        fd.training.save_checkpoint(net, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    fd.save(net, path, allow_nonfinite=True)
    assert np.isnan(fd.load(path, allow_nonfinite=True)[1].weight).all()


class Boom(OSError):
    pass


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_failure_mid_write_leaves_the_old_file_intact(tmp_path, monkeypatch, where):
    path, before = good_file(tmp_path)
    net = fd.models.mlp(in_shape=(4,), hidden=(8,), seed=1)
    if where == "write":
        real = np.savez

        def half_then_fail(f, **arrays):        # a disk that fills up half way
            real(f, **arrays)
            f.truncate(f.tell() // 2)
            raise Boom("No space left on device")
        monkeypatch.setattr(fio.np, "savez", half_then_fail)
    elif where == "fsync":
        monkeypatch.setattr(fio.os, "fsync", lambda fd_: (_ for _ in ()).throw(Boom("EIO")))
    else:
        monkeypatch.setattr(fio.os, "replace", lambda a, b: (_ for _ in ()).throw(Boom("x")))
    with pytest.raises(Boom):
        fd.training.save_checkpoint(net, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    monkeypatch.undo()
    fd.save(net, path)          # then a good save replaces it
    assert fd.load(path)[1].weight.shape == (8, 4)


def test_saved_file_gets_the_usual_permissions(tmp_path):
    path, _ = good_file(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def residual_graph():
    return fd.Graph([
        ("stem.conv", fd.Conv2d(2, 2, 3, padding=1, seed=2), "input"),
        ("stem.bn", fd.BatchNorm2d(2), "stem.conv"),
        ("scale", fd.Scale(0.5), "stem.bn"),
        ("add", fd.Add(), ["scale", "input"]),
        ("pad", fd.Pad((0, 1)), "add"),
        ("flat", fd.Flatten(), "pad"),
        ("fc", fd.Linear(2 * 4 * 5, 3), "flat")])


def test_graph_round_trip_and_graph_checks(tmp_path):
    net = residual_graph()
    path = tmp_path / "g.npz"
    fd.save(net, path)
    back = fd.load(path)
    x = np.random.default_rng(1).normal(size=(2, 2, 4, 4))
    np.testing.assert_array_equal(back(x), net(x))
    assert [n for n, _, _ in back.nodes] == [n for n, _, _ in net.nodes]
    net.layers[-1].bias = np.full(3, np.inf, np.float32)
    with pytest.raises(ValueError, match=r"save: node 'fc' \(Linear.*bias holds NaN or Inf"):
        fd.save(net, path)
    assert fd.load(path)   # still the good file

    def edit(change):
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        arch = json.loads(str(arrays.pop("__architecture__")))
        change(arch, arrays)
        np.savez(tmp_path / "e.npz", __architecture__=np.array(json.dumps(arch)), **arrays)
        return tmp_path / "e.npz"
    bad_pad = edit(lambda a, _: a["nodes"][4]["config"].__setitem__("pad", [0, 10**9]))
    with pytest.raises(ValueError, match=r"node 4 'pad' \(Pad\): field 'pad' must hold ints "
                                         r">= 0 and <= 65536"):
        fd.load(bad_pad)
    dead = edit(lambda a, _: a["nodes"].append(
        {"name": "extra", "type": "ReLU", "config": {}, "inputs": ["add"]}))
    with pytest.raises(ValueError, match="has a graph that does not connect"):
        fd.load(dead)
    nan = edit(lambda _, arrays: arrays["stem.bn.running_var"].__setitem__(0, np.nan))
    with pytest.raises(ValueError, match=r"NaN or Inf values in stem.bn.running_var \(node 1 "
                                         r"'stem.bn', BatchNorm2d\)"):
        fd.load(nan)
