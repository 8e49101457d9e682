"""The scikit-learn digits, the stratified split and the digits Dataset."""
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fwdderiv.datasets import load_dataset, load_digits, stratified_split


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def digits_ds():
    return load_dataset("digits")


def test_digits_arrays(digits):
    x, y = digits
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x * 16, np.round(x * 16))  # sklearn values 0..16, exact
    assert sorted(set(y.tolist())) == list(range(10))
    assert y[:10].tolist() == list(range(10))


def test_missing_scikit_learn_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install fwdderiv\[data\]"):
        load_digits()


def test_digits_dataset_split(digits, digits_ds):
    x, y = digits
    ds = digits_ds
    assert ds.name == "digits"
    assert ds.x_train.shape == (1497, 1, 8, 8) and ds.x_test.shape == (300, 1, 8, 8)
    assert ds.y_train.dtype == np.int64 and ds.x_train.dtype == np.float32
    assert "1497/300" in ds.description and "seed 0" in ds.description
    train, test = stratified_split(y, 300, seed=0)
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).tolist() == list(range(1797))
    np.testing.assert_array_equal(ds.x_train, x[train])
    np.testing.assert_array_equal(ds.y_test, y[test])
    # Stratified: each class's share of the test set is within one example of exact.
    exact = 300 * np.bincount(y) / len(y)
    assert np.all(np.abs(np.bincount(ds.y_test) - exact) < 1)
    assert ds.n_classes == 10 and ds.input_shape == (1, 8, 8)


def test_digits_split_is_deterministic(digits_ds):
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.y_test, digits_ds.y_test)
    np.testing.assert_array_equal(again.x_train, digits_ds.x_train)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(2, 200), n_classes=st.integers(1, 12),
       seed=st.integers(0, 2**32 - 1))
def test_stratified_split_properties(data, n, n_classes, seed):
    y = np.array(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n)))
    n_test = data.draw(st.integers(1, n - 1))
    train, test = stratified_split(y, n_test, seed=seed)
    assert len(test) == n_test and len(train) == n - n_test
    assert train.dtype == np.int64 and test.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert np.union1d(train, test).tolist() == list(range(n))
    classes, counts = np.unique(y, return_counts=True)
    got = np.array([np.sum(y[test] == c) for c in classes])
    assert np.all(np.abs(got - n_test * counts / n) < 1)
    again = stratified_split(y, n_test, seed=seed)
    np.testing.assert_array_equal(again[1], test)


def test_stratified_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"n_test must be in 1\.\.3"):
        stratified_split([0, 1, 0, 1], 4)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        stratified_split(np.zeros((2, 2)), 1)
