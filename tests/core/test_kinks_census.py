"""The kink census tells legitimate finite-difference disagreements from bugs."""
import numpy as np

import fwdderiv as fd
from fwdderiv.core.kinks import kink_census
from fwdderiv.numeric import jacobian_fd


def test_counts_relu_zeros_and_tied_windows():
    net = fd.Sequential([fd.ReLU(), fd.MaxPool2d(2), fd.Flatten()])
    x = np.array([[[[0.0, 1.0, 2.0, 2.0],
                    [-1.0, 0.5, 0.0, 1.0]]]])
    # ReLU sees two exact zeros; after it, window 1 = (0, 1, 0, 0.5): no tie;
    # window 2 = (2, 2, 0, 1): a tie
    assert kink_census(net, x) == [(0, "ReLU()", 2), (1, "MaxPool2d(2)", 1)]


def test_fd_disagrees_only_where_the_census_finds_kinks():
    net = fd.Sequential([fd.MaxPool2d(2), fd.Flatten()])
    smooth = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    tied = np.array([[[[3.0, 1.0], [2.0, 3.0]]]])
    assert kink_census(net, smooth) == []
    np.testing.assert_allclose(net.jacobian(smooth), jacobian_fd(net, smooth), atol=1e-9)
    assert kink_census(net, tied) == [(0, "MaxPool2d(2)", 1)]
    J, Jd = net.jacobian(tied), jacobian_fd(net, tied)
    assert J.ravel().tolist() == [1.0, 0.0, 0.0, 0.0]            # first maximum, one-sided
    np.testing.assert_allclose(Jd.ravel(), [0.5, 0.0, 0.0, 0.5])  # FD averages both sides
