"""loss_gradient: exact input gradient of the cross-entropy, against central differences."""
import numpy as np
import pytest

import fwdderiv as fd
from fwdderiv.logits import split_final_softmax
from fwdderiv.numeric import loss_gradient_fd


def small_convnet(head, seed=0):
    layers = [fd.Conv2d(1, 3, 3, seed=seed), fd.Tanh(), fd.MaxPool2d(2), fd.Flatten(),
              fd.Linear(27, 5, seed=seed + 1)]
    return fd.Sequential(layers + ([head] if head is not None else []))


@pytest.mark.parametrize("head", [fd.Softmax(), fd.LogSoftmax(), None])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_equals_central_differences_in_float64(head, reduction):
    rng = np.random.default_rng(1)
    net = small_convnet(head)
    x = rng.normal(size=(3, 1, 8, 8))
    y = np.array([0, 4, 2])
    g, loss = fd.loss_gradient(net, x, y, reduction=reduction, return_loss=True)
    g_fd = loss_gradient_fd(net, x, y, reduction=reduction)
    assert g.shape == x.shape and g.dtype == np.float64
    np.testing.assert_allclose(g, g_fd, rtol=1e-6, atol=1e-9)
    # the loss is the cross-entropy of the logits, whatever the head
    z = net[:-1](x) if head is not None else net(x)
    ce = -(z[np.arange(3), y] - np.log(np.exp(z).sum(axis=1)))
    assert loss == pytest.approx(ce.sum() / (3 if reduction == "mean" else 1), rel=1e-12)


def test_forward_differences_are_first_order():
    rng = np.random.default_rng(2)
    net = small_convnet(fd.Softmax())
    x, y = rng.normal(size=(2, 1, 8, 8)), np.array([1, 3])
    g = fd.loss_gradient(net, x, y)
    errs = [np.abs(loss_gradient_fd(net, x, y, method="forward", step=h) - g).max()
            for h in (1e-3, 1e-4)]
    assert 5 < errs[0] / errs[1] < 20        # error proportional to h


def test_float32_input_gives_float32_gradient_close_to_float64():
    rng = np.random.default_rng(3)
    net = small_convnet(fd.Softmax())
    x, y = rng.normal(size=(2, 1, 8, 8)), np.array([1, 3])
    g32 = fd.loss_gradient(net, x.astype(np.float32), y)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, fd.loss_gradient(net, x, y), rtol=1e-4, atol=1e-6)


def test_stable_when_the_softmax_underflows():
    lin = fd.Linear(2, 3, seed=0)
    lin.weight = np.array([[500.0, 0], [0, 500.0], [-500.0, 0]])
    lin.bias = np.zeros(3)
    net = fd.Sequential([lin, fd.Softmax()])
    x, y = np.array([[1.0, -1.0]]), np.array([2])      # p[2] = exp(-1000) = 0 in float64
    assert net(x)[0, 2] == 0.0
    g, loss = fd.loss_gradient(net, x, y, return_loss=True)
    assert np.isfinite(g).all() and loss == pytest.approx(1000.0)
    np.testing.assert_allclose(g, [[1000.0, 0.0]], atol=1e-9)   # W[0] - W[2]


def testsplit_final_softmax():
    net = small_convnet(fd.LogSoftmax())
    body, kind = split_final_softmax(net)
    assert kind == "log_softmax" and len(body) == len(net) - 1
    assert split_final_softmax(body) == (body, None)
    single = fd.Sequential([fd.Softmax()])
    assert split_final_softmax(single) == (single, None)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(y=np.array([0, 9])), ValueError, r"loss_gradient expected y in \[0, 5\)"),
    (dict(y=np.array([[1, 0]])), TypeError, "one integer class label per example"),
    (dict(y=np.array([0.0, 1.0])), TypeError, "one integer class label"),
    (dict(loss="mse"), ValueError, "expected loss in"),
    (dict(reduction="none"), ValueError, "expected reduction in"),
])
def test_bad_input(kwargs, err, match):
    net = small_convnet(fd.Softmax())
    args = dict(x=np.zeros((2, 1, 8, 8)), y=np.array([0, 1]))
    args.update(kwargs)
    with pytest.raises(err, match=match):
        fd.loss_gradient(net, **args)


def test_nan_image_is_rejected():
    x = np.zeros((2, 1, 8, 8))
    x[1, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="loss_gradient expected finite values in x"):
        fd.loss_gradient(small_convnet(fd.Softmax()), x, np.array([0, 1]))
