"""The one rule for a classifier's logits: a final Softmax/LogSoftmax with ``dim`` 1 or -1
(the class axis of a classifier's (N, C) output) is dropped; one over another axis is part
of the network."""
import pytest

import fwdderiv as fd
from fwdderiv.layers.heads import logits_net


@pytest.mark.parametrize("dim, dropped", [(-1, True), (1, True), (2, False), (-2, False)])
@pytest.mark.parametrize("head", [fd.Softmax, fd.LogSoftmax])
def test_only_a_softmax_over_the_class_axis_is_a_head(head, dim, dropped):
    net = fd.Sequential([fd.Linear(4, 6), fd.Reshape((3, 2)), head(dim=dim)])
    assert (len(logits_net(net)) == 2) is dropped
