"""Trained models with the project's recipe: the accuracy the issue asks for, and the cache.

The two accuracy tests train into the session cache (tests/conftest.py points
FWDDERIV_CACHE_DIR at a fresh directory), so other test files that ask for the same
pretrained model load it instead of training again.
"""
import warnings

import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.datasets import load_dataset
from fwdderiv.models.trained import (RECIPE, RECIPE_VERSION, build_model, cache_path,
                                        pretrained, pretrained_info, recipe)
from fwdderiv.training import evaluate


def test_lenet5_on_9000_mnist_images_reaches_97_percent_on_the_other_1000(mnist_dir):
    net = pretrained("lenet5", "mnist", data_dir=mnist_dir, seed=0, progress=False)
    ds = load_dataset("mnist", data_dir=mnist_dir)
    assert len(ds.x_train) == 9000 and len(ds.x_test) == 1000
    assert isinstance(net[0], fd.Pad2d) and isinstance(net[-1], fd.Softmax)
    accuracy = evaluate(net, ds.x_test, ds.y_test)
    assert accuracy >= 0.97
    info = pretrained_info("lenet5", "mnist", seed=0)
    assert info["test_accuracy"] == pytest.approx(accuracy)
    assert info["recipe"] == recipe("lenet5", "mnist") and "9000/1000" in info["data"]


def test_same_recipe_on_the_digits_reaches_95_percent():
    net = pretrained("digits_net", "digits", seed=0, progress=False)
    ds = load_dataset("digits")
    assert evaluate(net, ds.x_test, ds.y_test) >= 0.95
    shared = {k: v for k, v in RECIPE.items() if k not in ("epochs", "lr_decay")}
    assert shared.items() <= recipe("digits_net", "digits").items()


def test_second_call_loads_from_the_cache_without_training(monkeypatch):
    first = pretrained("digits_net", "digits", seed=0, progress=False)
    assert cache_path("digits_net", "digits", 0).exists()

    def no_training(*args, **kwargs):
        raise AssertionError("pretrained trained again instead of using its cache")
    monkeypatch.setattr("fwdderiv.training.fit", no_training)
    second = pretrained("digits_net", "digits", seed=0, progress=False)
    x = load_dataset("digits").x_test[:20]
    np.testing.assert_array_equal(first(x), second(x))


def test_cache_key_has_name_dataset_seed_and_recipe_version(tmp_path, monkeypatch):
    monkeypatch.setenv("FWDDERIV_CACHE_DIR", str(tmp_path))
    path = cache_path("mlp", "digits", 7)
    assert path.parent == tmp_path / "models"
    assert path.name == f"mlp-digits-seed7-r{RECIPE_VERSION}.npz"
    other = cache_path("mlp", "digits", 7, cache_dir=tmp_path / "x")
    assert other.parent == tmp_path / "x" / "models"


@pytest.mark.parametrize("damage", [b"", b"not a zip file", b"PK\x03\x04truncated"],
                         ids=["empty", "garbage", "truncated-zip"])
def test_corrupt_cache_file_is_retrained_with_a_warning(tmp_path, damage):
    path = cache_path("mlp", "digits", 0, cache_dir=tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(damage)
    with pytest.warns(RuntimeWarning, match="unusable.*training it again"):
        net = pretrained("mlp", "digits", seed=0, progress=False, cache_dir=tmp_path)
    ds = load_dataset("digits")
    assert evaluate(net, ds.x_test, ds.y_test) > 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the rewritten file loads cleanly
        again = pretrained("mlp", "digits", seed=0, progress=False, cache_dir=tmp_path)
    np.testing.assert_array_equal(again(ds.x_test[:5]), net(ds.x_test[:5]))


def test_cached_model_of_the_wrong_shape_is_retrained(tmp_path):
    path = cache_path("mlp", "digits", 0, cache_dir=tmp_path)
    fd.save(fd.models.mlp(in_shape=(1, 8, 8), n_classes=3), path)
    with pytest.warns(RuntimeWarning, match=r"output shape is \(3,\)"):
        net = pretrained("mlp", "digits", seed=0, progress=False, cache_dir=tmp_path)
    assert net.output_shape((1, 8, 8)) == (10,)


def test_unknown_pairs_and_misfit_models_are_clear_errors():
    with pytest.raises(ValueError, match="no recipe for model 'lenet5' on data set 'digits'"):
        pretrained("lenet5", "digits")
    with pytest.raises(ValueError, match=r"'lenet5' does not take images of shape \(1, 8, 8\)"
                                         r".*fit: digits_net, mlp"):
        build_model("lenet5", (1, 8, 8))
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet", (1, 28, 28))
    net = build_model("lenet5", (1, 28, 28), seed=2)
    assert isinstance(net[0], fd.Pad2d) and net.output_shape((1, 28, 28)) == (10,)
