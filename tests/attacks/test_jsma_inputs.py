"""Hostile inputs to the attacks: a clear error, never a silent wrong result."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.attacks import jsma, saliency_map


@pytest.fixture(scope="module")
def net():
    return fd.Sequential([fd.Flatten(), fd.Linear(16, 3, seed=1), fd.Softmax()])


X = np.full((2, 1, 4, 4), 0.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_images_are_refused_not_reported_as_success(net, bad):
    x = X.copy()
    x[1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match=r"jsma expected finite images in x, got .* \(the "
                                         r"first at index \(1, 0, 2, 3\)\)"):
        jsma(net, x, [0, 1])
    with pytest.raises(ValueError, match="saliency_map expected finite images"):
        saliency_map(net, x, 0)


@pytest.mark.parametrize("targets, error, match", [
    (1.7, TypeError, "integer class indices as targets, got value 1.7"),
    (2.0, TypeError, "integer class indices"),
    (True, TypeError, "got a bool"),
    ([0.0, 1.0], TypeError, "got dtype float64"),
    ([[0, 1], [1]], ValueError, "ragged"),
    ([0, 3], ValueError, r"targets in \[0, 3\)"),
    (np.eye(3)[:2].astype(int), ValueError, "one target per sample"),
])
def test_targets_must_be_integer_classes_in_range(net, targets, error, match):
    with pytest.raises(error, match=match):
        jsma(net, X, targets)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"theta": "1"}, TypeError, "theta as a number, got str"),
    ({"theta": 0.0}, ValueError, "theta as a finite nonzero number"),
    ({"theta": np.nan}, ValueError, "theta as a finite nonzero number"),
    ({"upsilon": "0.1"}, TypeError, "upsilon as a number"),
    ({"upsilon": 1.5}, ValueError, r"upsilon in \[0, 1\]"),
    ({"clip": 1.0}, TypeError, r"clip=\(low, high\)"),
    ({"clip": (0, np.inf)}, ValueError, "clip.1. as a finite number"),
    ({"batch_size": 2.5}, TypeError, "batch_size as an integer"),
    ({"batch_size": 0}, ValueError, "batch_size as an integer >= 1"),
    ({"max_iter": -1}, ValueError, "max_iter as an integer >= 0"),
    ({"max_memory": "1GB"}, TypeError, "max_memory as a positive int number of bytes"),
    ({"max_memory": 0}, ValueError, "max_memory as a positive number of bytes"),
    ({"max_memory": 1e9}, TypeError, "max_memory as a positive int"),
])
def test_parameters_are_checked_for_type_and_range(net, kwargs, error, match):
    with pytest.raises(error, match=match):
        jsma(net, X, [0, 1], **kwargs)


def test_network_without_a_class_vector_output_is_refused():
    image_out = fd.Sequential([fd.Conv2d(1, 2, 3)])         # (2, 2, 2) per example
    with pytest.raises(ValueError, match=r"classifier whose output per example is a vector "
                                         r"of K >= 2 class scores, got output shape "
                                         r"\(2, 2, 2\)"):
        jsma(image_out, X, [0, 1])
    one = fd.Sequential([fd.Flatten(), fd.Linear(16, 1)])
    with pytest.raises(ValueError, match=r"got output shape \(1,\)"):
        saliency_map(one, X, 0)


def test_ragged_input_is_a_clear_error(net):
    with pytest.raises(ValueError, match="expected x as an array of numbers, got a ragged "
                                         "nested sequence"):
        net([[0.5] * 16, [0.5] * 15])
