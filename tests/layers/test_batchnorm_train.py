"""BatchNorm2d's training form against torch.nn.BatchNorm2d in train() mode (float64):
output, running statistics over several steps, input and parameter gradients; its batch
JVP against central differences; fit uses it and restores the inference form."""
import numpy as np
import pytest
import torch

import fwdderiv as fd
from fwdderiv.training.loop import train_mode


def pair(c=3, eps=1e-3, momentum=0.2, seed=0):
    rng = np.random.default_rng(seed)
    bn = fd.BatchNorm2d(c, eps=eps)
    bn.weight, bn.bias = rng.normal(size=c), rng.normal(size=c)
    bn.running_mean, bn.running_var = rng.normal(size=c), rng.uniform(0.5, 2, c)
    bn.momentum, bn.training = momentum, True
    tb = torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum).double().train()
    for name in ("weight", "bias"):
        getattr(tb, name).data = torch.from_numpy(getattr(bn, name).copy())
    tb.running_mean.data = torch.from_numpy(bn.running_mean.copy())
    tb.running_var.data = torch.from_numpy(bn.running_var.copy())
    return bn, tb


def test_training_form_equals_pytorch_train_mode():
    bn, tb = pair()
    rng = np.random.default_rng(1)
    for step in range(3):
        x = rng.normal(2.0, 3.0, size=(4, 3, 5, 6))
        y, cache = bn.forward(x)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = tb(xt)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bn.running_mean, tb.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(bn.running_var, tb.running_var.numpy(), rtol=1e-12)
        gy = rng.normal(size=y.shape)
        (yt * torch.from_numpy(gy)).sum().backward()
        np.testing.assert_allclose(bn.vjp(cache, gy[:, None])[:, 0], xt.grad.numpy(),
                                   rtol=1e-10, atol=1e-12)
        grads = bn.param_vjp(cache, gy)
        np.testing.assert_allclose(grads["weight"], tb.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(grads["bias"], tb.bias.grad.numpy(), rtol=1e-10)
        tb.zero_grad()


def test_batch_jvp_matches_central_differences_and_vjp_is_its_adjoint():
    bn, _ = pair()
    rng = np.random.default_rng(2)
    x, dx = rng.normal(size=(3, 3, 4, 4)), rng.normal(size=(3, 2, 3, 4, 4))
    _, cache = bn.forward(x)
    dy = bn.jvp(cache, dx)
    for d in range(2):
        eps = 1e-6
        state = bn.running_mean.copy(), bn.running_var.copy()
        up = bn.forward(x + eps * dx[:, d])[0]
        down = bn.forward(x - eps * dx[:, d])[0]
        bn.running_mean, bn.running_var = state
        np.testing.assert_allclose(dy[:, d], (up - down) / (2 * eps), rtol=1e-6, atol=1e-8)
    gy = rng.normal(size=dy.shape)
    assert np.sum(gy * dy) == pytest.approx(np.sum(bn.vjp(cache, gy) * dx), rel=1e-10)


def test_fit_trains_batchnorm_with_batch_statistics_and_restores_inference_form():
    ds = fd.datasets.load_dataset("digits")
    bn = fd.BatchNorm2d(4)
    net = fd.Sequential([fd.Conv2d(1, 4, 3, padding=1), bn, fd.ReLU(), fd.Flatten(),
                         fd.Linear(256, 10), fd.Softmax()])
    fd.training.fit(net, ds.x_train[:400], ds.y_train[:400], epochs=3, lr=0.05,
                    progress=False, num_threads=1)
    assert "training" not in vars(bn) and not bn.training
    # the running statistics follow the data (PyTorch's defaults start at 0 and 1)
    assert not np.allclose(bn.running_mean, 0) and not np.allclose(bn.running_var, 1)
    assert fd.training.evaluate(net, ds.x_test, ds.y_test) > 0.8
    with train_mode(net):
        assert bn.training
    assert not bn.training
    with pytest.raises(ValueError, match="more than one value per channel"):
        bn.forward_train(np.ones((1, 4, 1, 1)))


def test_frozen_batch_statistics_give_the_training_forms_output():
    from fwdderiv.regularization.batch_stats import frozen_batch_statistics
    rng = np.random.default_rng(3)
    net = fd.Sequential([fd.Conv2d(1, 3, 3), pair()[0], fd.Tanh(), fd.Conv2d(3, 2, 3, seed=1),
                         pair(c=2, seed=1)[0], fd.Flatten(), fd.Linear(8, 3)])
    for layer in net.layers:
        layer.__dict__.pop("training", None)
    x = rng.normal(size=(5, 1, 6, 6))
    before = [(b.running_mean.copy(), b.running_var.copy()) for b in (net[1], net[4])]
    with train_mode(net):
        y_train = net(x)
    after = [(b.running_mean.copy(), b.running_var.copy()) for b in (net[1], net[4])]
    assert not np.allclose(before[0][0], after[0][0])
    with frozen_batch_statistics(net, x):
        np.testing.assert_allclose(net(x), y_train, rtol=1e-6, atol=1e-7)
    for b, (mean, var) in zip((net[1], net[4]), after):
        np.testing.assert_array_equal(b.running_mean, mean)
        np.testing.assert_array_equal(b.running_var, var)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batchnorm1d_training_form_equals_pytorch(shape):
    rng = np.random.default_rng(4)
    bn = fd.BatchNorm1d(3, eps=1e-3, momentum=0.2)
    bn.weight, bn.bias = rng.normal(size=3), rng.normal(size=3)
    bn.running_mean, bn.running_var = rng.normal(size=3), rng.uniform(0.5, 2, 3)
    tb = torch.nn.BatchNorm1d(3, eps=1e-3, momentum=0.2).double().train()
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(tb, name).data = torch.from_numpy(getattr(bn, name).copy())
    x = rng.normal(1.0, 2.0, size=shape)
    with train_mode(fd.Sequential([bn])):
        y, cache = bn.forward(x)
    assert not bn.training
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = tb(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.running_var, tb.running_var.numpy(), rtol=1e-12)
    gy = rng.normal(size=y.shape)
    (yt * torch.from_numpy(gy)).sum().backward()
    np.testing.assert_allclose(bn.vjp(cache, gy[:, None])[:, 0], xt.grad.numpy(),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.param_vjp(cache, gy)["weight"], tb.weight.grad.numpy(),
                               rtol=1e-10)


@pytest.mark.parametrize("cls", [fd.BatchNorm2d, fd.BatchNorm1d])
def test_momentum_is_saved_imported_and_exported(cls, tmp_path):
    net = fd.Sequential([cls(3, momentum=0.3)])
    fd.save(net, tmp_path / "bn.npz")
    assert fd.load(tmp_path / "bn.npz").layers[0].momentum == 0.3
    assert any(getattr(m, "momentum", None) == 0.3 for m in fd.to_torch(net).modules())
    tb = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3, momentum=0.25))
    imported = fd.from_torch(tb.eval(), torch.zeros(1, 1, 5, 5))
    assert imported.layers[1].momentum == 0.25
    with pytest.raises(ValueError, match="momentum must be a number in"):
        cls(3, momentum=1.5)
