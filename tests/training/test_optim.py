"""SGD and Adam update rules on tiny quadratics, against written-out recurrences."""
import numpy as np
import pytest

from fwdderiv.training import SGD, Adam, make_optimizer

A = np.diag([1.0, 4.0])


def grad(w):
    """Gradient of f(w) = w^T A w / 2."""
    return A @ w


def test_sgd_plain_step_is_w_minus_lr_g():
    w = np.array([1.0, -2.0])
    SGD([w], lr=0.1).step([grad(w)])
    np.testing.assert_allclose(w, [1 - 0.1 * 1, -2 - 0.1 * (-8)])


def test_sgd_momentum_and_weight_decay_recurrence():
    w = np.array([1.0, -2.0])
    opt = SGD([w], lr=0.05, momentum=0.9, weight_decay=0.01)
    ref_w, v = w.copy(), None
    for _ in range(4):
        g = grad(ref_w) + 0.01 * ref_w
        v = g if v is None else 0.9 * v + g
        ref_w = ref_w - 0.05 * v
        opt.step([grad(w)])
        np.testing.assert_allclose(w, ref_w, rtol=1e-13)


def test_sgd_converges_on_quadratic():
    w = np.array([1.0, -2.0])
    opt = SGD([w], lr=0.1, momentum=0.5)
    for _ in range(200):
        opt.step([grad(w)])
    np.testing.assert_allclose(w, 0, atol=1e-8)


def test_adam_recurrence_and_first_step_size():
    w = np.array([1.0, -2.0])
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    opt = Adam([w], lr=lr, betas=(b1, b2))
    ref_w, m, v = w.copy(), np.zeros(2), np.zeros(2)
    for t in range(1, 6):
        g = grad(ref_w)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        step = lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        before = ref_w.copy()
        ref_w = ref_w - step
        opt.step([grad(w)])
        np.testing.assert_allclose(w, ref_w, rtol=1e-12)
        if t == 1:  # Adam's first step has size lr in every coordinate
            np.testing.assert_allclose(np.abs(w - before), lr, rtol=1e-6)


def test_adam_weight_decay_is_added_to_the_gradient():
    w1, w2 = np.array([3.0]), np.array([3.0])
    Adam([w1], lr=0.1, weight_decay=0.5).step([np.array([1.0])])
    Adam([w2], lr=0.1).step([np.array([1.0 + 0.5 * 3.0])])
    np.testing.assert_array_equal(w1, w2)


def test_updates_are_in_place_and_keep_float32():
    w = np.ones(3, dtype=np.float32)
    ref = w
    for opt in (SGD([w], lr=0.1, momentum=0.9), Adam([w], lr=0.1)):
        opt.step([np.ones(3, dtype=np.float32)])
    assert ref is w and w.dtype == np.float32 and np.all(w < 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0.0}, "learning rate lr > 0"),
    ({"lr": 0.1, "momentum": 1.0}, r"momentum in \[0, 1\)"),
    ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay >= 0"),
])
def test_sgd_rejects_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD([np.zeros(1)], **kwargs)


def test_make_optimizer_names():
    assert isinstance(make_optimizer("sgd", [np.zeros(1)], 0.1), SGD)
    adam = make_optimizer("adam", [np.zeros(1)], 0.1, momentum=0.8)
    assert isinstance(adam, Adam) and adam.betas == (0.8, 0.999)
    with pytest.raises(ValueError, match="'sgd' or 'adam'"):
        make_optimizer("rmsprop", [np.zeros(1)], 0.1)
