"""Saving and loading: .npz with the architecture inside, never pickle."""
import json
import zipfile

import numpy as np
import pytest

import fwdderiv as fd


def every_layer_net():
    bn = fd.BatchNorm2d(4)
    bn.running_mean = np.arange(4, dtype=np.float32)
    return fd.Sequential([
        fd.Pad2d((1, 0, 1, 0)), fd.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, seed=3), bn,
        fd.Sigmoid(), fd.MaxPool2d(2), fd.AvgPool2d(1), fd.Tanh(), fd.Flatten(), fd.Dropout(0.2),
        fd.Linear(16, 5, bias=False), fd.ReLU(), fd.Linear(5, 3), fd.LogSoftmax()])


def test_round_trip_keeps_architecture_and_weights(tmp_path):
    net = every_layer_net()
    path = tmp_path / "model.npz"
    fd.save(net, path)
    back = fd.load(path)
    assert [repr(a) for a in net] == [repr(b) for b in back]
    x = np.random.default_rng(0).normal(size=(2, 2, 7, 7))
    np.testing.assert_array_equal(back(x), net(x))
    with np.load(path, allow_pickle=False) as data:   # readable without pickle
        assert "__architecture__" in data.files


def test_save_writes_exactly_the_given_path(tmp_path):
    path = tmp_path / "sub" / "weights.bin"
    fd.save(fd.models.mlp(in_shape=(3,), hidden=()), path)
    assert path.exists() and list(path.parent.iterdir()) == [path]


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"bad.npz is not a readable .npz file"):
        fd.load(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.npz"
    fd.save(fd.models.lenet5(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        fd.load(path)


def rewrite(path, change):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(path, **arrays)


def test_mismatched_weight_shape_names_layer_and_shapes(tmp_path):
    path = tmp_path / "m.npz"
    fd.save(fd.models.lenet5(), path)
    rewrite(path, lambda a: a.__setitem__("0.weight", np.zeros((6, 1, 3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"0.weight of shape \(6, 1, 3, 3\), but layer 0 \(Conv2d\) needs \(6, 1, 5, 5\)"):
        fd.load(path)


def test_missing_extra_and_unknown_entries(tmp_path):
    path = tmp_path / "m.npz"
    fd.save(fd.models.lenet5(), path)
    rewrite(path, lambda a: a.pop("3.bias"))
    with pytest.raises(ValueError, match="lacks the array '3.bias'"):
        fd.load(path)
    fd.save(fd.models.lenet5(), path)
    rewrite(path, lambda a: a.__setitem__("99.weight", np.zeros(3)))
    with pytest.raises(ValueError, match="match no layer: 99.weight"):
        fd.load(path)
    fd.save(fd.models.lenet5(), path)

    def unknown(a):
        arch = json.loads(str(a["__architecture__"]))
        arch["layers"][0]["type"] = "Conv3d"
        a["__architecture__"] = np.array(json.dumps(arch))
    rewrite(path, unknown)
    with pytest.raises(ValueError, match="layer 0 \\(Conv3d\\): field 'type' names an unknown layer type 'Conv3d'"):
        fd.load(path)


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __architecture__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="evil.npz"):
        fd.load(path)


def test_a_plain_npz_is_not_a_model(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.zeros(3))
    with pytest.raises(ValueError, match="not a fwdderiv model"):
        fd.load(path)
    assert zipfile.is_zipfile(path)


def test_load_draws_no_random_weights(tmp_path, monkeypatch):
    import fwdderiv.core.layer as layer_module
    from fwdderiv.layers import conv, linear
    fd.save(fd.models.lenet5(seed=3), tmp_path / "m.npz")

    class NoDraws:
        def uniform(self, *args, **kwargs):
            raise AssertionError("load drew random initial weights")

    for module in (conv, linear):
        monkeypatch.setattr(module.np.random, "default_rng", lambda *a, **k: NoDraws())
    net = fd.load(tmp_path / "m.npz")
    monkeypatch.undo()
    np.testing.assert_array_equal(net.layers[0].weight, fd.models.lenet5(seed=3).layers[0].weight)
    assert not getattr(layer_module._loading, "active", False)
