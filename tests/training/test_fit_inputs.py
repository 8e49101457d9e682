"""Hostile inputs to training: NaN images are bad data, not divergence; hyper-parameters
are checked for type and range."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.training import fit


def data():
    rng = np.random.default_rng(0)
    return rng.random((8, 1, 4, 4)).astype(np.float32), rng.integers(0, 3, 8)


def small():
    return fd.Sequential([fd.Flatten(), fd.Linear(16, 3), fd.Softmax()])


def test_nan_images_are_reported_as_nan_input_not_divergence():
    x, y = data()
    x[5, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"fit expected finite training images in x, got 1 "
                                         r"NaN .*\(5, 0, 1, 1\)"):
        fit(small(), x, y, epochs=1, progress=False)
    x[5, 0, 1, 1] = 0
    with pytest.raises(ValueError, match="validation data.*finite images"):
        fit(small(), x, y, epochs=1, progress=False, x_val=np.full_like(x, np.inf), y_val=y)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lr": "0.1"}, TypeError, "lr .the learning rate. as a number"),
    ({"lr": np.inf}, ValueError, "lr .the learning rate. in"),
    ({"momentum": 1.0}, ValueError, r"momentum in \[0, 1\)"),
    ({"weight_decay": -1}, ValueError, "weight_decay in"),
    ({"epochs": 1.5}, TypeError, "epochs as an integer"),
    ({"batch_size": True}, TypeError, "batch_size as an integer"),
    ({"lr_decay": "x"}, TypeError, "lr_decay as a number"),
])
def test_hyper_parameters_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        fit(small(), *data(), progress=False, **kwargs)
